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
    /// Bytes read from `io` and not yet decompressed, from `in_pos` on.
    input: Vec<u8>,
    in_pos: usize,
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
                in_pos: 0,
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
            if this.in_pos < this.input.len() || this.decoder.has_pending() {
                let (used, n) = this.decoder.decode(&this.input[this.in_pos..], buf)?;
                this.in_pos += used;
                if n > 0 {
                    return Poll::Ready(Ok(n));
                }
                if used > 0 {
                    // A header, an empty block: more may be decodable already.
                    continue;
                }
            }
            if this.read_eof {
                this.decoder.check_end(&this.input[this.in_pos..])?;
                return Poll::Ready(Ok(0));
            }
            // Keep only the undecoded tail, then read more behind it.
            this.input.drain(..this.in_pos);
            this.in_pos = 0;
            let len = this.input.len();
            let offer = this
                .decoder
                .wants(&this.input)
                .saturating_sub(len)
                .max(READ_SIZE);
            this.input.resize(len + offer, 0);
            let read = Pin::new(&mut this.io).poll_read(cx, &mut this.input[len..]);
            let n = match &read {
                Poll::Ready(Ok(n)) => *n,
                _ => 0,
            };
            this.input.truncate(len + n);
            if this.input.is_empty() && this.input.capacity() > 2 * READ_SIZE {
                // Do not keep a large buffer (a whole snappy chunk) for an idle session.
                this.input = Vec::new();
            }
            ready!(read)?;
            if n == 0 {
                this.read_eof = true;
            }
        }
    }
}
