//! Raw DEFLATE (RFC 1951) streams, one per direction, over miniz_oxide.

use std::io::{self, IoSlice};

use miniz_oxide::deflate::core::{
    create_comp_flags_from_zip_params, CompressionStrategy, CompressorOxide,
};
use miniz_oxide::deflate::stream::deflate;
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use super::{Compression, CorruptStream, MAX_INPUT};

const FORMAT: &str = "deflate";

/// Negative window bits ask miniz_oxide for a raw stream: no zlib header or checksum.
const RAW_WINDOW_BITS: i32 = -15;

/// The compressing side.
pub(super) struct Encoder {
    // Boxed: about 64 KB inline, plus 160 KB of tables it allocates.
    compressor: Box<CompressorOxide>,
}

impl Encoder {
    pub(super) fn new(compression: Compression) -> Self {
        let (level, strategy) = match compression {
            Compression::DeflateBestSpeed => (1, CompressionStrategy::Default),
            Compression::DeflateBestCompression => (9, CompressionStrategy::Default),
            Compression::DeflateHuffmanOnly => (6, CompressionStrategy::HuffmanOnly),
            _ => (6, CompressionStrategy::Default),
        };
        let flags = create_comp_flags_from_zip_params(level, RAW_WINDOW_BITS, strategy as i32);
        Encoder {
            compressor: Box::new(CompressorOxide::new(flags)),
        }
    }

    /// Compresses up to [`MAX_INPUT`] bytes of `bufs`, then sync-flushes: the output ends on a
    /// byte boundary with every byte taken decodable.
    pub(super) fn encode(&mut self, bufs: &[IoSlice<'_>], out: &mut Vec<u8>) -> io::Result<usize> {
        let mut taken = 0;
        for buf in bufs {
            let take = buf.len().min(MAX_INPUT - taken);
            if take > 0 {
                self.run(&buf[..take], out, MZFlush::None)?;
                taken += take;
            }
            if taken == MAX_INPUT {
                break;
            }
        }
        self.run(&[], out, MZFlush::Sync)?;
        Ok(taken)
    }

    /// Writes the final block: the stream ends cleanly for a decoder that reads to its end.
    pub(super) fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.run(&[], out, MZFlush::Finish)
    }

    /// Feeds all of `input` with `flush`, growing `out` until the compressor has nothing
    /// more to say.
    fn run(&mut self, mut input: &[u8], out: &mut Vec<u8>, flush: MZFlush) -> io::Result<()> {
        loop {
            let start = out.len();
            // Room for incompressible input plus block headers, in one call as a rule.
            let room = input.len() + input.len() / 64 + 256;
            out.resize(start + room, 0);
            let result = deflate(&mut self.compressor, input, &mut out[start..], flush);
            out.truncate(start + result.bytes_written);
            input = &input[result.bytes_consumed..];
            let progress = result.bytes_consumed > 0 || result.bytes_written > 0;
            match result.status {
                Ok(MZStatus::StreamEnd) => return Ok(()),
                Ok(_) => {}
                // No progress possible: everything was already said.
                Err(MZError::Buf) if !progress => return Ok(()),
                Err(MZError::Buf) => {}
                Err(err) => {
                    return Err(io::Error::other(format!("deflate failed: {err:?}")));
                }
            }
            // Output space left over means the compressor emptied itself.
            if input.is_empty() && result.bytes_written < room {
                return Ok(());
            }
        }
    }
}

/// The decompressing side.
pub(super) struct Decoder {
    // Boxed: the state holds the 32 KiB window.
    state: Box<InflateState>,
    /// The final block was decoded: any further byte is an error.
    ended: bool,
}

impl Decoder {
    pub(super) fn new() -> Self {
        Decoder {
            state: InflateState::new_boxed(DataFormat::Raw),
            ended: false,
        }
    }

