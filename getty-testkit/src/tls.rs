//! TLS over TCP scenarios: real handshakes on 127.0.0.1 with certificates made on the spot.

use std::net::SocketAddr;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};

use super::certs::TestCa;
use super::support::*;
use getty_core::codec::LengthDelimited;
use getty_core::endpoint::{Client, TcpClientBuilder, TcpServer};
use getty_core::runtime::Runtime;
use getty_core::tls::{rustls, TlsClientConfig, TlsServerConfig};
use getty_core::Error;

async fn tls_server<R: Runtime>(
    rt: &R,
    config: TlsServerConfig,
    listener: TestListener,
) -> TcpServer {
    TcpServer::builder()
        .tls(config)
        .serve_with(rt.clone(), LengthDelimited::hello(), listener.factory())
        .expect("server starts")
}

/// A TLS client pool of one that gives up after `attempts` failed connects.
fn tls_client<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    config: TlsClientConfig,
    attempts: u32,
    listener: TestListener,
) -> Client<Hello> {
    TcpClientBuilder::new(addr)
        .tls(config)
        .reconnect_interval(Duration::from_millis(10))
        .max_reconnect_attempts(Some(attempts))
        .start_with(rt.clone(), LengthDelimited::hello(), listener.factory())
        .expect("client starts")
}

/// A TLS client pool of one (see [`tls_client`]), connected.
async fn connected_tls_client<R: Runtime>(
    rt: &R,
    addr: SocketAddr,
    config: TlsClientConfig,
    rec: &std::sync::Arc<Recorder>,
) -> Client<Hello> {
    let cli = tls_client(rt, addr, config, 3, TestListener::silent(rec));
    within(rt, "TLS session", cli.wait_for_sessions(1))
        .await
        .expect("connects");
    cli
}

/// Sends one package from the client's session and waits for the server's echo.
async fn echo_once<R: Runtime>(rt: &R, cli: &Client<Hello>, rec: &Recorder, body: &[u8]) {
    let before = count_msgs(&rec.events());
    cli.sessions()[0].try_send(body).expect("send");
    rec.wait(rt, "the echo", |e| count_msgs(e) > before).await;
    assert_eq!(payloads(&rec.events()).last().map(|b| &b[..]), Some(body));
}

/// Packages go both ways over TLS, verified against the test CA with the IP as server name.
pub async fn tls_echo<R: Runtime>(rt: R) {
    let ca = TestCa::new("echo CA");
    let rec = Recorder::new();
    let srv = tls_server(&rt, ca.server_config(None), TestListener::echo(&rec)).await;
    let client_rec = Recorder::new();
    let cli =
        connected_tls_client(&rt, srv.local_addr(), ca.client_config(None), &client_rec).await;
    for body in [&b"over tls"[..], &[7u8; 3000][..]] {
        echo_once(&rt, &cli, &client_rec, body).await;
    }
    assert!(cli.sessions()[0].name().starts_with("tls-client"));
    cli.close().await;
    srv.close().await;
}

