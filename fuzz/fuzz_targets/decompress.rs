//! The session compression layer (raw DEFLATE, snappy framing): arbitrary bytes in arbitrary
//! chunks never panic, fail only as a corrupt stream, and agree with the reference decoders
//! when accepted; compressed data read back in arbitrary chunks is the data.
//!
//! Input: a mode byte (bit 0: round trip, else raw input; the rest picks the compression), the
//! read length (u16), the sink step (u8), a count of cuts and the cuts (u16 each, 0 for a read
//! that is not ready), then the data.
#![no_main]

use std::io::Read;

use getty_core::fuzzing::{compress, decompress, is_corrupt_stream, DECOMPRESS_LIMIT};
use getty_core::Compression;
use libfuzzer_sys::fuzz_target;

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

/// `data` cut into pieces of the lengths in `cuts`, in turn; a cut of 0 is an empty piece.
fn cut<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut pieces = Vec::new();
    let mut rest = data;
    let mut sizes = cuts.iter().cycle();
    while !rest.is_empty() {
        let size = match sizes.next() {
            Some(&size) => size,
            None => rest.len(),
        };
        let (piece, tail) = rest.split_at(size.min(rest.len()));
        pieces.push(piece);
        rest = tail;
        // A run of empty pieces must still end.
        if pieces.len() > 4 * data.len() + 16 {
            pieces.push(rest);
            break;
        }
    }
    pieces
}

/// The whole of `data` through miniz_oxide's streaming inflater in one call sequence (the
/// engine under our layer, without its chunking): the output (up to the limit), and where the
/// final block ended if it did; `None` if the data is invalid.
fn inflate_reference(data: &[u8]) -> Option<(Vec<u8>, Option<usize>)> {
    use miniz_oxide::inflate::stream::{inflate, InflateState};
    use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};
    let mut state = InflateState::new_boxed(DataFormat::Raw);
    let mut out = Vec::new();
    let mut used = 0;
    let mut buf = vec![0u8; 1 << 16];
    while out.len() < DECOMPRESS_LIMIT {
        let r = inflate(&mut state, &data[used..], &mut buf, MZFlush::None);
        used += r.bytes_consumed;
        out.extend_from_slice(&buf[..r.bytes_written]);
        match r.status {
            Ok(MZStatus::StreamEnd) => return Some((out, Some(used))),
            Ok(_) => {}
            Err(MZError::Buf) if r.bytes_consumed == 0 && r.bytes_written == 0 => break,
            Err(MZError::Buf) => {}
            Err(_) => return None,
        }
    }
    Some((out, None))
}

fn check_error(compression: Compression, err: &std::io::Error) {
    assert!(
        is_corrupt_stream(err),
        "{compression:?}: not a corrupt-stream error: {err:?}"
    );
}

fuzz_target!(|input: &[u8]| {
    let mut input = Input { data: input };
    let [mode] = input.take::<1>();
    let read_len = 1 + usize::from(u16::from_le_bytes(input.take::<2>()));
    let [sink_step] = input.take::<1>();
    let [cut_count] = input.take::<1>();
    let cuts: Vec<usize> = (0..cut_count % 8)
        .map(|_| usize::from(u16::from_le_bytes(input.take::<2>())))
        .collect();
    let data = input.data;
    let round_trip = mode & 1 == 1;

    if round_trip {
        let compressions = &Compression::ALL[1..];
        let compression = compressions[usize::from(mode >> 1) % compressions.len()];
        let writes = cut(data, &cuts);
        let wire = compress(compression, &writes, usize::from(sink_step).max(1) * 7)
            .expect("compressing into memory cannot fail");
        let plain = decompress(compression, &cut(&wire, &cuts), read_len)
            .unwrap_or_else(|err| panic!("{compression:?}: our own stream: {err}"));
        assert!(
            plain == data,
            "{compression:?}: {} bytes back of {}",
            plain.len(),
            data.len()
        );
        // Peers without getty read it too.
        let theirs = match compression {
            Compression::Snappy => {
                let mut out = Vec::new();
                snap::read::FrameDecoder::new(&wire[..])
                    .read_to_end(&mut out)
                    .map(|_| out)
                    .map_err(|e| e.to_string())
            }
            _ => miniz_oxide::inflate::decompress_to_vec(&wire).map_err(|e| format!("{e:?}")),
        };
        assert!(
            theirs.as_deref() == Ok(data),
            "{compression:?}: the reference decoder"
        );
        return;
    }

    let compression = match mode & 2 {
        0 => Compression::Deflate,
        _ => Compression::Snappy,
    };
    let chunks = cut(data, &cuts);
    let ours = decompress(compression, &chunks, read_len);
    let out = match ours {
        Ok(out) => out,
        Err(err) => return check_error(compression, &err),
    };
    if out.len() >= DECOMPRESS_LIMIT {
        return;
    }
    // What we accept, the reference decoder reads the same way.
    match compression {
        Compression::Snappy => {
            let mut theirs = Vec::new();
            let read = snap::read::FrameDecoder::new(data).read_to_end(&mut theirs);
            assert!(
                read.is_ok(),
                "snappy: we accept what snap refuses: {read:?}"
            );
            assert!(
                theirs == out,
                "snappy: {} bytes, snap {}",
                out.len(),
                theirs.len()
            );
        }
        _ => {
            let (theirs, ended) = inflate_reference(data)
                .unwrap_or_else(|| panic!("deflate: we accept what miniz refuses"));
            assert!(
                theirs == out,
                "deflate: {} bytes, miniz {}",
                out.len(),
                theirs.len()
            );
            if let Some(used) = ended {
                assert_eq!(
                    used,
                    data.len(),
                    "deflate: we accept bytes after the final block"
                );
                // A whole stream: the one-shot decoder agrees when it accepts it. (It may
                // refuse what the streaming one accepts: a distance reaching before the start
                // of the stream, which the streaming inflater reads as zeros from its window.)
                if let Ok(whole) = miniz_oxide::inflate::decompress_to_vec(data) {
                    assert!(whole == out, "deflate: one-shot {} bytes", whole.len());
                }
            }
        }
    }
});
