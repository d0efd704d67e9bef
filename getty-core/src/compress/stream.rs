//! [`Compressed`]: a byte stream whose two directions are compressed.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};

use super::{Compression, Decoder, Encoder};

/// The smallest read from the underlying stream.
const READ_SIZE: usize = 16 * 1024;

/// An `AsyncRead + AsyncWrite` whose bytes are compressed on `io`.
///
/// Writes compress their input and end on a flush point; the compressed bytes go to `io` at
/// once, and what `io` does not take yet is sent before any new input is accepted (and by
/// `poll_flush`). Reads decompress into the caller's buffer.
pub(crate) struct Compressed<T> {
    io: T,
    encoder: Encoder,
    decoder: Decoder,
    /// Compressed bytes not yet written to `io`, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes read from `io`, `input[in_start..in_end]` not yet decompressed. The rest of
    /// `input` is zeroed space for reads (zeroed once, not before every read).
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// `io` reached its end.
    read_eof: bool,
    /// The stream's end was written (by `poll_close`).
    finished: bool,
}

impl<T> Compressed<T> {
    /// Wraps `io`, or gives it back when `compression` is [`Compression::None`].
    pub(crate) fn new(io: T, compression: Compression) -> Result<Self, T> {
        match (Encoder::new(compression), Decoder::new(compression)) {
            (Some(encoder), Some(decoder)) => Ok(Compressed {
                io,
                encoder,
                decoder,
                out: Vec::new(),
                out_pos: 0,
                input: Vec::new(),
                in_start: 0,
                in_end: 0,
                read_eof: false,
                finished: false,
            }),
            _ => Err(io),
        }
    }
}

