//! Idempotent producers on a real log (`storage::producer_state`): order
//! under back-pressure, and retries of stored batches after the size limits
//! were lowered. Moved unchanged from `producer_state.rs`, whose own tests
//! exercise the table alone.

use crate::storage::error::StorageError;
use crate::storage::log::AckWait;
use crate::storage::PartitionLog;

fn idempotent(first_seq: i32, value_bytes: usize) -> bytes::BytesMut {
    let entries = vec![(None, bytes::Bytes::from(vec![b'x'; value_bytes]))];
    crate::kafka::record_batch::encode_idempotent_batch(
        &entries,
        0,
        crate::kafka::record_batch::Producer { id: 1, epoch: 0, base_sequence: first_seq },
    )
    .expect("encode")
}

#[test]
fn appends_waiting_for_pending_space_keep_their_order() {
    use crate::storage::{LogConfig, Preallocation};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
        let config = LogConfig {
            segment_bytes: 1 << 20,
            preallocation: Preallocation::Fallocate,
            pending_max_bytes: 10_000,
            commit_linger: std::time::Duration::from_millis(100),
            ..LogConfig::default()
        };
        let log = PartitionLog::open(path, "t".into(), 0, config).await.expect("open");
        // 8 KB waiting for the (lingering) commit: the next 8 KB must wait.
        log.append(idempotent(0, 8000), AckWait::None).await.expect("first");
        let big = glommio::spawn_local({
            let log = log.clone();
            async move { log.append(idempotent(1, 8000), AckWait::Commit).await }
        });
        glommio::executor().yield_task_queue_now().await;
        // Small enough to fit now, but it came later: it must not overtake.
        let small = log.append(idempotent(2, 10), AckWait::Commit).await.expect("small batch after the big one");
        let big = big.await.expect("big batch");
        assert_eq!((big.base_offset, small.base_offset), (1, 2));
        log.close().await;
    });
}

#[test]
fn retry_of_a_stored_batch_gets_its_offsets_after_the_size_limits_were_lowered() {
    use crate::storage::batch::BatchError;
    use crate::storage::{LogConfig, Preallocation};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    glommio::LocalExecutorBuilder::default().make().expect("executor").run(async move {
        let config =
            LogConfig { segment_bytes: 1 << 20, preallocation: Preallocation::Fallocate, ..LogConfig::default() };
        let log = PartitionLog::open(path, "t".into(), 0, config).await.expect("open");
        log.append(idempotent(0, 10), AckWait::Commit).await.expect("first");
        assert_eq!(log.append(idempotent(1, 8000), AckWait::Commit).await.expect("big").base_offset, 1);
        log.set_config(LogConfig { max_message_bytes: 1000, ..log.config() });
        let retry =
            log.append(idempotent(1, 8000), AckWait::Commit).await.expect("retry after max.message.bytes was lowered");
        assert_eq!(retry.base_offset, 1);
        // A new batch of that size, or a damaged retry, is still refused.
        assert!(matches!(
            log.append(idempotent(2, 8000), AckWait::Commit).await,
            Err(StorageError::Batch(BatchError::TooLarge { .. }))
        ));
        let mut damaged = idempotent(1, 8000);
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        // Its header is not trusted: refused (for its size), not taken for the stored batch.
        assert!(matches!(
            log.append(damaged, AckWait::Commit).await,
            Err(StorageError::Batch(BatchError::TooLarge { .. }))
        ));
        log.set_config(LogConfig { max_message_bytes: 1 << 20, segment_bytes: 4096, ..log.config() });
        let retry =
            log.append(idempotent(1, 8000), AckWait::Commit).await.expect("retry after segment.bytes was lowered");
        assert_eq!(retry.base_offset, 1);
        assert!(matches!(log.append(idempotent(2, 8000), AckWait::Commit).await, Err(StorageError::TooLarge { .. })));
        assert_eq!(log.high_watermark(), 2);
        log.close().await;
    });
}
