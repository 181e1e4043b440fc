//! `StorageError`: every way a storage operation fails, with its context.

use super::batch::BatchError;
use super::producer_state::ProducerError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),
    #[error("batch of {bytes} bytes exceeds max.message.bytes {max}")]
    TooLarge { bytes: usize, max: usize },
    #[error("partition log is closed")]
    Closed,
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("no space left on the data disk: {context}")]
    DiskFull { context: String },
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

impl StorageError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> StorageError {
        let context = context.into();
        if source.raw_os_error() == Some(libc::ENOSPC) || source.raw_os_error() == Some(libc::EDQUOT) {
            return StorageError::DiskFull { context };
        }
        StorageError::Io { context, source }
    }
}

/// Converts a glommio error into `StorageError` with context.
pub(crate) fn gerr<T>(context: impl Into<String>) -> impl FnOnce(glommio::GlommioError<T>) -> StorageError {
    let context = context.into();
    move |e| StorageError::io(context, std::io::Error::from(e))
}