/// Mutual TLS: a client certificate from the required CA is accepted; a client without one
/// fails the handshake and never becomes a server session.
pub async fn tls_mutual_requires_client_certificate<R: Runtime>(rt: R) {
    let ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let rec = Recorder::new();
    let srv = tls_server(
        &rt,
        ca.server_config(Some(&client_ca)),
        TestListener::echo(&rec),
    )
    .await;

    let identity = client_ca.leaf(&["client.test"]);
    let good_rec = Recorder::new();
    let good = tls_client(
        &rt,
        srv.local_addr(),
        ca.client_config(Some(&identity)),
        3,
        TestListener::silent(&good_rec),
    );
    within(&rt, "mutual TLS session", good.wait_for_sessions(1))
        .await
        .expect("connects");
    echo_once(&rt, &good, &good_rec, b"with a certificate").await;

    let bad_rec = Recorder::new();
    let bad = tls_client(
        &rt,
        srv.local_addr(),
        ca.client_config(None),
        1,
        TestListener::silent(&bad_rec),
    );
    // TLS 1.3 finishes the client's side of the handshake before the server checks it: the
    // refusal arrives as an alert on the client's first read, or fails the connect itself.
    within(&rt, "the refusal", async {
        loop {
            let refused_in_session = bad_rec
                .events()
                .iter()
                .any(|r| matches!(r, Rec::Error(_, e) if e.text.contains("CertificateRequired")));
            let refused_at_connect = bad
                .last_connect_error()
                .is_some_and(|e| e.to_string().contains("CertificateRequired"));
            if refused_in_session || refused_at_connect {
                break;
            }
            rt.timer(rt.now() + Duration::from_millis(2)).await;
        }
    })
    .await;
    assert_eq!(
        srv.session_count(),
        1,
        "only the client with a certificate has a session"
    );
    assert_eq!(
        rec.events()
            .iter()
            .filter(|r| matches!(r, Rec::Open(_)))
            .count(),
        1
    );
    bad.close().await;
    good.close().await;
    srv.close().await;
}

/// A client that does not trust the server's CA fails the handshake with a clear error and
/// never opens a session.
pub async fn tls_untrusted_server_fails_handshake<R: Runtime>(rt: R) {
    let ca = TestCa::new("real CA");
    let other = TestCa::new("another CA");
    let rec = Recorder::new();
    let srv = tls_server(&rt, ca.server_config(None), TestListener::echo(&rec)).await;
    let client_rec = Recorder::new();
    let cli = tls_client(
        &rt,
        srv.local_addr(),
        other.client_config(None),
        2,
        TestListener::silent(&client_rec),
    );
    let result = within(&rt, "give up", cli.wait_for_sessions(1)).await;
    assert!(result.is_err());
    assert!(cli.gave_up());
    let err = cli.last_connect_error().expect("an error");
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{err}"
    );
    assert!(client_rec.events().is_empty());
    // The server name is checked too: a certificate for another name is refused.
    let wrong_name = TlsClientConfig::builder()
        .root_ca_pem(ca.cert_pem())
        .server_name("elsewhere.test")
        .build()
        .expect("config");
    let cli2 = tls_client(
        &rt,
        srv.local_addr(),
        wrong_name,
        1,
        TestListener::silent(&client_rec),
    );
    assert!(within(&rt, "give up", cli2.wait_for_sessions(1))
        .await
        .is_err());
    let err = cli2.last_connect_error().expect("an error");
    assert!(
        matches!(
            rustls_error(&err),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err}"
    );
    assert!(rec.events().is_empty(), "no server session opened");
    // Only the explicitly dangerous option connects to a server nobody vouches for.
    let blind = TlsClientConfig::builder()
        .dangerous_accept_any_server_certificate()
        .build()
        .expect("config");
    let cli3 = tls_client(
        &rt,
        srv.local_addr(),
        blind,
        1,
        TestListener::silent(&client_rec),
    );
    within(&rt, "an unverified session", cli3.wait_for_sessions(1))
        .await
        .expect("connects without verification");
    echo_once(&rt, &cli3, &client_rec, b"unverified").await;
    cli3.close().await;
    srv.close().await;
}

/// Bytes that are not a TLS ClientHello drop only that connection; the server keeps serving.
pub async fn tls_garbage_instead_of_client_hello<R: Runtime>(rt: R) {
    let ca = TestCa::new("garbage CA");
    let rec = Recorder::new();
    let srv = tls_server(&rt, ca.server_config(None), TestListener::echo(&rec)).await;
    let mut raw = rt.connect(srv.local_addr(), None).await.expect("connect");
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    // The server answers with at most an alert, then closes.
    let _ = within(
        &rt,
        "the server drops the connection",
        raw.read_to_end(&mut rest),
    )
    .await;
    assert!(rest.len() < 64, "at most a TLS alert: {rest:?}");

    let client_rec = Recorder::new();
    let cli =
        connected_tls_client(&rt, srv.local_addr(), ca.client_config(None), &client_rec).await;
    echo_once(&rt, &cli, &client_rec, b"still serving").await;
    assert_eq!(
        rec.events()
            .iter()
            .filter(|r| matches!(r, Rec::Open(_)))
            .count(),
        1
    );
    cli.close().await;
    srv.close().await;
}