impl<T: AsyncWrite + Unpin> Compressed<T> {
    /// Writes the compressed bytes waiting in `out` to `io`; `Ready(Ok)` once all are written.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.out.clear();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Compressed<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Backpressure: no new input until the last write's output has left.
        ready!(this.poll_send(cx))?;
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        let taken = this.encoder.encode(bufs, &mut this.out)?;
        // Start sending now; what `io` does not take goes with the next write or flush.
        if let Poll::Ready(Err(err)) = this.poll_send(cx) {
            return Poll::Ready(Err(err));
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.finished {
            ready!(this.poll_send(cx))?;
            this.encoder.finish(&mut this.out)?;
            this.finished = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_close(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Compressed<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            // Even with no input: a decoder may hold output that did not fit last time.
            let (used, n) = this
                .decoder
                .decode(&this.input[this.in_start..this.in_end], buf)?;
            this.in_start += used;
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            if used > 0 {
                // A header, an empty block: more may be decodable already.
                continue;
            }
            let pending = &this.input[this.in_start..this.in_end];
            if this.read_eof {
                this.decoder.check_end(pending)?;
                return Poll::Ready(Ok(0));
            }
            // Room behind the undecoded bytes for what the decoder needs, and at least a
            // usual read: moved to the front when that is short, grown when still short.
            let want = this.decoder.wants(pending).max(pending.len() + READ_SIZE);
            if this.input.len() - this.in_start < want && this.in_start > 0 {
                this.input.copy_within(this.in_start..this.in_end, 0);
                this.in_end -= this.in_start;
                this.in_start = 0;
            }
            if this.input.len() - this.in_start < want {
                this.input.resize(this.in_start + want, 0);
            }
            let read = Pin::new(&mut this.io).poll_read(cx, &mut this.input[this.in_end..]);
            let Poll::Ready(read) = read else {
                if this.in_start == this.in_end && this.input.len() > 2 * READ_SIZE {
                    // Do not keep a large buffer (a whole snappy chunk) for an idle session.
                    this.input = Vec::new();
                    (this.in_start, this.in_end) = (0, 0);
                }
                return Poll::Pending;
            };
            match read? {
                0 => this.read_eof = true,
                n => this.in_end += n,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CorruptStream, MAX_INPUT};
    use super::*;
    use futures_lite::future::{block_on, poll_fn};
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt, Cursor};

    /// A sink that takes at most `budget` more bytes, then is not ready.
    struct Trickle {
        taken: Vec<u8>,
        budget: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.budget);
            if n == 0 {
                return Poll::Pending;
            }
            self.budget -= n;
            self.taken.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A reader that hands out at most `step` bytes per read.
    struct Drip {
        data: Cursor<Vec<u8>>,
        step: usize,
    }

    impl AsyncRead for Drip {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            let step = self.step.min(buf.len());
            Pin::new(&mut self.data).poll_read(cx, &mut buf[..step])
        }
    }

    fn compressed<T>(io: T, compression: Compression) -> Compressed<T> {
        match Compressed::new(io, compression) {
            Ok(c) => c,
            Err(_) => panic!("{compression:?} compresses"),
        }
    }

    fn incompressible(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9u32;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    }

    /// A peer that reads nothing holds back the writer: once the socket stops taking bytes,
    /// writes are not ready and the buffered output stays within one write's worth.
    #[test]
    fn a_stalled_socket_stops_taking_input() {
        for compression in [Compression::Deflate, Compression::Snappy] {
            let sink = Trickle {
                taken: Vec::new(),
                budget: 1000,
            };
            let mut c = compressed(sink, compression);
            let data = incompressible(10 * MAX_INPUT);
            let mut accepted = 0;
            let stalled = block_on(poll_fn(|cx| {
                for _ in 0..20 {
                    match Pin::new(&mut c).poll_write(cx, &data[accepted..]) {
                        Poll::Ready(Ok(n)) => accepted += n,
                        Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                        Poll::Pending => return Poll::Ready(Ok(true)),
                    }
                }
                Poll::Ready(Ok(false))
            }))
            .expect("no error");
            assert!(stalled, "{compression:?}: writes stall");
            assert!(accepted <= MAX_INPUT, "{compression:?}: {accepted}");
            let held = c.out.len() - c.out_pos;
            assert!(held <= MAX_INPUT + 1024, "{compression:?}: {held}");
        }
    }

    /// Written through one `Compressed` and read back through another in small pieces, data
    /// arrives whole; deflate's end is a final block a plain decoder accepts.
    #[test]
    fn round_trip_in_small_pieces() {
        let mut data = incompressible(100_000);
        data.extend(std::iter::repeat_n(b"abcabcabd".as_slice(), 20_000).flatten());
        for compression in Compression::ALL.into_iter().skip(1) {
            let sink = Trickle {
                taken: Vec::new(),
                budget: usize::MAX,
            };
            let mut writer = compressed(sink, compression);
            block_on(async {
                for piece in data.chunks(7777) {
                    writer.write_all(piece).await.expect("write");
                }
                writer.close().await.expect("close");
            });
            let wire = writer.io.taken;
            if compression != Compression::Snappy {
                let plain = miniz_oxide::inflate::decompress_to_vec(&wire).map_err(|e| e.status);
                assert!(
                    plain.as_deref() == Ok(&data[..]),
                    "{compression:?}: plain decoder"
                );
            }
            for (step, read_len) in [(1, 5), (333, 4096), (1 << 20, 1 << 16)] {
                let drip = Drip {
                    data: Cursor::new(wire.clone()),
                    step,
                };
                let mut reader = compressed(drip, compression);
                let mut plain = Vec::new();
                let mut buf = vec![0u8; read_len];
                block_on(async {
                    loop {
                        let n = reader.read(&mut buf).await.expect("read");
                        if n == 0 {
                            break;
                        }
                        plain.extend_from_slice(&buf[..n]);
                    }
                });
                assert!(
                    plain == data,
                    "{compression:?} step {step} read {read_len}: {} of {} bytes",
                    plain.len(),
                    data.len()
                );
            }
        }
    }

    /// A stream cut inside a snappy chunk is an error at its end, not a silent short read.
    #[test]
    fn truncated_snappy_stream_is_an_error() {
        let sink = Trickle {
            taken: Vec::new(),
            budget: usize::MAX,
        };
        let mut writer = compressed(sink, Compression::Snappy);
        block_on(writer.write_all(&incompressible(5000))).expect("write");
        let mut wire = writer.io.taken;
        wire.truncate(wire.len() - 10);
        let mut reader = compressed(Cursor::new(wire), Compression::Snappy);
        let err = block_on(reader.read_to_end(&mut Vec::new())).unwrap_err();
        let corrupt = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<CorruptStream>());
        assert!(
            corrupt.is_some_and(|c| c.reason.contains("ends inside a chunk")),
            "{err}"
        );
    }
}
