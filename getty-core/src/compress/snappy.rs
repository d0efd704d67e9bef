//! The snappy framing format (<https://github.com/google/snappy/blob/main/framing_format.txt>)
//! over `snap`'s raw block codec.
//!
//! A stream is a stream-identifier chunk, then chunks of a 1-byte type and a 3-byte
//! little-endian length. Data chunks hold the masked CRC-32C of their uncompressed bytes and at
//! most 64 KiB of data, compressed or not.

use std::io::{self, IoSlice};

use super::{CorruptStream, MAX_INPUT};

const FORMAT: &str = "snappy";

/// The stream identifier chunk: type 0xff, length 6, "sNaPpY".
const STREAM_IDENTIFIER: &[u8] = b"\xff\x06\x00\x00sNaPpY";
const COMPRESSED: u8 = 0x00;
const UNCOMPRESSED: u8 = 0x01;
const PADDING: u8 = 0xfe;
const IDENTIFIER: u8 = 0xff;

/// The largest uncompressed data in one chunk.
const MAX_BLOCK: usize = 64 * 1024;
/// The longest chunk body accepted: a checksum and a block compressed at its worst (snappy's
/// bound is `32 + n + n / 6`). Longer chunks, even skippable ones, are refused rather than
/// buffered.
const MAX_CHUNK: usize = 4 + 32 + MAX_BLOCK + MAX_BLOCK / 6;

/// The compressing side.
pub(super) struct Encoder {
    // Boxed: its hash table is inline (2 KiB).
    raw: Box<snap::raw::Encoder>,
    /// Set once the stream identifier is written.
    started: bool,
    /// Input gathered from several buffers into one block.
    block: Vec<u8>,
}

impl Encoder {
    pub(super) fn new() -> Self {
        Encoder {
            raw: Box::new(snap::raw::Encoder::new()),
            started: false,
            block: Vec::new(),
        }
    }

    /// Compresses up to [`MAX_INPUT`] bytes of `bufs` into whole chunks. Small buffers are
    /// gathered into one block, so a vectored write of many packages is one chunk.
    pub(super) fn encode(&mut self, bufs: &[IoSlice<'_>], out: &mut Vec<u8>) -> io::Result<usize> {
        if !self.started {
            out.extend_from_slice(STREAM_IDENTIFIER);
            self.started = true;
        }
        let mut taken = 0;
        for buf in bufs {
            let mut rest = &buf[..buf.len().min(MAX_INPUT - taken)];
            taken += rest.len();
            while !rest.is_empty() {
                if self.block.is_empty() && rest.len() >= MAX_BLOCK {
                    // A whole block in one buffer: no copy.
                    write_chunk(&mut self.raw, &rest[..MAX_BLOCK], out)?;
                    rest = &rest[MAX_BLOCK..];
                    continue;
                }
                let n = rest.len().min(MAX_BLOCK - self.block.len());
                self.block.extend_from_slice(&rest[..n]);
                rest = &rest[n..];
                if self.block.len() == MAX_BLOCK {
                    write_chunk(&mut self.raw, &self.block, out)?;
                    self.block.clear();
                }
            }
            if taken == MAX_INPUT {
                break;
            }
        }
        if !self.block.is_empty() {
            write_chunk(&mut self.raw, &self.block, out)?;
            self.block.clear();
        }
        Ok(taken)
    }
}

/// The masked CRC-32C the snappy framing format stores (masking keeps a CRC of data that
/// itself holds CRCs from being trivially related to it).
fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// Appends one data chunk holding `data` (at most [`MAX_BLOCK`] bytes): compressed, unless
/// that saves less than an eighth, as the reference encoder decides.
fn write_chunk(raw: &mut snap::raw::Encoder, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let crc = masked_crc(data);
    let header = out.len();
    out.extend_from_slice(&[COMPRESSED, 0, 0, 0]);
    out.extend_from_slice(&crc.to_le_bytes());
    let body = out.len();
    out.resize(body + snap::raw::max_compress_len(data.len()), 0);
    let n = raw
        .compress(data, &mut out[body..])
        .map_err(|err| io::Error::other(format!("snappy compression failed: {err}")))?;
    out.truncate(body + n);
    if n >= data.len() - data.len() / 8 {
        out.truncate(body);
        out.extend_from_slice(data);
        out[header] = UNCOMPRESSED;
    }
    let len = (out.len() - header - 4) as u32;
    out[header + 1..header + 4].copy_from_slice(&len.to_le_bytes()[..3]);
    Ok(())
}

/// The decompressing side.
pub(super) struct Decoder {
    raw: snap::raw::Decoder,
    /// Set once the stream identifier was read; data before it is an error.
    started: bool,
    /// A decoded block that did not fit in the caller's buffer, from `pending_pos` on.
    pending: Vec<u8>,
    pending_pos: usize,
}

/// The type and body length of the chunk at the start of `input`, once its header is there.
fn chunk_header(input: &[u8]) -> Option<(u8, usize)> {
    let header = input.get(..4)?;
    let len = usize::from(header[1]) | usize::from(header[2]) << 8 | usize::from(header[3]) << 16;
    Some((header[0], len))
}

impl Decoder {
    pub(super) fn new() -> Self {
        Decoder {
            raw: snap::raw::Decoder::new(),
            started: false,
            pending: Vec::new(),
            pending_pos: 0,
        }
    }