/// Configuration mistakes are `TlsConfig` errors from `build()`, naming what is wrong.
pub async fn tls_config_errors_are_clear<R: Runtime>(_rt: R) {
    let ca = TestCa::new("config CA");
    let leaf = ca.leaf(&["localhost"]);
    let other = ca.leaf(&["localhost"]);
    let expect_err = |result: getty_core::Result<TlsServerConfig>, needle: &str| match result {
        Err(err @ Error::TlsConfig { .. }) => {
            let msg = err.to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            assert!(
                std::error::Error::source(&err).is_some(),
                "{err:?} keeps its source"
            );
        }
        other => panic!("expected a TlsConfig error, got {other:?}"),
    };
    expect_err(
        TlsServerConfig::builder()
            .cert_chain_file("/nonexistent/getty/cert.pem")
            .private_key_pem(leaf.key_pem.clone())
            .build(),
        "/nonexistent/getty/cert.pem",
    );
    expect_err(
        TlsServerConfig::builder()
            .cert_chain_pem("not PEM at all")
            .private_key_pem(leaf.key_pem.clone())
            .build(),
        "no certificate",
    );
    expect_err(
        TlsServerConfig::builder()
            .cert_chain_pem(leaf.cert_pem.clone())
            .private_key_pem(other.key_pem.clone())
            .build(),
        "certificate and key",
    );
    expect_err(
        TlsServerConfig::builder()
            .private_key_pem(leaf.key_pem.clone())
            .build(),
        "certificate chain is required",
    );
    // Files work as well as bytes.
    let dir = std::env::temp_dir().join(format!(
        "getty-tls-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("cert.pem"), &leaf.cert_pem).expect("write");
    std::fs::write(dir.join("key.pem"), &leaf.key_pem).expect("write");
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).expect("write");
    let from_files = TlsServerConfig::builder()
        .cert_chain_file(dir.join("cert.pem"))
        .private_key_file(dir.join("key.pem"))
        .build();
    let client_from_file = TlsClientConfig::builder()
        .root_ca_file(dir.join("ca.pem"))
        .build();
    std::fs::remove_dir_all(&dir).expect("clean up");
    from_files.expect("server config from files");
    client_from_file.expect("client config from a file");

    let client_err = |result: getty_core::Result<TlsClientConfig>, needle: &str| match result {
        Err(err @ Error::TlsConfig { .. }) => {
            let msg = err.to_string();
            assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
            assert!(
                std::error::Error::source(&err).is_some(),
                "{err:?} keeps its source"
            );
        }
        other => panic!("expected a TlsConfig error, got {other:?}"),
    };
    client_err(TlsClientConfig::builder().build(), "root CAs are required");
    client_err(
        TlsClientConfig::builder()
            .root_ca_pem(ca.cert_pem())
            .cert_chain_pem(leaf.cert_pem.clone())
            .build(),
        "both a chain and a private key",
    );
    client_err(
        TlsClientConfig::builder()
            .root_ca_pem(ca.cert_pem())
            .server_name("not a name!")
            .build(),
        "server name",
    );
}

/// The rustls error under a failed TLS handshake, if rustls refused it.
fn rustls_error(err: &Error) -> Option<&rustls::Error> {
    match err {
        Error::TlsHandshake { source, .. } => source.get_ref()?.downcast_ref(),
        _ => None,
    }
}
