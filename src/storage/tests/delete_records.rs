//! DeleteRecords (`storage::delete_records`) and a grown `segment.bytes` on
//! a real log. Moved unchanged from `delete_records.rs`, whose own tests
//! need no log.

use std::path::Path;

use crate::storage::error::StorageError;
use crate::storage::segment;
use crate::storage::PartitionLog;
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
        let next =
            log.append(synthetic_batch(1, 10, crate::storage::now_ms()), AckWait::Commit).await.expect("append after");
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
                log.append(synthetic_batch(1, 3000, crate::storage::now_ms()), AckWait::Commit).await.expect("append")
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