    fn has_pending(&self) -> bool {
        self.pending_pos < self.pending.len()
    }

    /// Bytes needed for the next whole chunk.
    pub(super) fn wants(input: &[u8]) -> usize {
        match chunk_header(input) {
            Some((_, len)) => 4 + len.min(MAX_CHUNK),
            None => 4,
        }
    }

    /// Decodes every whole chunk at the start of `input` whose data fits in `output` (and, when
    /// nothing fits, the first one, keeping what does not fit for the next call).
    pub(super) fn decode(
        &mut self,
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(usize, usize), CorruptStream> {
        if self.has_pending() {
            let n = (self.pending.len() - self.pending_pos).min(output.len());
            output[..n].copy_from_slice(&self.pending[self.pending_pos..self.pending_pos + n]);
            self.pending_pos += n;
            if !self.has_pending() {
                self.pending.clear();
                self.pending_pos = 0;
            }
            return Ok((0, n));
        }
        let (mut used, mut written) = (0, 0);
        while let Some((kind, len)) = chunk_header(&input[used..]) {
            if len > MAX_CHUNK {
                return Err(corrupt(format!(
                    "a chunk of {len} bytes (type {kind:#04x}) exceeds the {MAX_CHUNK}-byte limit"
                )));
            }
            let Some(body) = input.get(used + 4..used + 4 + len) else {
                break;
            };
            match kind {
                IDENTIFIER if body == &STREAM_IDENTIFIER[4..] => self.started = true,
                IDENTIFIER => return Err(corrupt("a bad stream identifier")),
                _ if !self.started => {
                    return Err(corrupt(
                        "the stream does not begin with the stream identifier",
                    ))
                }
                COMPRESSED | UNCOMPRESSED => {
                    let Some((crc, data)) = body.split_first_chunk::<4>() else {
                        return Err(corrupt("a data chunk shorter than its checksum"));
                    };
                    let len = match kind {
                        COMPRESSED => snap::raw::decompress_len(data)
                            .map_err(|err| corrupt(err.to_string()))?,
                        _ => data.len(),
                    };
                    if len > MAX_BLOCK {
                        return Err(corrupt(format!("a block of {len} bytes exceeds 64 KiB")));
                    }
                    let room = output.len() - written;
                    if len > room && written > 0 {
                        // Next call: the caller takes what is decoded first.
                        break;
                    }
                    let target = match len <= room {
                        true => &mut output[written..written + len],
                        false => {
                            self.pending.resize(len, 0);
                            &mut self.pending[..]
                        }
                    };
                    match kind {
                        COMPRESSED => {
                            self.raw
                                .decompress(data, target)
                                .map_err(|err| corrupt(err.to_string()))?;
                        }
                        _ => target.copy_from_slice(data),
                    }
                    if masked_crc(target) != u32::from_le_bytes(*crc) {
                        return Err(corrupt("a chunk's checksum does not match its data"));
                    }
                    used += 4 + body.len();
                    if len > room {
                        output[written..].copy_from_slice(&self.pending[..room]);
                        self.pending_pos = room;
                        return Ok((used, written + room));
                    }
                    written += len;
                    continue;
                }
                PADDING | 0x80..=0xfd => {}
                _ => {
                    return Err(corrupt(format!(
                        "reserved unskippable chunk type {kind:#04x}"
                    )))
                }
            }
            used += 4 + body.len();
        }
        Ok((used, written))
    }

    /// The stream may only end between chunks.
    pub(super) fn check_end(leftover: &[u8]) -> Result<(), CorruptStream> {
        match leftover.is_empty() {
            true => Ok(()),
            false => Err(corrupt(format!(
                "the stream ends inside a chunk ({} bytes of it)",
                leftover.len()
            ))),
        }
    }
}

fn corrupt(reason: impl Into<String>) -> CorruptStream {
    CorruptStream::new(FORMAT, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn encode_all(enc: &mut Encoder, bufs: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut done = 0;
        while done < total {
            // Re-slice past what was taken.
            let mut skip = done;
            let rest: Vec<IoSlice<'_>> = bufs
                .iter()
                .filter_map(|b| {
                    if skip >= b.len() {
                        skip -= b.len();
                        None
                    } else {
                        let s = IoSlice::new(&b[skip..]);
                        skip = 0;
                        Some(s)
                    }
                })
                .collect();
            done += enc.encode(&rest, &mut out).unwrap();
        }
        out
    }

    /// Decodes `wire` fed `step` bytes at a time into buffers of `out_len` bytes.
    fn decode_all(wire: &[u8], step: usize, out_len: usize) -> Result<Vec<u8>, CorruptStream> {
        let mut dec = Decoder::new();
        let (mut buffered, mut fed) = (Vec::new(), 0);
        let mut plain = Vec::new();
        let mut out = vec![0u8; out_len];
        loop {
            let (used, n) = dec.decode(&buffered, &mut out)?;
            buffered.drain(..used);
            plain.extend_from_slice(&out[..n]);
            if used == 0 && n == 0 {
                if fed == wire.len() {
                    Decoder::check_end(&buffered)?;
                    return Ok(plain);
                }
                let end = (fed + step).min(wire.len());
                buffered.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
        }
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 1000) as u8)
            .collect()
    }

    /// `snap`'s own frame decoder reads what this encoder writes, and this decoder reads what
    /// `snap`'s frame encoder writes, at sizes around the block boundary.
    #[test]
    fn interoperates_with_snap_frames() {
        for len in [
            0,
            1,
            100,
            MAX_BLOCK - 1,
            MAX_BLOCK,
            MAX_BLOCK + 1,
            3 * MAX_BLOCK + 7,
        ] {
            let data = sample(len);
            let mut enc = Encoder::new();
            let wire = encode_all(&mut enc, &[&data[..len / 3], &data[len / 3..]]);
            let mut plain = Vec::new();
            snap::read::FrameDecoder::new(&wire[..])
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, data, "ours -> snap, {len} bytes");

            let mut theirs = snap::write::FrameEncoder::new(Vec::new());
            theirs.write_all(&data).unwrap();
            let wire = theirs.into_inner().unwrap();
            for (step, out_len) in [(1, 7), (wire.len().max(1), 4096), (1000, MAX_BLOCK)] {
                assert_eq!(
                    decode_all(&wire, step, out_len).unwrap(),
                    data,
                    "snap -> ours"
                );
            }
        }
    }

