//! `Lines` with a small line limit: decoding arbitrary bytes (all at once, fed in steps, at
//! EOF) agrees with a reference reading, lines hold no `\n`, are UTF-8 and within the limit;
//! encoding round-trips.
//!
//! Input: the limit (a big-endian u16, taken modulo 1024), a step byte for feeding, the bytes.
#![no_main]

use bytes::BytesMut;
use getty_core::codec::Lines;
use getty_core::{Codec, CodecError, Decoded};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
enum Expect {
    /// A line, and how many bytes it takes with its ending.
    Line(String, usize),
    Incomplete,
    TooLarge(usize),
    NotUtf8,
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// What decoding the front of `buf` must give.
fn expect(buf: &[u8], max: usize, eof: bool) -> Expect {
    let (line, used) = match buf.iter().position(|&b| b == b'\n') {
        Some(end) => (strip_cr(&buf[..end]), end + 1),
        None if eof && !buf.is_empty() => (strip_cr(buf), buf.len()),
        None => {
            let known = strip_cr(buf).len();
            return match known > max {
                true => Expect::TooLarge(known),
                false => Expect::Incomplete,
            };
        }
    };
    if line.len() > max {
        return Expect::TooLarge(line.len());
    }
    match std::str::from_utf8(line) {
        Ok(s) => Expect::Line(s.to_owned(), used),
        Err(_) => Expect::NotUtf8,
    }
}

#[derive(Debug, PartialEq)]
enum End {
    Incomplete,
    TooLarge,
    NotUtf8,
}

fn step(codec: &Lines, buf: &mut BytesMut, eof: bool) -> Result<String, End> {
    let max = codec.max_line_len();
    let before = buf.clone();
    let want = expect(&before, max, eof);
    let got = if eof {
        codec.decode_eof(buf)
    } else {
        codec.decode(buf)
    };
    match (got, want) {
        (Ok(Decoded::Frame(line)), Expect::Line(line_want, used)) => {
            assert_eq!(line, line_want);
            assert!(!line.contains('\n'), "a line holds no line end");
            assert!(line.len() <= max, "{} bytes, limit {max}", line.len());
            assert!(used > 0, "a frame consumes input");
            assert_eq!(
                &buf[..],
                &before[used..],
                "exactly the line and its ending are consumed"
            );
            Ok(line)
        }
        (Ok(Decoded::Incomplete(None)), Expect::Incomplete) => {
            assert_eq!(buf, &before, "incomplete leaves the buffer");
            assert!(!buf.contains(&b'\n'));
            Err(End::Incomplete)
        }
        (Err(CodecError::FrameTooLarge { len, max: m }), Expect::TooLarge(want_len)) => {
            assert_eq!(m, max);
            assert!(len > max);
            // The line, or when its end lies beyond where a line within the limit would end,
            // everything buffered (less a final '\r').
            assert!(
                len == want_len || len == strip_cr(&before).len(),
                "{len} vs {want_len}"
            );
            Err(End::TooLarge)
        }
        (Err(CodecError::Invalid(msg)), Expect::NotUtf8) => {
            assert!(msg.contains("UTF-8"), "{msg}");
            Err(End::NotUtf8)
        }
        (got, want) => panic!("decode (eof: {eof}) of {before:?} gave {got:?}, expected {want:?}"),
    }
}

fn drain(codec: &Lines, buf: &mut BytesMut, lines: &mut Vec<String>, eof: bool) -> End {
    loop {
        match step(codec, buf, eof) {
            Ok(line) => lines.push(line),
            Err(end) => return end,
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((max, data)) = input.split_first_chunk::<2>() else {
        return;
    };
    let max = usize::from(u16::from_be_bytes(*max)) % 1024;
    let codec = Lines::new().with_max_line_len(max);
    assert_eq!(codec.max_line_len(), max);
    let Some((&step_len, data)) = data.split_first() else {
        return;
    };

    let mut lines = Vec::new();
    let mut buf = BytesMut::from(data);
    let mut end = drain(&codec, &mut buf, &mut lines, false);
    let before_eof = lines.len();
    if end == End::Incomplete {
        end = drain(&codec, &mut buf, &mut lines, true);
        assert!(
            lines.len() <= before_eof + 1,
            "EOF adds at most the unterminated line"
        );
        if end == End::Incomplete {
            assert!(buf.is_empty(), "at EOF everything decodes or fails");
        }
    }

    // Fed in steps: the same lines and the same end, once EOF is applied.
    let step_len = usize::from(step_len.max(1));
    let mut fed_lines = Vec::new();
    let mut fed = BytesMut::new();
    let mut fed_end = End::Incomplete;
    for piece in data.chunks(step_len) {
        fed.extend_from_slice(piece);
        fed_end = drain(&codec, &mut fed, &mut fed_lines, false);
        if fed_end != End::Incomplete {
            break;
        }
    }
    if fed_end == End::Incomplete {
        fed_end = drain(&codec, &mut fed, &mut fed_lines, true);
    }
    assert_eq!(fed_lines, lines, "fed in steps of {step_len}");
    assert_eq!(fed_end, end);

    // Round trip: the bytes (made UTF-8) as lines, split at their `\n`s.
    let text = String::from_utf8_lossy(data);
    let mut whole = BytesMut::new();
    if text.contains('\n') {
        assert!(matches!(
            codec.encode(&text, &mut whole),
            Err(CodecError::Invalid(_))
        ));
        assert!(whole.is_empty(), "a refused line writes nothing");
    }
    let mut wire = BytesMut::new();
    let mut sent = Vec::new();
    for line in text.split('\n') {
        let len_before = wire.len();
        match codec.encode(line, &mut wire) {
            Ok(()) => {
                assert!(line.len() <= max);
                assert_eq!(wire.len(), len_before + line.len() + 1);
                sent.push(line);
            }
            Err(CodecError::FrameTooLarge { len, max: m }) => {
                assert_eq!((len, m), (line.len(), max));
                assert_eq!(wire.len(), len_before, "a refused line writes nothing");
            }
            Err(err) => panic!("{line:?}: {err}"),
        }
    }
    let mut got = Vec::new();
    assert_eq!(drain(&codec, &mut wire, &mut got, false), End::Incomplete);
    assert!(wire.is_empty());
    let want: Vec<&str> = sent
        .iter()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    assert_eq!(got, want, "a line loses one trailing '\\r', nothing else");
});
