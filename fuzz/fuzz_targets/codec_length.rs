//! `LengthDelimited` at every header width and byte order: decoding arbitrary bytes (all at
//! once, then fed in steps, then at EOF) agrees with a reference reading of the headers, and
//! encoding round-trips.
//!
//! Input: a settings byte (bits 0-1: width 1/2/4/8; bit 2: little-endian; bit 3: `hello()`;
//! bit 4: a payload limit follows as a big-endian u16), a step byte for feeding, the bytes.
#![no_main]

use bytes::BytesMut;
use getty_core::codec::{Endian, LengthDelimited};
use getty_core::{Codec, CodecError, Decoded};
use libfuzzer_sys::fuzz_target;

/// What decoding the front of `buf` must give, read straight from the header.
#[derive(Debug, PartialEq)]
enum Expect {
    /// A frame with this payload length.
    Frame(usize),
    /// Fewer bytes than a header.
    NeedHeader,
    /// Header known, the whole frame (header included) will be this long.
    NeedBody(usize),
    /// The header declares this length (saturated to `usize::MAX`), over the limit.
    TooLarge(usize),
}

fn expect(buf: &[u8], codec: &LengthDelimited) -> Expect {
    let width = codec.width();
    let Some(header) = buf.get(..width) else {
        return Expect::NeedHeader;
    };
    let mut bytes = [0u8; 8];
    let declared = match codec.endian() {
        Endian::Big => {
            bytes[8 - width..].copy_from_slice(header);
            u64::from_be_bytes(bytes)
        }
        Endian::Little => {
            bytes[..width].copy_from_slice(header);
            u64::from_le_bytes(bytes)
        }
    };
    let len = usize::try_from(declared).unwrap_or(usize::MAX);
    if len > codec.max_frame_len() {
        return Expect::TooLarge(len);
    }
    let total = width
        .checked_add(len)
        .expect("max_frame_len leaves room for the header");
    if buf.len() < total {
        Expect::NeedBody(total)
    } else {
        Expect::Frame(len)
    }
}

/// How a run of decodes ended.
#[derive(Debug, PartialEq)]
enum End {
    Incomplete,
    TooLarge(usize),
}

/// Decodes one step, checking it against `expect`. `Some(payload)` for a frame.
fn step(codec: &LengthDelimited, buf: &mut BytesMut, eof: bool) -> Result<Option<Vec<u8>>, End> {
    let before = buf.clone();
    let want = expect(&before, codec);
    let got = if eof {
        codec.decode_eof(buf)
    } else {
        codec.decode(buf)
    };
    match (got, want) {
        (Ok(Decoded::Frame(pkg)), Expect::Frame(len)) => {
            let width = codec.width();
            assert_eq!(pkg.len(), len, "payload length is the declared one");
            assert!(pkg.len() <= codec.max_frame_len());
            assert_eq!(&pkg[..], &before[width..width + len], "payload bytes");
            assert_eq!(
                &buf[..],
                &before[width + len..],
                "exactly the frame is consumed"
            );
            assert!(buf.len() < before.len(), "a frame consumes input");
            Ok(Some(pkg.to_vec()))
        }
        (Ok(Decoded::Incomplete(None)), Expect::NeedHeader) => {
            assert_eq!(buf, &before, "incomplete leaves the buffer");
            Err(End::Incomplete)
        }
        (Ok(Decoded::Incomplete(Some(n))), Expect::NeedBody(total)) => {
            assert_eq!(n, total);
            assert!(
                n > buf.len(),
                "Incomplete(Some(n)) means more than is buffered"
            );
            assert!(n - codec.width() <= codec.max_frame_len());
            assert_eq!(buf, &before, "incomplete leaves the buffer");
            Err(End::Incomplete)
        }
        (Err(CodecError::FrameTooLarge { len, max }), Expect::TooLarge(declared)) => {
            assert_eq!((len, max), (declared, codec.max_frame_len()));
            Err(End::TooLarge(len))
        }
        (got, want) => panic!("decode gave {got:?}, the header says {want:?}"),
    }
}