    /// Incompressible data goes in uncompressed chunks, and still decodes.
    #[test]
    fn incompressible_data_is_stored() {
        let mut state = 0x1234_5678u32;
        let data: Vec<u8> = (0..5000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let wire = encode_all(&mut Encoder::new(), &[&data]);
        assert_eq!(wire[STREAM_IDENTIFIER.len()], UNCOMPRESSED);
        assert_eq!(decode_all(&wire, 13, 100).unwrap(), data);
    }

    /// Each kind of damage is an error naming what is wrong.
    #[test]
    fn damage_is_reported() {
        let wire = encode_all(&mut Encoder::new(), &[&sample(3000)]);
        let reason = |wire: &[u8]| {
            decode_all(wire, wire.len().max(1), 8192)
                .unwrap_err()
                .reason
        };

        assert!(reason(&wire[STREAM_IDENTIFIER.len()..]).contains("stream identifier"));
        let mut bad_crc = wire.clone();
        bad_crc[STREAM_IDENTIFIER.len() + 4] ^= 1;
        assert!(reason(&bad_crc).contains("checksum"));
        let mut reserved = wire.clone();
        reserved[STREAM_IDENTIFIER.len()] = 0x02;
        assert!(reason(&reserved).contains("unskippable"));
        let mut huge = STREAM_IDENTIFIER.to_vec();
        huge.extend_from_slice(&[0x80, 0xff, 0xff, 0xff]);
        assert!(reason(&huge).contains("limit"));
        assert!(reason(&wire[..wire.len() - 1]).contains("ends inside a chunk"));
        // Padding and skippable chunks are skipped.
        let mut skippable = STREAM_IDENTIFIER.to_vec();
        skippable.extend_from_slice(&[PADDING, 2, 0, 0, 0, 0, 0x99, 1, 0, 0, 7]);
        skippable.extend_from_slice(&wire[STREAM_IDENTIFIER.len()..]);
        assert_eq!(decode_all(&skippable, 5, 100).unwrap(), sample(3000));
    }

    /// The check value of CRC-32C and test vectors from RFC 3720 (iSCSI), appendix B.4, so
    /// that the checksum crate is the Castagnoli CRC the framing format names.
    #[test]
    fn crc32c_known_vectors() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(crc32c::crc32c(&[0xffu8; 32]), 0x62a8_ab43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c::crc32c(&ascending), 0x46dd_794e);
        assert_eq!(crc32c::crc32c(b""), 0);
    }

    /// The masking of the framing format: rotated right by 15 bits, plus 0xa282ead8.
    #[test]
    fn masked_crc_is_rotated_and_offset() {
        // The CRC of nothing is 0, so its masked form is the offset alone.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        // 0xe3069283 rotated right by 15 is 0x2507c60d; plus the offset, 0xc78ab0e5.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }
}
