//! Bytes in and out of an AMQP connection's socket.
//!
//! `FrameSource` reads through a buffer (many small frames arrive in one
//! read), except that a message body is read straight into the batch it will
//! be stored as (`read_into`): body bytes that came in the same read as
//! earlier frames are moved from the buffer once, the rest never touch it.
//! `FrameSink` writes a frame's chunks (heads, property and body slices) with
//! one `writev` when the socket takes them, so a body slice of a stored
//! segment goes to the kernel without a copy.

use std::os::fd::RawFd;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read buffer size: frames up to this arrive with a single read.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Chunks given to one writev at most (below IOV_MAX).
const IOVECS_MAX: usize = 512;

pub struct FrameSource<R> {
    inner: R,
    /// Bytes read and not yet taken are `buf[start..end]`; the rest of
    /// `buf` (zeroed once) is room for the next read.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: AsyncRead + Unpin> FrameSource<R> {
    pub fn new(inner: R) -> FrameSource<R> {
        FrameSource { inner, buf: vec![0u8; READ_BUFFER_BYTES], start: 0, end: 0 }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn take(&mut self, n: usize) {
        assert!(n <= self.end - self.start);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more; false at end of stream. Makes room for at least `want`
    /// buffered bytes (moving what is buffered to the front, or growing).
    async fn fill(&mut self, want: usize) -> std::io::Result<bool> {
        if self.buf.len() - self.start < want {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = self.inner.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n > 0)
    }

    /// Exactly `N` bytes; `Ok(None)` when the stream ended before the first.
    pub async fn read_array<const N: usize>(&mut self) -> std::io::Result<Option<[u8; N]>> {
        while self.end - self.start < N {
            if !self.fill(N).await? {
                if self.end == self.start {
                    return Ok(None);
                }
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buffered()[..N]);
        self.take(N);
        Ok(Some(out))
    }

    /// Exactly `n` bytes as their own `Bytes` (method and header payloads).
    pub async fn read_bytes(&mut self, n: usize) -> std::io::Result<Bytes> {
        while self.end - self.start < n {
            if !self.fill(n).await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
        let out = Bytes::copy_from_slice(&self.buffered()[..n]);
        self.take(n);
        Ok(out)
    }

    /// Exactly `out.len()` bytes into `out`: what is buffered first, the rest
    /// read from the socket directly into `out`.
    pub async fn read_into(&mut self, out: &mut [u8]) -> std::io::Result<()> {
        let buffered = (self.end - self.start).min(out.len());
        out[..buffered].copy_from_slice(&self.buffered()[..buffered]);
        self.take(buffered);
        let mut filled = buffered;
        while filled < out.len() {
            let n = self.inner.read(&mut out[filled..]).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            filled += n;
        }
        Ok(())
    }

    /// Discards exactly `n` bytes (the body of a refused message).
    pub async fn skip(&mut self, mut n: usize) -> std::io::Result<()> {
        while n > 0 {
            if self.end == self.start && !self.fill(1).await? {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let k = n.min(self.end - self.start);
            self.take(k);
            n -= k;
        }
        Ok(())
    }
}

pub struct FrameSink<W> {
    inner: W,
    /// The socket, for `writev`; `None` writes chunk by chunk.
    fd: Option<RawFd>,
}

impl<W: AsyncWrite + Unpin> FrameSink<W> {
    pub fn new(inner: W, fd: Option<RawFd>) -> FrameSink<W> {
        FrameSink { inner, fd }
    }

    /// Writes every chunk, in order.
    pub async fn write_chunks(&mut self, chunks: &[Bytes]) -> std::io::Result<()> {
        let mut i = 0; // first chunk not fully written
        let mut at = 0; // bytes of chunks[i] already written
        while i < chunks.len() {
            if let Some(fd) = self.fd {
                match writev_nonblocking(fd, &chunks[i..], at) {
                    Ok(mut n) => {
                        while n > 0 && i < chunks.len() {
                            let left = chunks[i].len() - at;
                            if n >= left {
                                n -= left;
                                i += 1;
                                at = 0;
                            } else {
                                at += n;
                                n = 0;
                            }
                        }
                        while i < chunks.len() && chunks[i].is_empty() {
                            i += 1;
                        }
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            // The socket is full (or no fd): wait for it by writing the rest
            // of this chunk the ordinary way.
            let n = self.inner.write(&chunks[i][at..]).await?;
            if n == 0 && !chunks[i][at..].is_empty() {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            at += n;
            if at == chunks[i].len() {
                i += 1;
                at = 0;
            }
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().await
    }
}

/// One non-blocking `writev` of `chunks` (the first from byte `skip`).
fn writev_nonblocking(fd: RawFd, chunks: &[Bytes], skip: usize) -> std::io::Result<usize> {
    let mut iov: [libc::iovec; IOVECS_MAX] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; IOVECS_MAX];
    let mut count = 0;
    for (k, c) in chunks.iter().take(IOVECS_MAX).enumerate() {
        let s = if k == 0 { &c[skip..] } else { &c[..] };
        if s.is_empty() {
            continue;
        }
        iov[count] = libc::iovec { iov_base: s.as_ptr() as *mut libc::c_void, iov_len: s.len() };
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    let msg = libc::msghdr {
        msg_name: std::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: iov.as_mut_ptr(),
        msg_iovlen: count,
        msg_control: std::ptr::null_mut(),
        msg_controllen: 0,
        msg_flags: 0,
    };
    // SAFETY: every iovec points into a live `Bytes` of `chunks`, which
    // outlives the call; `msg` describes `count` of them.
    let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        futures_lite::future::block_on(f)
    }

    #[test]
    fn a_body_read_into_its_batch_takes_buffered_bytes_first() {
        let input: &[u8] = b"HEADbody-bytes-and-more";
        let mut src = FrameSource::new(input);
        assert_eq!(run(src.read_array::<4>()).unwrap(), Some(*b"HEAD"));
        let mut out = [0u8; 10];
        run(src.read_into(&mut out)).unwrap();
        assert_eq!(&out, b"body-bytes");
        assert_eq!(&run(src.read_bytes(4)).unwrap()[..], b"-and");
        run(src.skip(5)).unwrap();
        assert_eq!(run(src.read_array::<1>()).unwrap(), None);
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_an_error() {
        let input: &[u8] = b"AB";
        let mut src = FrameSource::new(input);
        assert!(run(src.read_array::<4>()).is_err());
    }

    #[test]
    fn chunks_are_written_whole_and_in_order_through_writev() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        let fd = std::os::fd::AsRawFd::as_raw_fd(&a);
        let chunks = vec![
            Bytes::from_static(b"one "),
            Bytes::new(),
            Bytes::from_static(b"two "),
            Bytes::from(vec![b'x'; 100_000]),
        ];
        let writer = std::thread::spawn(move || {
            let mut sink = FrameSink::new(futures_lite::io::AssertAsync::new(&a), Some(fd));
            run(sink.write_chunks(&chunks)).expect("write");
            drop(a);
        });
        let mut got = Vec::new();
        std::io::Read::read_to_end(&mut &b, &mut got).expect("read");
        writer.join().expect("writer");
        assert_eq!(&got[..8], b"one two ");
        assert_eq!(got.len(), 8 + 100_000);
    }
}
