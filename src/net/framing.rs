//! Kafka framing: a 4-byte big-endian size, then that many bytes. Frames are
//! read into a buffer of their own (so produce can split it into owned
//! per-partition pieces without copying).

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt};

/// Smallest request: api key, version, correlation id.
pub const MIN_FRAME_BYTES: usize = 8;
/// Frames up to this size get their whole buffer at once; larger ones grow
/// as bytes arrive, so a client that announces a large frame and sends
/// nothing holds little memory.
const EAGER_ALLOC_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame size {size} outside [{MIN_FRAME_BYTES}, {max}]")]
    BadSize { size: i64, max: usize },
    #[error("frame not received within {timeout:?} ({got} of {want} bytes)")]
    TimedOut { timeout: std::time::Duration, got: usize, want: usize },
    #[error("connection closed in the middle of a frame ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("read: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame. `Ok(None)` when the peer closed between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R, max_bytes: usize) -> Result<Option<Bytes>, FrameError> {
    match read_frame_size(reader, max_bytes).await? {
        Some(size) => read_frame_body(reader, size).await.map(Some),
        None => Ok(None),
    }
}

/// Reads and checks a frame's size prefix. `Ok(None)` when the peer closed
/// between frames.
pub async fn read_frame_size<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_bytes: usize,
) -> Result<Option<usize>, FrameError> {
    let mut size_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut size_buf[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated { got, want: 4 }) };
        }
        got += n;
    }
    let size = i32::from_be_bytes(size_buf);
    if size < MIN_FRAME_BYTES as i32 || size as usize > max_bytes {
        return Err(FrameError::BadSize { size: i64::from(size), max: max_bytes });
    }
    Ok(Some(size as usize))
}

/// Reads a frame's `size` bytes into a buffer of their own.
pub async fn read_frame_body<R: AsyncRead + Unpin>(reader: &mut R, size: usize) -> Result<Bytes, FrameError> {
    let mut buf = vec![0u8; size.min(EAGER_ALLOC_BYTES)];
    let mut filled = 0;
    while filled < size {
        if filled == buf.len() {
            let grow = buf.len().min(size - buf.len());
            buf.resize(buf.len() + grow, 0);
        }
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Err(FrameError::Truncated { got: filled, want: size });
        }
        filled += n;
    }
    debug_assert_eq!(buf.len(), size);
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        futures_lite::future::block_on(f)
    }

    #[test]
    fn frame_is_read_whole() {
        let mut input: &[u8] = &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0];
        let frame = run(read_frame(&mut input, 1024)).expect("ok").expect("frame");
        assert_eq!(&frame[..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn oversized_frame_is_refused_before_reading_it() {
        let mut input: &[u8] = &[0x7f, 0xff, 0xff, 0xff, 1, 2];
        assert!(matches!(run(read_frame(&mut input, 1 << 20)), Err(FrameError::BadSize { .. })));
    }

    #[test]
    fn negative_frame_size_is_refused() {
        let mut input: &[u8] = &[0xff, 0xff, 0xff, 0xf0];
        assert!(matches!(run(read_frame(&mut input, 1 << 20)), Err(FrameError::BadSize { .. })));
    }

    #[test]
    fn frame_cut_short_is_an_error_and_clean_close_is_none() {
        let mut input: &[u8] = &[0, 0, 0, 10, 1, 2];
        assert!(matches!(run(read_frame(&mut input, 1024)), Err(FrameError::Truncated { got: 2, want: 10 })));
        let mut empty: &[u8] = &[];
        assert!(run(read_frame(&mut empty, 1024)).expect("ok").is_none());
    }
}
