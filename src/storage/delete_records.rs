//! DeleteRecords: moving a partition's log start offset forward on request.
//!
//! The new start is made durable first, in `<partition dir>/log-start-offset`
//! (i64 big-endian then CRC-32C of those 8 bytes; written to a temporary
//! file, fsynced, renamed, directory fsynced), then applied in memory, then
//! every sealed segment wholly below it is deleted. Reads below the start
//! answer OFFSET_OUT_OF_RANGE from then on. At open, recovery takes the larger
//! of the first segment's base and the stored start (never past the log end)
//! and deletes segments a crash left behind below it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::StorageError;
use super::log::PartitionLog;
use super::segment::{self, SealedSegment};

pub const LOG_START_FILE_NAME: &str = "log-start-offset";
const LOG_START_TMP_NAME: &str = "log-start-offset.tmp";

fn encode(offset: i64) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&out[..8]);
    out[8..].copy_from_slice(&crc.to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<i64> {
    let body: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let crc = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
    (bytes.len() == 12 && crc32c::crc32c(&body) == crc).then(|| i64::from_be_bytes(body))
}

/// The files of the segment at `base`: log, offset index, time index, and
/// the producer state snapshot taken when the log rolled to it (useless
/// without the segment). Every path deleting a segment deletes all of them.
pub(crate) fn segment_files(dir: &Path, base: i64) -> [PathBuf; 4] {
    [
        dir.join(segment::log_file_name(base)),
        dir.join(segment::index_file_name(base)),
        dir.join(segment::time_index_file_name(base)),
        dir.join(super::producer_state::snapshot_file_name(base)),
    ]
}

/// Deletes every file of the segments at `bases` (blocking: run it on a
/// helper thread). A file already gone is not an error.
pub(crate) fn remove_segments(dir: &Path, bases: &[i64]) -> std::io::Result<()> {
    for &base in bases {
        for file in segment_files(dir, base) {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The log start offset at open (see the module doc); removes sealed
/// segments wholly below it from `sealed` and from the disk.
pub(crate) fn recover_log_start(
    dir: &Path,
    first_base: i64,
    log_end_offset: i64,
    sealed: &mut BTreeMap<i64, SealedSegment>,
) -> i64 {
    let path = dir.join(LOG_START_FILE_NAME);
    let stored = match std::fs::read(&path) {
        Ok(bytes) => match decode(&bytes) {
            Some(offset) => Some(offset),
            None => {
                tracing::warn!(file = %path.display(), "log start offset file is damaged; starting at the first segment");
                None
            }
        },
        Err(_) => None,
    };
    let start = stored.map_or(first_base, |s| s.max(first_base)).min(log_end_offset.max(first_base));
    let below: Vec<i64> = sealed.iter().filter(|(_, seg)| seg.next_offset <= start).map(|(&base, _)| base).collect();
    for base in below {
        sealed.remove(&base);
        for file in segment_files(dir, base) {
            if let Err(e) = std::fs::remove_file(&file) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %file.display(), error = %e, "could not delete a segment below the log start offset");
                }
            }
        }
        tracing::info!(dir = %dir.display(), base, log_start_offset = start, "deleted a segment below the log start offset");
    }
    start
}

impl PartitionLog {
    /// Moves the log start offset to `offset` (-1: the high watermark) and
    /// deletes the segments wholly below it. Returns the new log start offset
    /// (the low watermark). An offset at or below the current start changes
    /// nothing; one past the high watermark is `OffsetOutOfRange`.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, StorageError> {
        let _permit = self.start_offset_change.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let (start, hw) = {
            let s = self.state.borrow();
            (s.log_start_offset, s.high_watermark)
        };
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(StorageError::OffsetOutOfRange { offset, start, end: hw });
        }
        if target <= start {
            return Ok(start);
        }
        // 1. Durable.
        let dir = self.dir.clone();
        segment::blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let tmp = dir.join(LOG_START_TMP_NAME);
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&encode(target))?;
            f.sync_all()?;
            std::fs::rename(&tmp, dir.join(LOG_START_FILE_NAME))?;
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .map_err(|e| StorageError::io(format!("write {}", self.dir.join(LOG_START_FILE_NAME).display()), e))?;
        // 2. Visible: reads below `target` fail from here on.
        let doomed: Vec<SealedSegment> = {
            let mut s = self.state.borrow_mut();
            s.log_start_offset = s.log_start_offset.max(target);
            while s.tail.front().is_some_and(|b| b.last_offset < target) {
                if let Some(b) = s.tail.pop_front() {
                    s.tail_bytes -= b.data.len();
                }
            }
            let bases: Vec<i64> =
                s.sealed.iter().filter(|(_, seg)| seg.next_offset <= target).map(|(&base, _)| base).collect();
            bases.iter().filter_map(|base| s.sealed.remove(base)).collect()
        };
        tracing::info!(topic = %self.topic, partition = self.partition, log_start_offset = target, segments_deleted = doomed.len(), "records deleted");
        // 3. Space back. Readers holding slices keep their maps alive.
        if !doomed.is_empty() {
            self.remove_retired(doomed).await?;
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    use crate::kafka::record_batch::synthetic_batch;
    use crate::storage::log::AckWait;
    use crate::storage::{LogConfig, Preallocation};

    fn run<T>(f: impl std::future::Future<Output = T> + 'static) -> T {
        glommio::LocalExecutorBuilder::default().make().expect("executor").run(f)
    }

    async fn open(dir: &Path, segment_bytes: u64) -> Rc<PartitionLog> {
        let config = LogConfig {
            segment_bytes,
            preallocation: Preallocation::Fallocate,
            tail_cache_bytes: 8 * 1024,
            ..LogConfig::default()
        };
        PartitionLog::open(dir.to_path_buf(), "t".into(), 0, config).await.expect("open log")
    }

    fn log_files(dir: &Path) -> Vec<i64> {
        let mut v: Vec<i64> = std::fs::read_dir(dir)
            .expect("list")
            .flatten()
            .filter_map(|e| segment::parse_log_file_name(&e.file_name().to_string_lossy()))
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn deleted_records_stay_deleted_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        run(async move {
            let log = open(&path, 64 * 1024).await;
            for _ in 0..100 {
                log.append(synthetic_batch(2, 1000, crate::storage::now_ms()), AckWait::Commit).await.expect("append");
            }
            let segments = log_files(&path);
            assert!(segments.len() >= 3, "{segments:?}");
            let target = segments[2] + 3;
            assert_eq!(log.delete_records(target).await.expect("delete"), target);
            assert_eq!(log_files(&path), segments[2..].to_vec(), "segments wholly below the start are deleted");
            assert!(matches!(log.read(target - 1, 1 << 20), Err(StorageError::OffsetOutOfRange { .. })));
            assert!(log.read(target, 1 << 20).is_ok());
            // Lower than the start: nothing changes. Past the end: refused.
            assert_eq!(log.delete_records(5).await.expect("no-op"), target);
            assert!(matches!(log.delete_records(1_000_000).await, Err(StorageError::OffsetOutOfRange { .. })));
            log.close().await;
            drop(log);
            let log = open(&path, 64 * 1024).await;
            assert_eq!(log.offsets().log_start_offset, target);
            assert!(matches!(log.read(target - 1, 1 << 20), Err(StorageError::OffsetOutOfRange { .. })));
            // -1: everything up to the high watermark.
            let hw = log.high_watermark();
            assert_eq!(log.delete_records(-1).await.expect("delete all"), hw);
            log.close().await;
            drop(log);
            let log = open(&path, 64 * 1024).await;
            assert_eq!((log.offsets().log_start_offset, log.high_watermark()), (hw, hw));
            let next = log
                .append(synthetic_batch(1, 10, crate::storage::now_ms()), AckWait::Commit)
                .await
                .expect("append after");
            assert_eq!(next.base_offset, hw);
            log.close().await;
        });
    }

    #[test]
    fn growing_segment_bytes_on_a_running_log_applies_from_the_next_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        run(async move {
            let log = open(&path, 64 * 1024).await;
            for _ in 0..40 {
                log.append(synthetic_batch(1, 3000, crate::storage::now_ms()), AckWait::Commit).await.expect("append");
            }
            let before = log_files(&path).len();
            log.set_config(LogConfig { segment_bytes: 256 * 1024, ..log.config() });
            // Concurrent appends, so that batches queue across the roll.
            let appends = (0..200).map(|_| {
                let log = log.clone();
                async move {
                    log.append(synthetic_batch(1, 3000, crate::storage::now_ms()), AckWait::Commit)
                        .await
                        .expect("append")
                }
            });
            futures_util::future::join_all(appends).await;
            let sealed: Vec<u64> = log.state.borrow().sealed.values().map(|s| s.size_bytes()).collect();
            assert!(
                sealed.iter().any(|&b| b > 64 * 1024),
                "no segment grew past the old size: {sealed:?} ({before} before)"
            );
            assert!(sealed.iter().all(|&b| b <= 256 * 1024), "{sealed:?}");
            log.close().await;
        });
    }

    #[test]
    fn start_offset_record_round_trips_and_rejects_damage() {
        let b = encode(123_456);
        assert_eq!(decode(&b), Some(123_456));
        let mut bad = b;
        bad[2] ^= 4;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&b[..11]), None);
    }
}
