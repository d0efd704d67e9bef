//! The conformance suite: every behaviour of getty as a scenario generic over the runtime.
//!
//! Each scenario is an `async fn(R)` for any [`Runtime`](getty_core::Runtime); the
//! [`conformance_suite!`](crate::conformance_suite) macro instantiates all of them as `#[test]`s
//! for one runtime, so getty's own adapters, and any third-party one, run the same suite.
//! Scenarios use real sockets on 127.0.0.1 and wait on events with a deadline, never on sleeps.

#![deny(missing_docs)]

pub mod backpressure;
pub mod call;
pub mod certs;
pub mod compress;
pub mod extras;
pub mod group;
pub mod hostile;
pub mod instrumented;
pub mod load;
pub mod rfc6455;
pub mod runtime;
pub mod sim;
pub mod support;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod ws;

/// Instantiates every conformance scenario as a `#[test]`.
///
/// `$block_on` is a function `fn<F: Future>(impl FnOnce(R) -> F) -> F::Output` that builds a
/// runtime, hands its adapter value to the closure and runs the returned future to completion.
///
/// ```ignore
/// mod tokio {
///     fn block_on<F: std::future::Future>(f: impl FnOnce(TokioRuntime) -> F) -> F::Output { ... }
///     getty_testkit::conformance_suite!(block_on);
/// }
/// ```
///
/// The scenarios come in two groups:
/// - `@portable`: every scenario that needs only [`Runtime`](getty_core::Runtime), so any
///   runtime (one with a simulated network too) runs them;
/// - `@os`: the few about the kernel itself: the OS socket under a stream
///   ([`OsNetwork`](getty_core::runtime::os::OsNetwork): reading socket options back, sending
///   a TCP reset with a zero linger time), a full accept backlog on a raw OS listener, TCP
///   simultaneous open (a socket connected to itself), and `SO_REUSEPORT`.
///
/// `conformance_suite!(block_on)` instantiates both (for OS runtimes, such as tokio and smol);
/// `conformance_suite!(@portable block_on)` only the first, for a runtime that is not
/// `OsNetwork`. A third group, `@sim`, holds the scenarios only a simulation can run (faults
/// made on purpose, time checked to the exact instant): getty-sim's setup instantiates it
/// beside `@portable`, with a `block_on` that hands the scenario a `getty_sim::SimRuntime`.
#[macro_export]
macro_rules! conformance_suite {
    ($block_on:path) => {
        $crate::conformance_suite!(@portable $block_on);
        $crate::conformance_suite!(@os $block_on);
    };
    (@os $block_on:path) => {
        $crate::conformance_suite!(@tests $block_on;
            hostile::reset_mid_frame_closes_only_its_session,
            extras::socket_options_are_applied,
            // The kernel's own behaviour: a full accept backlog on a raw OS listener, TCP
            // simultaneous open (a socket connected to itself), SO_REUSEPORT.
            tcp::client_connect_timeout,
            tcp::client_refuses_self_connect,
            extras::reuse_port_lets_servers_share_a_port,
        );
    };
    (@sim $block_on:path) => {
        $crate::conformance_suite!(@tests $block_on;
            sim::pool_through_partition_and_heal,
            sim::server_restart_mid_traffic,
            sim::slow_link_stops_a_fast_writer,
            sim::udp_under_loss_accounting,
            sim::timeouts_fire_at_the_exact_instant,
            sim::endpoints_on_a_crashed_host_still_close,
        );
    };
    (@portable $block_on:path) => {
        $crate::conformance_suite!(@tests $block_on;
            runtime::seam_tcp_round_trip,
            runtime::seam_vectored_write_is_one_write,
            runtime::seam_listen_again_on_port_in_time_wait,
            runtime::seam_connect_refused,
            runtime::seam_connect_from_local_address,
            runtime::seam_timer_fires_and_resets,
            runtime::seam_spawn_runs_detached_task,
            runtime::seam_udp_round_trip,
            tcp::echo_10000_packages,
            tcp::frame_delivered_one_byte_at_a_time,
            tcp::many_frames_in_one_segment,
            tcp::frame_split_at_every_offset,
            tcp::last_frame_with_eof_is_delivered,
            tcp::oversize_frame_closes_only_its_session,
            tcp::on_open_error_refuses_session,
            tcp::new_session_callback_refuses_session,
            tcp::on_close_exactly_once_and_last,
            tcp::clean_eof_gives_no_error,
            tcp::cron_fires_at_its_period,
            tcp::client_pool_holds_n_and_replaces_closed,
            tcp::client_reconnects_after_server_restart,
            tcp::client_gives_up_after_max_attempts,
            tcp::client_events_tell_connects_failures_and_giving_up,
            tcp::write_after_close_is_session_closed,
            tcp::send_and_flush_to_non_reader_times_out_with_partial_count,
            tcp::close_flushes_every_queued_write,
            tcp::panicking_handler_closes_only_its_session,
            tcp::handler_panicking_before_its_future_closes_only_its_session,
            tcp::handler_awaiting_large_write_does_not_deadlock,
            tcp::vectored_write_arrives_whole,
            tcp::attributes_and_statistics,
            tcp::invalid_settings_are_errors,
            tcp::max_sessions_limit,
            tcp::server_close_releases_port_and_ends_sessions,
            tcp::accept_errors_back_off_and_recover,
            tcp::no_reconnect_storm,
            tcp::no_reconnect_storm_against_a_dropping_server,
            tcp::read_timeout_closes_silent_peer,
            tcp::stuck_handler_cancelled_after_close_wait,
            tcp::lines_codec_session,
            tcp::codec_limit_is_the_session_limit,
            tcp::dropping_endpoints_closes_sessions,
            tcp::non_consuming_codec_is_an_error,
            tcp::failed_encode_leaves_the_stream_intact,
            tcp::payload_frames_share_bytes,
            hostile::idle_timeout_closes_trickling_and_vanished_peers,
            hostile::codec_error_closes_only_its_session,
            hostile::timeout_close_sends_a_last_message,
            hostile::blocked_handler_stalls_only_its_session,
            hostile::ws_invalid_frame_closes_only_that_session,
            hostile::pending_handshakes_count_toward_max_sessions,
            hostile::close_under_heavy_writes_counts_every_package,
            backpressure::slow_reader_bounds_the_write_queue,
            backpressure::full_queue_would_block_and_waiting_writer_resumes,
            extras::close_callbacks_order_replace_remove_panic,
            extras::close_reason_reaches_on_close,
            group::group_broadcast_and_membership,
            group::group_slow_member_is_skipped_or_dropped,
            call::calls_match_replies_in_any_order,
            call::call_fails_at_once_when_its_session_closes,
            call::client_call_survives_a_server_restart,
            call::udp_client_call,
            call::ws_call_sends_the_codecs_message_kind,
            extras::task_pool_slow_handler_stalls_only_its_session,
            extras::task_pool_ordered_keeps_order_under_load,
            extras::task_pool_unordered_panics_and_shutdown,
            compress::compression_round_trips_at_every_level,
            compress::compression_over_tls,
            compress::compressed_stream_interoperates_with_plain_decoders,
            compress::corrupt_compressed_stream_closes_only_its_session,
            compress::decompression_is_bounded_by_max_msg_len,
            compress::compression_setting_rules,
            tls::tls_echo,
            tls::tls_mutual_requires_client_certificate,
            tls::tls_untrusted_server_fails_handshake,
            tls::tls_garbage_instead_of_client_hello,
            tls::tls_config_errors_are_clear,
            ws::ws_echo,
            ws::wss_echo,
            ws::ws_refusals_get_http_statuses,
            ws::ws_independent_client_byte_by_byte,
            ws::ws_pings_keep_the_read_timeout_not_the_idle_timeout,
            ws::ws_oversize_message_closes_only_that_session,
            ws::ws_text_messages,
            ws::ws_close_codes_tell_the_peer_why,
            ws::ws_subprotocol_chosen_by_server_preference,
            ws::ws_client_refuses_a_bad_or_absent_protocol_choice,
            ws::ws_client_key_comes_from_the_runtime,
            ws::ws_callback_reads_the_request_and_refuses_or_accepts,
            ws::ws_refused_upgrade_leaves_no_session,
            ws::ws_client_header_and_protocol_settings_are_checked,
            ws::ws_text_and_binary_told_apart,
            ws::ws_invalid_utf8_closes_with_1007,
            ws::ws_outbound_text_must_be_utf8,
            udp::udp_replies_reach_the_right_peer,
            udp::udp_connect_ping_is_not_delivered,
            udp::udp_oversize_datagram_dropped,
            udp::udp_garbage_datagram_skipped,
            udp::udp_client_retries_until_server_starts,
            udp::udp_statistics_match,
            udp::udp_close_releases_port,
            udp::udp_unaddressable_writes_are_errors,
            udp::udp_largest_datagrams_arrive_whole,
            udp::udp_cron_and_read_timeout,
            udp::udp_panicking_handler_keeps_the_endpoint,
            load::endpoint_close_leaves_no_task,
            load::endpoint_close_leaves_no_task_with_task_pool,
        );
    };
    (@tests $block_on:path; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $block_on(|rt| $crate::$module::$name(rt))
            }
        )*
    };
}
