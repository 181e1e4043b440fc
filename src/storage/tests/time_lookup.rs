//! ListOffsets by timestamp (`storage::time_lookup`) on a real log: across
//! segments, after a restart that rebuilds lost time indexes, and below the
//! log start offset. Moved unchanged from `time_lookup.rs`, whose own tests
//! need no log.

use crate::storage::PartitionLog;
use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

use crate::storage::log::AckWait;
use crate::storage::{LogConfig, Preallocation};

fn run<T>(f: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default().make().expect("executor").run(f)
}

async fn open(dir: &Path) -> Rc<PartitionLog> {
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        preallocation: Preallocation::Fallocate,
        tail_cache_bytes: 8 * 1024,
        index_interval_bytes: 1024,
        ..LogConfig::default()
    };
    PartitionLog::open(dir.to_path_buf(), "t".into(), 0, config).await.expect("open log")
}

/// One uncompressed batch with a record per timestamp.
fn batch(timestamps: &[i64]) -> BytesMut {
    let records: Vec<Record> = timestamps
        .iter()
        .enumerate()
        .map(|(i, &ts)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: ts,
            key: None,
            value: Some(Bytes::from(vec![7u8; 1500])),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions { version: 2, compression: Compression::None },
    )
    .expect("encode");
    buf
}

/// Record timestamps by offset: batch i holds offsets 2i (ts 100i + 50)
/// and 2i+1 (ts 100i + 20), so a batch's records are not in time order;
/// batch 40 goes back in time (ts 5).
fn timestamps(i: i64) -> [i64; 2] {
    if i == 40 {
        [5, 5]
    } else {
        [100 * i + 50, 100 * i + 20]
    }
}

/// The first offset whose batch max timestamp reaches `t`, refined to
/// the first record of that batch reaching it.
fn expected(t: i64, batches: i64) -> Option<(i64, i64)> {
    (0..batches).find(|&i| timestamps(i).iter().any(|&ts| ts >= t)).map(|i| {
        let ts = timestamps(i);
        let j = ts.iter().position(|&x| x >= t).unwrap_or(0);
        (2 * i + j as i64, ts[j])
    })
}

#[test]
fn lookup_by_timestamp_matches_a_full_scan_across_segments_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let batches = 100i64;
    run(async move {
        let log = open(&path).await;
        for i in 0..batches {
            log.append(batch(&timestamps(i)), AckWait::Commit).await.expect("append");
        }
        assert!(log.state.borrow().sealed.len() >= 3, "the test needs sealed segments");
        let targets: Vec<i64> = (-1..=(100 * batches + 60)).step_by(7).collect();
        for &t in &targets {
            assert_eq!(log.offset_for_timestamp(t), expected(t, batches), "timestamp {t}");
        }
        assert_eq!(log.offset_of_max_timestamp(), Some((2 * 99, 100 * 99 + 50)));
        log.close().await;
        drop(log);
        // One time index lost, one damaged: both rebuilt at open.
        let mut time_indexes: Vec<_> = std::fs::read_dir(&path)
            .expect("list")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "timeindex"))
            .collect();
        time_indexes.sort();
        assert!(time_indexes.len() >= 2);
        std::fs::remove_file(&time_indexes[0]).expect("remove");
        std::fs::write(&time_indexes[1], b"garbage").expect("damage");
        let log = open(&path).await;
        for &t in &targets {
            assert_eq!(log.offset_for_timestamp(t), expected(t, batches), "timestamp {t} after restart");
        }
        // Below the log start offset nothing is returned.
        log.delete_records(41).await.expect("delete records");
        assert_eq!(log.offset_for_timestamp(0), Some((41, 20 * 100 + 20)));
        log.close().await;
    });
}
