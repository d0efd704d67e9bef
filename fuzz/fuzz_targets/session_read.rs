//! The read path of a real stream session (the driver TCP and TLS sessions run, with the
//! `LengthDelimited` codec), over an in-memory stream that sends arbitrary chunks then ends.
//!
//! The session always ends and closes; its events come in order (open, messages, at most one
//! error, close); no package exceeds the maximum message length; the read buffer stays within
//! the maximum message length before a read and 64 KiB more after one. When the plain stream is
//! known, the packages and the way the session ends are exactly what a reference reading of the
//! headers says.
//!
//! Input: a settings byte (bits 0-1: width; bit 2: little-endian; bit 3: echo; bits 4-5: 0 or 1
//! plain, 2 compressed by us, 3 compressed bytes as they are; bit 6: snappy in mode 3; bit 7:
//! a codec payload limit follows), the maximum message length (u16, 1 to 4096), the write step
//! (u8), the compression for mode 2 (u8), [the codec limit (u16)], a count of cuts and the cuts
//! (u16 each, 0 for a read that is not ready), then the stream.
#![no_main]

use bytes::Bytes;
use getty_core::codec::{Endian, LengthDelimited};
use getty_core::fuzzing::{
    compress, decompress, run_stream_session, SessionEvent, StreamCase, StreamReport,
};
use getty_core::Compression;
use libfuzzer_sys::fuzz_target;

/// The most a read may add to what is buffered (the driver's largest read).
const MAX_READ: usize = 64 * 1024;

struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        match self.data.split_first_chunk::<N>() {
            Some((head, rest)) => {
                self.data = rest;
                *head
            }
            None => {
                let mut head = [0u8; N];
                head[..self.data.len()].copy_from_slice(self.data);
                self.data = &[];
                head
            }
        }
    }
}

fn cut<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = data;
    let mut sizes = cuts.iter().cycle();
    while !rest.is_empty() {
        let size = sizes.next().copied().unwrap_or(rest.len());
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = tail;
        if pieces.len() > 4 * data.len() + 16 {
            pieces.push(rest);
            break;
        }
    }
    pieces
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The stream ended between frames.
    Clean,
    /// The stream ended inside a frame.
    Eof,
    /// A frame over the session's maximum message length.
    TooLarge,
    /// A header over the codec's own limit.
    CodecTooLarge,
    /// A corrupt compressed stream.
    Corrupt,
}

fn end_of(error: Option<&str>) -> End {
    let Some(error) = error else {
        return End::Clean;
    };
    if error.starts_with("FrameTooLarge {") {
        End::TooLarge
    } else if error.starts_with("Codec(FrameTooLarge {") {
        End::CodecTooLarge
    } else if error.starts_with("UnexpectedEof {") {
        End::Eof
    } else if error.starts_with("Decompress {") {
        End::Corrupt
    } else {
        panic!("an error no input should cause: {error}")
    }
}

/// What a session must deliver for the plain stream `plain`: its packages, and the ways it
/// may end (several only when the chunking decides).
fn reference(plain: &[u8], codec: &LengthDelimited, max_msg_len: usize) -> (Vec<Bytes>, Vec<End>) {
    let width = codec.width();
    let mut pkgs = Vec::new();
    let mut rest = plain;
    loop {
        if rest.is_empty() {
            return (pkgs, vec![End::Clean]);
        }
        if rest.len() < width {
            // Never a whole header: too large once more is buffered than allowed.
            let end = if rest.len() > max_msg_len {
                End::TooLarge
            } else {
                End::Eof
            };
            return (pkgs, vec![end]);
        }
        let mut bytes = [0u8; 8];
        let declared = match codec.endian() {
            Endian::Big => {
                bytes[8 - width..].copy_from_slice(&rest[..width]);
                u64::from_be_bytes(bytes)
            }
            Endian::Little => {
                bytes[..width].copy_from_slice(&rest[..width]);
                u64::from_le_bytes(bytes)
            }
        };
        let len = usize::try_from(declared).unwrap_or(usize::MAX);
        if len > codec.max_frame_len() {
            // A partial header longer than the maximum may be refused first.
            return match max_msg_len < width - 1 {
                true => (pkgs, vec![End::CodecTooLarge, End::TooLarge]),
                false => (pkgs, vec![End::CodecTooLarge]),
            };
        }
        let total = width + len;
        if total > max_msg_len {
            return (pkgs, vec![End::TooLarge]);
        }
        if rest.len() < total {
            return (pkgs, vec![End::Eof]);
        }
        pkgs.push(Bytes::copy_from_slice(&rest[width..total]));
        rest = &rest[total..];
    }
}