    pub(super) fn decode(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(usize, usize), CorruptStream> {
        if self.ended {
            return match input.is_empty() {
                true => Ok((0, 0)),
                false => Err(CorruptStream::new(
                    FORMAT,
                    format!("{} bytes after the end of the stream", input.len()),
                )),
            };
        }
        let result = inflate(&mut self.state, input, output, MZFlush::None);
        match result.status {
            Ok(MZStatus::StreamEnd) => self.ended = true,
            Ok(_) => {}
            // Not enough input to make progress.
            Err(MZError::Buf) => {}
            Err(MZError::Data) => {
                return Err(CorruptStream::new(FORMAT, "invalid compressed data"));
            }
            Err(err) => return Err(CorruptStream::new(FORMAT, format!("{err:?}"))),
        }
        Ok((result.bytes_consumed, result.bytes_written))
    }

    /// A stream may end anywhere between two blocks: a peer that closes without the final block
    /// (as Go getty does when its connection drops) is not an error here; a frame cut in the
    /// middle is the codec's to report.
    pub(super) fn check_end(&self, leftover: &[u8]) -> Result<(), CorruptStream> {
        match leftover.is_empty() {
            true => Ok(()),
            false => Err(CorruptStream::new(
                FORMAT,
                format!("{} undecoded bytes at the end", leftover.len()),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress(compression: Compression, data: &[u8]) -> Vec<u8> {
        let mut enc = Encoder::new(compression);
        let mut out = Vec::new();
        let mut rest = data;
        while !rest.is_empty() {
            let n = enc.encode(&[IoSlice::new(rest)], &mut out).unwrap();
            rest = &rest[n..];
        }
        enc.finish(&mut out).unwrap();
        out
    }

    /// Text-like data with repeats: what the levels differ on.
    fn corpus() -> Vec<u8> {
        let words = [
            "getty ",
            "session ",
            "codec ",
            "listener ",
            "frame ",
            "poll ",
        ];
        (0..20_000u32)
            .map(|i| words[(i * i % 7 % 6) as usize])
            .collect::<String>()
            .into_bytes()
    }

    /// Each setting is a different encoder: on the same input, best compression is the
    /// smallest, Huffman-only (no string matching) far the largest, and each decodes with a
    /// plain DEFLATE decoder.
    #[test]
    fn levels_differ_and_decode() {
        let data = corpus();
        let size = |c| compress(c, &data).len();
        let (speed, default, best, huffman) = (
            size(Compression::DeflateBestSpeed),
            size(Compression::Deflate),
            size(Compression::DeflateBestCompression),
            size(Compression::DeflateHuffmanOnly),
        );
        assert!(
            best <= default && default < speed,
            "{best} {default} {speed}"
        );
        assert!(huffman > 4 * speed, "{huffman} vs {speed}");
        assert!(
            huffman < data.len(),
            "Huffman coding alone still shrinks text"
        );
        for c in Compression::ALL
            .into_iter()
            .filter(|c| c.code() >= 1 && c.code() <= 4)
        {
            let wire = compress(c, &data);
            let plain = miniz_oxide::inflate::decompress_to_vec(&wire).map_err(|e| e.status);
            assert!(plain.as_deref() == Ok(&data[..]), "{c:?}");
        }
    }

    /// Every write ends on a flush point: a decoder given exactly the bytes of the writes so
    /// far outputs everything written, whatever the input was.
    #[test]
    fn every_write_is_decodable_at_once() {
        let mut enc = Encoder::new(Compression::Deflate);
        let mut dec = Decoder::new();
        let mut wire = Vec::new();
        for i in 0..50usize {
            let msg: Vec<u8> = (0..i * 37).map(|j| (j * i) as u8).collect();
            let parts = [IoSlice::new(b"head"), IoSlice::new(&msg)];
            wire.clear();
            assert_eq!(enc.encode(&parts, &mut wire).unwrap(), 4 + msg.len());
            let mut plain = vec![0u8; 4 + msg.len() + 1];
            let (mut used, mut got) = (0, 0);
            loop {
                let (u, n) = dec.decode(&wire[used..], &mut plain[got..]).unwrap();
                (used, got) = (used + u, got + n);
                if u == 0 && n == 0 {
                    break;
                }
            }
            assert_eq!(used, wire.len());
            assert_eq!(
                &plain[..got],
                &[&b"head"[..], &msg].concat()[..],
                "write {i}"
            );
        }
    }

    /// One write takes at most MAX_INPUT bytes, across buffers.
    #[test]
    fn one_write_takes_at_most_max_input() {
        let mut enc = Encoder::new(Compression::DeflateBestSpeed);
        let big = vec![1u8; MAX_INPUT];
        let mut out = Vec::new();
        let parts = [IoSlice::new(&big[..1000]), IoSlice::new(&big)];
        assert_eq!(enc.encode(&parts, &mut out).unwrap(), MAX_INPUT);
    }

    /// Garbage, and bytes after the final block, are errors naming the format.
    #[test]
    fn corrupt_input_is_an_error() {
        let mut dec = Decoder::new();
        // Block type 3 is reserved.
        let err = dec.decode(&[0xff, 0xff, 0xff], &mut [0u8; 64]).unwrap_err();
        assert_eq!(err.format, "deflate");
        let mut enc = Encoder::new(Compression::Deflate);
        let mut wire = Vec::new();
        enc.encode(&[IoSlice::new(b"last words")], &mut wire)
            .unwrap();
        enc.finish(&mut wire).unwrap();
        wire.extend_from_slice(b"extra");
        let mut dec = Decoder::new();
        let mut out = [0u8; 64];
        let (used, n) = dec.decode(&wire, &mut out).unwrap();
        assert_eq!(&out[..n], b"last words");
        assert!(dec.decode(&wire[used..], &mut out).is_err());
    }
}