/// Decodes until incomplete or an error: the frames, and how it ended.
fn drain(codec: &LengthDelimited, buf: &mut BytesMut, frames: &mut Vec<Vec<u8>>, eof: bool) -> End {
    loop {
        match step(codec, buf, eof) {
            Ok(Some(pkg)) => frames.push(pkg),
            Ok(None) => unreachable!(),
            Err(end) => return end,
        }
    }
}

fn codec_from(settings: u8, data: &mut &[u8]) -> LengthDelimited {
    let width = [1, 2, 4, 8][usize::from(settings & 3)];
    let endian = if settings & 4 == 0 {
        Endian::Big
    } else {
        Endian::Little
    };
    let mut codec = if settings & 8 != 0 {
        LengthDelimited::hello()
    } else {
        LengthDelimited::new(width, endian).expect("a valid width")
    };
    if settings & 16 != 0 {
        if let Some((max, rest)) = data.split_first_chunk::<2>() {
            let asked = usize::from(u16::from_be_bytes(*max));
            let before = codec.max_frame_len();
            codec = codec.with_max_frame_len(asked);
            assert_eq!(
                codec.max_frame_len(),
                asked.min(before),
                "a limit is capped, never raised"
            );
            *data = rest;
        }
    }
    codec
}

fuzz_target!(|input: &[u8]| {
    let Some((&settings, mut data)) = input.split_first() else {
        return;
    };
    let codec = codec_from(settings, &mut data);
    let Some((&step_len, data)) = data.split_first() else {
        return;
    };

    // All at once, then what is left at EOF.
    let mut frames = Vec::new();
    let mut buf = BytesMut::from(data);
    let end = drain(&codec, &mut buf, &mut frames, false);
    let mut at_eof = Vec::new();
    let eof_end = match end {
        End::Incomplete => drain(&codec, &mut buf, &mut at_eof, true),
        End::TooLarge(len) => End::TooLarge(len),
    };
    assert!(at_eof.is_empty(), "nothing more decodes at EOF");
    assert_eq!(end, eof_end);

    // Fed `step_len` bytes at a time: the same frames, the same end.
    let step_len = usize::from(step_len.max(1));
    let mut fed_frames = Vec::new();
    let mut fed = BytesMut::new();
    let mut fed_end = End::Incomplete;
    for piece in data.chunks(step_len) {
        fed.extend_from_slice(piece);
        fed_end = drain(&codec, &mut fed, &mut fed_frames, false);
        if fed_end != End::Incomplete {
            break;
        }
    }
    assert_eq!(fed_frames, frames, "fed in steps of {step_len}");
    assert_eq!(fed_end, end);
    if end == End::Incomplete {
        assert_eq!(fed, buf, "the same bytes are left");
    }

    // Round trip: the bytes as one payload, then as the frames found plus that payload.
    let mut wire = BytesMut::new();
    let encoded = codec.encode(data, &mut wire);
    let mut header = BytesMut::new();
    let header_only = codec
        .encode_header(data.len(), &mut header)
        .expect("a header format");
    if data.len() > codec.max_frame_len() {
        assert!(
            matches!(encoded, Err(CodecError::FrameTooLarge { len, max }) if len == data.len() && max == codec.max_frame_len())
        );
        assert!(matches!(header_only, Err(CodecError::FrameTooLarge { .. })));
        assert!(
            wire.is_empty() && header.is_empty(),
            "a refused frame writes nothing"
        );
        return;
    }
    encoded.expect("a payload within the limit encodes");
    header_only.expect("a payload within the limit has a header");
    assert_eq!(wire.len(), codec.width() + data.len());
    assert_eq!(
        &wire[..codec.width()],
        &header[..],
        "encode_header is encode's header"
    );
    assert_eq!(&wire[codec.width()..], data);
    for pkg in &frames {
        codec
            .encode(pkg, &mut wire)
            .expect("a decoded frame re-encodes");
    }
    let mut decoded = Vec::new();
    assert_eq!(
        drain(&codec, &mut wire, &mut decoded, false),
        End::Incomplete
    );
    assert!(wire.is_empty(), "every encoded byte decodes");
    assert_eq!(decoded.len(), frames.len() + 1);
    assert_eq!(decoded[0], data);
    assert_eq!(&decoded[1..], &frames[..]);
});