/// Checks the event order and returns the packages and the error, if any.
fn events(report: &StreamReport) -> (Vec<Bytes>, Option<&str>) {
    let events = &report.events;
    assert_eq!(events.first(), Some(&SessionEvent::Open), "{events:?}");
    assert_eq!(events.last(), Some(&SessionEvent::Close), "{events:?}");
    let middle = &events[1..events.len() - 1];
    let (error, messages) = match middle.split_last() {
        Some((SessionEvent::Error(err), messages)) => (Some(err.as_str()), messages),
        _ => (None, middle),
    };
    let pkgs = messages
        .iter()
        .map(|e| match e {
            SessionEvent::Message(pkg) => pkg.clone(),
            other => panic!("{other:?} among the messages: {events:?}"),
        })
        .collect();
    (pkgs, error)
}

fuzz_target!(|input: &[u8]| {
    let mut input = Input { data: input };
    let [settings] = input.take::<1>();
    let max_msg_len = 1 + usize::from(u16::from_le_bytes(input.take::<2>())) % 4096;
    let [write_step] = input.take::<1>();
    let [compression_pick] = input.take::<1>();
    let width = [1, 2, 4, 8][usize::from(settings & 3)];
    let endian = if settings & 4 == 0 {
        Endian::Big
    } else {
        Endian::Little
    };
    let mut codec = LengthDelimited::new(width, endian).expect("a valid width");
    if settings & 0x80 != 0 {
        codec = codec.with_max_frame_len(usize::from(u16::from_le_bytes(input.take::<2>())));
    }
    let [cut_count] = input.take::<1>();
    let cuts: Vec<usize> = (0..cut_count % 8)
        .map(|_| usize::from(u16::from_le_bytes(input.take::<2>())))
        .collect();
    let data = input.data;

    let mode = (settings >> 4) & 3;
    let (compression, wire, plain) = match mode {
        0 | 1 => (Compression::None, data.to_vec(), Some(data.to_vec())),
        2 => {
            let compressions = &Compression::ALL[1..];
            let compression = compressions[usize::from(compression_pick) % compressions.len()];
            let wire = compress(compression, &[data], 1 << 16).expect("in memory");
            (compression, wire, Some(data.to_vec()))
        }
        _ => {
            let compression = match settings & 0x40 {
                0 => Compression::Deflate,
                _ => Compression::Snappy,
            };
            // What the session will read, if the stream is sound.
            let plain = decompress(compression, &[data], 1 << 16).ok();
            (compression, data.to_vec(), plain)
        }
    };
    let chunks = cut(&wire, &cuts);
    let case = StreamCase {
        codec: codec.clone(),
        max_msg_len,
        compression,
        echo: settings & 8 != 0,
        write_step: usize::from(write_step).max(1),
        chunks: &chunks,
    };
    let report = run_stream_session(&case);

    let (pkgs, error) = events(&report);
    for pkg in &pkgs {
        assert!(
            width + pkg.len() <= max_msg_len,
            "a frame of {} bytes was delivered, maximum {max_msg_len}: {case:?} {report:?}",
            width + pkg.len()
        );
    }
    assert!(
        report.max_buffered_before_read <= max_msg_len,
        "{} bytes buffered before a read, maximum {max_msg_len}",
        report.max_buffered_before_read
    );
    assert!(
        report.max_buffered <= max_msg_len + MAX_READ,
        "{} bytes buffered, maximum {max_msg_len}",
        report.max_buffered
    );
    assert!(
        report.max_offer <= MAX_READ,
        "a read of {} bytes",
        report.max_offer
    );
    let end = end_of(error);
    if mode < 3 {
        assert!(end != End::Corrupt, "our own stream is corrupt: {error:?}");
    }
    match plain {
        Some(plain) if !report.truncated && plain.len() < getty_core::fuzzing::DECOMPRESS_LIMIT => {
            let (want_pkgs, want_ends) = reference(&plain, &codec, max_msg_len);
            assert!(
                pkgs == want_pkgs,
                "{} packages, expected {}",
                pkgs.len(),
                want_pkgs.len()
            );
            assert!(
                want_ends.contains(&end),
                "ended {end:?} ({error:?}), expected {want_ends:?}"
            );
            assert_eq!(report.bytes_read, plain.len().min(report.bytes_read));
        }
        Some(_) => {}
        // A corrupt stream: whatever came before the damage, then an error.
        None => assert!(
            end != End::Clean || report.truncated,
            "a corrupt stream ended cleanly"
        ),
    }
});
