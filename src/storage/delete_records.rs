//! DeleteRecords: moving a partition's log start offset forward on request,
//! and the files of a segment that every deletion removes.
//!
//! The new start is made durable first, in `<partition dir>/log-start-offset`
//! (i64 big-endian then CRC-32C of those 8 bytes; written to a temporary
//! file, fsynced, renamed, directory fsynced: `persist_log_start`), then
//! applied in memory (`LogState::move_start_to`), then every sealed segment
//! wholly below it is deleted (`PartitionLog::delete_records` runs the three).
//! Reads below the start answer OFFSET_OUT_OF_RANGE from then on. At open,
//! recovery takes the larger of the first segment's base and the stored start
//! (never past the log end) and deletes segments a crash left behind below it
//! (`recover_log_start`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::StorageError;
use super::segment::{self, SealedSegment};

pub const LOG_START_FILE_NAME: &str = "log-start-offset";
const LOG_START_TMP_NAME: &str = "log-start-offset.tmp";

/// The stored start: i64 offset, u32 CRC-32C of it.
const LOG_START_RECORD_BYTES: usize = 12;
const _: () = assert!(LOG_START_RECORD_BYTES == size_of::<i64>() + size_of::<u32>());

fn encode(offset: i64) -> [u8; LOG_START_RECORD_BYTES] {
    let mut out = [0u8; LOG_START_RECORD_BYTES];
    out[..8].copy_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&out[..8]);
    out[8..].copy_from_slice(&crc.to_be_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<i64> {
    let body: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let crc = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
    (bytes.len() == LOG_START_RECORD_BYTES && crc32c::crc32c(&body) == crc).then(|| i64::from_be_bytes(body))
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

/// Makes `target` the stored log start of the partition in `dir`, durably
/// (see the module doc); nothing in memory changes.
pub(crate) async fn persist_log_start(dir: &Path, target: i64) -> Result<(), StorageError> {
    let dir = dir.to_path_buf();
    let context = format!("write {}", dir.join(LOG_START_FILE_NAME).display());
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
    .map_err(|e| StorageError::io(context, e))
}

#[cfg(test)]
mod tests {
    use super::*;

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
