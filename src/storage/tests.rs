//! Storage behaviour on real files (tempdir on the real filesystem, real
//! O_DIRECT writes through glommio).

use std::path::Path;
use std::rc::Rc;

use bytes::BytesMut;

use super::log::AckWait;
use super::{LogConfig, PartitionLog, Preallocation};
use crate::kafka::record_batch::synthetic_batch;

fn run<T>(f: impl std::future::Future<Output = T> + 'static) -> T {
    glommio::LocalExecutorBuilder::default().make().expect("executor").run(f)
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        preallocation: Preallocation::Fallocate,
        tail_cache_bytes: 8 * 1024,
        ..LogConfig::default()
    }
}

async fn open(dir: &Path, config: LogConfig) -> Rc<PartitionLog> {
    PartitionLog::open(dir.to_path_buf(), "t".into(), 0, config).await.expect("open log")
}

fn batch(count: usize, value_bytes: usize) -> BytesMut {
    synthetic_batch(count, value_bytes, super::now_ms())
}

/// Every offset from `from` to the high watermark, read back batch by batch.
fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut offset = from;
    let hw = log.high_watermark();
    while offset < hw {
        let r = log.read(offset, 1 << 20).expect("read");
        assert!(!r.records.is_empty(), "no data at {offset} below hw {hw}");
        for chunk in &r.records {
            let mut pos = 0;
            while pos < chunk.len() {
                let h = super::batch::BatchHeader::parse(&chunk[pos..]).expect("header");
                out.push((h.base_offset, h.last_offset()));
                offset = h.last_offset() + 1;
                pos += h.total_bytes();
            }
        }
    }
    out
}

#[test]
fn append_assigns_contiguous_offsets_and_acks_after_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, small_config()).await;
        let a = log.append(batch(3, 100), AckWait::Commit).await.expect("append");
        let b = log.append(batch(2, 100), AckWait::Commit).await.expect("append");
        assert_eq!((a.base_offset, b.base_offset), (0, 3));
        assert_eq!(log.high_watermark(), 5);
        assert_eq!(read_all(&log, 0), vec![(0, 2), (3, 4)]);
        log.close().await;
    });
}

#[test]
fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, LogConfig { segment_bytes: 4 << 20, ..small_config() }).await;
        let appends = (0..200).map(|_| {
            let log = log.clone();
            async move { log.append(batch(1, 200), AckWait::Commit).await.expect("append") }
        });
        let outcomes = futures_util::future::join_all(appends).await;
        let mut offsets: Vec<i64> = outcomes.iter().map(|o| o.base_offset).collect();
        offsets.sort_unstable();
        assert_eq!(offsets, (0..200).collect::<Vec<_>>());
        let commits = log.commit_count();
        assert!(commits < 200, "200 concurrent appends took {commits} commits");
        log.close().await;
    });
}

#[test]
fn full_segment_rolls_and_reads_span_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, small_config()).await;
        for _ in 0..100 {
            log.append(batch(2, 1000), AckWait::Commit).await.expect("append");
        }
        let segments = std::fs::read_dir(&path)
            .expect("ls")
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log")))
            .count();
        assert!(segments >= 3, "expected several segments, found {segments}");
        let batches = read_all(&log, 0);
        assert_eq!(batches.len(), 100);
        assert!(batches.windows(2).all(|w| w[1].0 == w[0].1 + 1));
        log.close().await;
    });
}

#[test]
fn reopened_log_keeps_every_batch_and_continues_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, small_config()).await;
        for _ in 0..60 {
            log.append(batch(1, 1500), AckWait::Commit).await.expect("append");
        }
        log.close().await;
        drop(log);
        let log = open(&path, small_config()).await;
        assert_eq!(log.high_watermark(), 60);
        assert_eq!(read_all(&log, 0).len(), 60);
        let next = log.append(batch(1, 10), AckWait::Commit).await.expect("append");
        assert_eq!(next.base_offset, 60);
        log.close().await;
    });
}

#[test]
fn recovery_drops_a_torn_last_batch_and_zeroes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let p2 = path.clone();
    let end = run(async move {
        let log = open(&p2, LogConfig { segment_bytes: 1 << 20, ..small_config() }).await;
        for _ in 0..10 {
            log.append(batch(1, 300), AckWait::Commit).await.expect("append");
        }
        let end = log.state.borrow().active.written_bytes;
        log.close().await;
        end
    });
    // Tear the last batch: flip a byte in its second half.
    let seg = path.join(super::segment::log_file_name(0));
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[end as usize - 20] ^= 0xff;
    std::fs::write(&seg, &bytes).expect("write");
    run(async move {
        let log = open(&path, LogConfig { segment_bytes: 1 << 20, ..small_config() }).await;
        assert_eq!(log.high_watermark(), 9);
        assert_eq!(read_all(&log, 0).len(), 9);
        let next = log.append(batch(1, 10), AckWait::Commit).await.expect("append");
        assert_eq!(next.base_offset, 9);
        log.close().await;
    });
}

#[test]
fn retention_by_bytes_deletes_oldest_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let config = LogConfig { retention_bytes: 100 * 1024, ..small_config() };
        let log = open(&path, config).await;
        for _ in 0..200 {
            log.append(batch(1, 2000), AckWait::Commit).await.expect("append");
        }
        // Rolls apply size retention as they go; a periodic pass finds the
        // log within its size.
        log.enforce_retention().await.expect("retention");
        let start = log.offsets().log_start_offset;
        assert!(start > 0);
        assert!(log.read(start - 1, 1000).is_err(), "deleted offsets must be out of range");
        assert_eq!(read_all(&log, start).last().map(|b| b.1), Some(199));
        log.close().await;
    });
}

#[test]
fn zero_preallocation_writes_the_whole_segment_before_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, LogConfig { preallocation: Preallocation::Zero, ..small_config() }).await;
        log.append(batch(1, 10), AckWait::Commit).await.expect("append");
        let meta = std::fs::metadata(path.join(super::segment::log_file_name(0))).expect("stat");
        assert_eq!(meta.len(), 64 * 1024);
        log.close().await;
    });
}

/// Extents of `path` as (logical start, length, unwritten), from the
/// FIEMAP ioctl (after syncing the file's delayed allocations).
fn extents(path: &Path) -> Vec<(u64, u64, bool)> {
    use std::os::fd::AsRawFd;
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
    const MAX_EXTENTS: usize = 256;
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Extent {
        logical: u64,
        physical: u64,
        length: u64,
        reserved64: [u64; 2],
        flags: u32,
        reserved: [u32; 3],
    }
    #[repr(C)]
    struct Fiemap {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [Extent; MAX_EXTENTS],
    }
    let file = std::fs::File::open(path).expect("open for FIEMAP");
    let empty = Extent { logical: 0, physical: 0, length: 0, reserved64: [0; 2], flags: 0, reserved: [0; 3] };
    let mut map = Box::new(Fiemap {
        start: 0,
        length: u64::MAX,
        flags: FIEMAP_FLAG_SYNC,
        mapped_extents: 0,
        extent_count: MAX_EXTENTS as u32,
        reserved: 0,
        extents: [empty; MAX_EXTENTS],
    });
    // SAFETY: `map` is a valid fiemap with room for `extent_count` extents.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut *map as *mut Fiemap) };
    assert_eq!(rc, 0, "FIEMAP on {}: {}", path.display(), std::io::Error::last_os_error());
    assert!((map.mapped_extents as usize) < MAX_EXTENTS, "more extents than the test reads");
    map.extents[..map.mapped_extents as usize]
        .iter()
        .map(|e| (e.logical, e.length, e.flags & FIEMAP_EXTENT_UNWRITTEN != 0))
        .collect()
}

/// Bytes of `[0, capacity)` covered by extents whose unwritten flag is
/// `unwritten`.
fn extent_bytes(path: &Path, capacity: u64, unwritten: bool) -> u64 {
    extents(path)
        .iter()
        .filter(|e| e.2 == unwritten)
        .map(|&(start, len, _)| (start + len).min(capacity).saturating_sub(start))
        .sum()
}

/// Two full zero-fill chunks and a partial one.
const PREPARED_TEST_BYTES: u64 = 2 * 1024 * 1024 + 512 * 1024;

#[test]
fn a_zero_filled_prepared_segment_is_all_written_zeros() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let prepared = run(async move {
        super::segment::prepare_next(&path, PREPARED_TEST_BYTES, Preallocation::Zero).await.expect("prepare")
    });
    let bytes = std::fs::read(&prepared.path).expect("read prepared");
    assert_eq!(bytes.len() as u64, PREPARED_TEST_BYTES);
    assert!(bytes.iter().all(|&b| b == 0), "a prepared segment reads as zeros");
    // Written blocks, so a commit into them is an overwrite (no extent
    // conversion, no journal commit on the write's flush).
    assert_eq!(extent_bytes(&prepared.path, PREPARED_TEST_BYTES, false), PREPARED_TEST_BYTES);
    assert_eq!(extent_bytes(&prepared.path, PREPARED_TEST_BYTES, true), 0);
}

#[test]
fn a_fallocated_prepared_segment_is_reserved_but_unwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let prepared = run(async move {
        super::segment::prepare_next(&path, PREPARED_TEST_BYTES, Preallocation::Fallocate).await.expect("prepare")
    });
    assert_eq!(std::fs::metadata(&prepared.path).expect("stat").len(), PREPARED_TEST_BYTES);
    assert_eq!(extent_bytes(&prepared.path, PREPARED_TEST_BYTES, true), PREPARED_TEST_BYTES);
}

/// Files in `dir` named after a segment base below `start` (any extension).
fn files_below(dir: &Path, start: i64) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.get(..20).and_then(|d| d.parse::<i64>().ok()).is_some_and(|base| base < start))
        .collect();
    found.sort();
    found
}

/// A log of several segments whose last sealed one has a producer snapshot.
async fn several_segments_with_snapshots(path: &Path, config: LogConfig) -> Rc<PartitionLog> {
    let log = open(path, config).await;
    for _ in 0..100 {
        log.append(batch(2, 1000), AckWait::Commit).await.expect("append");
    }
    let last_sealed = *log.state.borrow().sealed.keys().next_back().expect("sealed segments");
    let snapshot = path.join(super::producer_state::snapshot_file_name(last_sealed));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !snapshot.exists() {
        assert!(std::time::Instant::now() < deadline, "no snapshot at {}", snapshot.display());
        glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
    }
    log
}

#[test]
fn retention_deletes_every_file_of_its_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = several_segments_with_snapshots(&path, small_config()).await;
        let sealed = log.sealed_segments();
        log.config.borrow_mut().retention_bytes = 0;
        assert_eq!(log.enforce_retention().await.expect("retention"), sealed);
        assert_eq!(files_below(&path, log.offsets().log_start_offset), Vec::<String>::new());
        log.close().await;
    });
}

#[test]
fn delete_segments_below_deletes_every_file_of_its_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = several_segments_with_snapshots(&path, small_config()).await;
        let sealed = log.sealed_segments();
        assert_eq!(log.delete_segments_below(log.high_watermark()).await.expect("delete"), sealed);
        assert_eq!(files_below(&path, log.offsets().log_start_offset), Vec::<String>::new());
        log.close().await;
    });
}

#[test]
fn appends_during_a_roll_after_segment_bytes_grew_go_to_the_next_segment_when_the_new_file_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, small_config()).await;
        // Fill the 64 KiB segment until the next batch starts a new one.
        let one = batch(1, 4000).len() as u64;
        while log.state.borrow().enqueued_segment_bytes + one <= 64 * 1024 {
            log.append(batch(1, 4000), AckWait::Commit).await.expect("fill");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while log.state.borrow().prepared.is_none() {
            assert!(std::time::Instant::now() < deadline, "the next segment was never prepared");
            glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
        }
        // While the roll installs the prepared (64 KiB) file: segment.bytes
        // grows and more than 64 KiB of appends arrive.
        let injector = glommio::spawn_local({
            let log = log.clone();
            async move {
                while std::time::Instant::now() < deadline {
                    let in_roll = {
                        let s = log.state.borrow();
                        s.pending.front().is_some_and(|b| b.starts_segment)
                            && s.prepared.is_none()
                            && !log.preparing.get()
                    };
                    if in_roll {
                        log.set_config(LogConfig { segment_bytes: 1 << 20, ..log.config() });
                        for _ in 0..40 {
                            log.append(batch(1, 4000), AckWait::None).await.expect("append during the roll");
                        }
                        return true;
                    }
                    glommio::timer::sleep(std::time::Duration::from_micros(20)).await;
                }
                false
            }
        });
        log.append(batch(1, 4000), AckWait::Commit).await.expect("the append that rolls");
        assert!(injector.await, "no append landed during the roll");
        // Commits go in order: once this one is acknowledged, all are written.
        log.append(batch(1, 10), AckWait::Commit).await.expect("append after the roll");
        let batches = read_all(&log, 0);
        assert!(batches.windows(2).all(|w| w[1].0 == w[0].1 + 1), "{batches:?}");
        assert_eq!(batches.last().map(|b| b.1), Some(log.high_watermark() - 1));
        assert!(log.sealed_segments() >= 2, "the appends during the roll did not fit one 64 KiB file");
        log.close().await;
    });
}

#[test]
fn empty_segment_takes_a_batch_bigger_than_its_file_once_segment_bytes_grew() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, small_config()).await;
        let grown = LogConfig { segment_bytes: 1 << 20, max_message_bytes: 1 << 20, ..small_config() };
        log.set_config(grown.clone());
        let big = log
            .append(batch(1, 200_000), AckWait::Commit)
            .await
            .expect("a batch bigger than the empty segment's 64 KiB file");
        let next = log.append(batch(1, 10), AckWait::Commit).await.expect("append after it");
        assert_eq!((big.base_offset, next.base_offset), (0, 1));
        assert_eq!(read_all(&log, 0), vec![(0, 0), (1, 1)]);
        log.close().await;
        drop(log);
        let log = open(&path, grown).await;
        assert_eq!(read_all(&log, 0), vec![(0, 0), (1, 1)]);
        log.close().await;
    });
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("stat").ino()
}

fn recycled_file(dir: &Path) -> std::path::PathBuf {
    dir.join(super::segment::RECYCLED_FILE_NAME)
}

/// Retention config whose log recycles: 64 KiB segments, zero-filled,
/// commits of at most 8 KiB, batches of at most 4 KiB.
fn recycling_config() -> LogConfig {
    LogConfig {
        retention_bytes: 100 * 1024,
        preallocation: Preallocation::Zero,
        commit_max_bytes: 8192,
        max_message_bytes: 4096,
        ..small_config()
    }
}

/// How far past the durable end `end` recovery may zero (see `recovery`):
/// from the page holding it, a batch that straddled a completed write's end
/// (4 KiB) and two writes in flight of 8 KiB of batches plus two pages each.
fn cut_off_reach(end: usize) -> usize {
    end / 4096 * 4096 + 4096 + 2 * (8192 + 2 * 4096)
}

/// Appends 2 KB batches until a roll makes a recycled file the active
/// segment (checking that it is the file retention kept: its inode), then a
/// few more; returns the high watermark. Retention runs on its own at rolls.
async fn fill_into_recycled_file(log: &PartitionLog, dir: &Path) -> i64 {
    let mut spare = None;
    let mut appended = 0;
    while log.segments_recycled() == 0 {
        if let Ok(m) = std::fs::metadata(recycled_file(dir)) {
            spare = Some(std::os::unix::fs::MetadataExt::ino(&m));
        }
        log.append(batch(1, 2000), AckWait::Commit).await.expect("append");
        appended += 1;
        assert!(appended < 400, "no segment reused a retired file");
    }
    assert_eq!(Some(inode(&log.state.borrow().active.path)), spare, "the active segment is the file retention kept");
    for _ in 0..3 {
        log.append(batch(1, 2000), AckWait::Commit).await.expect("append");
    }
    log.high_watermark()
}

/// Every offset from the log start to the high watermark, once, in order.
fn assert_contiguous(log: &PartitionLog) {
    let start = log.offsets().log_start_offset;
    let batches = read_all(log, start);
    let mut next = start;
    for (base, last) in batches {
        assert_eq!(base, next, "batches must follow each other");
        next = last + 1;
    }
    assert_eq!(next, log.high_watermark());
}

#[test]
fn a_log_recycles_at_its_rolls_without_a_periodic_retention_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, recycling_config()).await;
        for _ in 0..300 {
            log.append(batch(1, 2000), AckWait::Commit).await.expect("append");
        }
        assert!(log.offsets().log_start_offset > 0, "size retention ran at the rolls");
        assert!(log.segments_recycled() >= 2, "recycled {}", log.segments_recycled());
        assert_contiguous(&log);
        log.close().await;
    });
}

#[test]
fn retention_keeps_a_retired_file_that_the_next_segment_reuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, recycling_config()).await;
        let hw = fill_into_recycled_file(&log, &path).await;
        assert_eq!(log.segments_recycled(), 1);
        assert_contiguous(&log);
        let active = log.state.borrow().active.path.clone();
        log.close().await;
        drop(log);
        let before = std::fs::read(&active).expect("read");
        let log = open(&path, recycling_config()).await;
        assert_eq!(log.high_watermark(), hw, "an earlier segment's batches after the end are not log");
        assert_eq!(std::fs::read(&active).expect("read"), before, "after a clean close nothing is zeroed");
        assert_contiguous(&log);
        assert_eq!(log.append(batch(1, 10), AckWait::Commit).await.expect("append").base_offset, hw);
        log.close().await;
    });
}

/// A copy of the partition directory taken while the log is open: what a
/// crash (kill -9) leaves, without the clean-shutdown marker.
fn crash_image(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("list").flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// Fills a log at `path` into a recycled segment and copies its directory to
/// `image` while it is open (see `crash_image`). Returns the high watermark,
/// the copied active segment and its durable end in bytes.
async fn crash_in_recycled_segment(path: &Path, image: &Path) -> (i64, std::path::PathBuf, usize) {
    let log = open(path, recycling_config()).await;
    let hw = fill_into_recycled_file(&log, path).await;
    let (active, end) = {
        let s = log.state.borrow();
        (s.active.path.clone(), s.active.written_bytes as usize)
    };
    crash_image(path, image);
    log.close().await;
    (hw, image.join(active.file_name().expect("name")), end)
}

#[test]
fn a_crash_in_a_recycled_segment_recovers_every_acknowledged_batch_and_no_earlier_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = tempfile::tempdir().expect("tempdir");
    let (path, image_path) = (dir.path().to_path_buf(), image.path().to_path_buf());
    run(async move {
        let (hw, copied, end) = crash_in_recycled_segment(&path, &image_path).await;
        let before = std::fs::read(&copied).expect("read");
        assert!(before[end..].iter().any(|&b| b != 0), "the recycled file holds earlier bytes after the end");

        let log = open(&image_path, recycling_config()).await;
        assert_eq!(log.high_watermark(), hw);
        assert_contiguous(&log);
        let after = std::fs::read(&copied).expect("read");
        let reach = cut_off_reach(end);
        assert!(reach < after.len(), "the test needs bytes past the reach");
        assert!(after[end..reach].iter().all(|&b| b == 0), "bytes a cut-off write could have reached are zeroed");
        assert_eq!(&after[reach..], &before[reach..], "bytes past its reach are left as they were");
        assert_eq!(&after[..end], &before[..end], "the log itself is untouched");
        assert_eq!(log.append(batch(1, 10), AckWait::Commit).await.expect("append").base_offset, hw);
        log.close().await;
    });
}

#[test]
fn a_torn_last_batch_in_a_recycled_segment_is_dropped_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = tempfile::tempdir().expect("tempdir");
    let (path, image_path) = (dir.path().to_path_buf(), image.path().to_path_buf());
    run(async move {
        let (hw, copied, end) = crash_in_recycled_segment(&path, &image_path).await;
        let mut bytes = std::fs::read(&copied).expect("read");
        bytes[end - 20] ^= 0xff;
        std::fs::write(&copied, &bytes).expect("write");

        let log = open(&image_path, recycling_config()).await;
        assert_eq!(log.high_watermark(), hw - 1, "only the torn batch is dropped");
        assert_contiguous(&log);
        log.close().await;
    });
}

#[test]
fn a_retired_segment_a_reader_still_holds_is_deleted_not_recycled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, LogConfig { retention_bytes: -1, ..recycling_config() }).await;
        for _ in 0..100 {
            log.append(batch(1, 2000), AckWait::Commit).await.expect("append");
        }
        let bases: Vec<i64> = log.state.borrow().sealed.keys().copied().collect();
        assert!(bases.len() >= 2, "{bases:?}");
        let held: Vec<bytes::Bytes> = bases.iter().flat_map(|&b| log.read(b, 1 << 20).expect("read").records).collect();
        log.config.borrow_mut().retention_bytes = 0;
        assert_eq!(log.enforce_retention().await.expect("retention"), bases.len());
        assert!(!recycled_file(&path).exists(), "a file some reader still maps must not be reused");
        // Make sure the next segments would have reused it, then check the held bytes.
        for _ in 0..100 {
            log.append(batch(1, 2000), AckWait::Commit).await.expect("append");
        }
        for chunk in &held {
            let mut pos = 0;
            while pos < chunk.len() {
                let h = super::batch::validate(&chunk[pos..], usize::MAX).expect("held bytes stay intact");
                pos += h.total_bytes();
            }
        }
        drop(held);
        // Later rolls retire segments no reader holds, and reuse their files.
        for _ in 0..300 {
            log.append(batch(1, 2000), AckWait::Commit).await.expect("append");
        }
        assert!(log.segments_recycled() > 0, "a retired file no reader holds is reused");
        log.close().await;
    });
}

/// Zero-filled 256 KiB segments, commits of at most 8 KiB of batches,
/// batches of at most 4 KiB: a few queued batches make several writes.
fn pipelined_config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 * 1024,
        preallocation: Preallocation::Zero,
        commit_max_bytes: 8192,
        max_message_bytes: 4096,
        ..LogConfig::default()
    }
}

/// Each batch from `from` to the high watermark, as stored.
fn read_batch_bytes(log: &PartitionLog, from: i64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut offset = from;
    while offset < log.high_watermark() {
        let r = log.read(offset, 1 << 20).expect("read");
        for chunk in &r.records {
            let mut pos = 0;
            while pos < chunk.len() {
                let h = super::batch::BatchHeader::parse(&chunk[pos..]).expect("header");
                out.push(chunk[pos..pos + h.total_bytes()].to_vec());
                offset = h.last_offset() + 1;
                pos += h.total_bytes();
            }
        }
    }
    out
}

/// Appends `batches` all at once (queued before the committer runs), and
/// returns their base offsets.
async fn append_together(log: &PartitionLog, batches: &[BytesMut]) -> Vec<i64> {
    let appends = batches.iter().map(|b| log.append(b.clone(), AckWait::Commit));
    futures_util::future::join_all(appends).await.into_iter().map(|r| r.expect("append").base_offset).collect()
}

#[test]
fn batches_queued_behind_a_write_go_out_in_overlapping_writes_and_read_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, pipelined_config()).await;
        // 1–3 KB batches: most writes end inside a batch, whose rest opens the next write.
        let sent: Vec<BytesMut> = (0..80).map(|i| batch(1, 1000 + 29 * i)).collect();
        let bases = append_together(&log, &sent).await;
        assert_eq!(bases, (0..80).collect::<Vec<i64>>());
        assert!(log.commit_writes_overlapped() > 0, "no write started while another was in flight");
        assert_eq!(log.high_watermark(), 80);
        let same_as_sent = |stored: Vec<Vec<u8>>| {
            assert_eq!(stored.len(), sent.len());
            for (i, (got, want)) in stored.iter().zip(&sent).enumerate() {
                // Bytes 0..8 and 12..16 are the base offset and leader epoch the log set.
                assert_eq!((&got[8..12], &got[16..]), (&want[8..12], &want[16..]), "batch {i} differs");
            }
        };
        same_as_sent(read_batch_bytes(&log, 0));
        let active = log.state.borrow().active.path.clone();
        log.close().await;
        drop(log);
        let before = std::fs::read(&active).expect("read");
        let log = open(&path, pipelined_config()).await;
        assert_eq!(log.high_watermark(), 80);
        assert_eq!(std::fs::read(&active).expect("read"), before, "a clean reopen repairs nothing");
        same_as_sent(read_batch_bytes(&log, 0));
        log.close().await;
    });
}

#[test]
fn a_crash_that_cut_off_one_write_but_not_the_next_keeps_only_the_batches_before_the_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, pipelined_config()).await;
        for _ in 0..3 {
            log.append(batch(1, 1500), AckWait::Commit).await.expect("append");
        }
        let (active, end) = {
            let s = log.state.borrow();
            (s.active.path.clone(), s.active.written_bytes as usize)
        };
        // Eight 3 KB batches: a held-back write and the ones after it.
        let later: Vec<BytesMut> = (0..8).map(|_| batch(1, 3000)).collect();
        append_together(&log, &later).await;
        assert!(log.commit_writes_overlapped() > 0);
        log.close().await;
        drop(log);
        // The crash image: the write carrying the first later batch never
        // landed (its start reads as the zero-filled file did), the later
        // ones did; no clean-shutdown marker.
        std::fs::remove_file(path.join(super::recovery::CLEAN_SHUTDOWN_FILE_NAME)).expect("marker");
        let mut bytes = std::fs::read(&active).expect("read");
        let later_end = end + later.iter().map(|b| b.len()).sum::<usize>();
        assert!(bytes[end..later_end].iter().any(|&b| b != 0));
        bytes[end..end + 64].fill(0);
        std::fs::write(&active, &bytes).expect("write");

        let log = open(&path, pipelined_config()).await;
        assert_eq!(log.high_watermark(), 3, "nothing after the cut is taken for log");
        let after = std::fs::read(&active).expect("read");
        assert_eq!(after[..end], bytes[..end], "the acknowledged batches are untouched");
        assert!(after[end..later_end].iter().all(|&b| b == 0), "the later writes' batches are zeroed");
        assert_eq!(log.append(batch(1, 10), AckWait::Commit).await.expect("append").base_offset, 3);
        log.close().await;
        drop(log);
        std::fs::remove_file(path.join(super::recovery::CLEAN_SHUTDOWN_FILE_NAME)).expect("marker");
        let log = open(&path, pipelined_config()).await;
        assert_eq!(log.high_watermark(), 4, "no batch of the cut-off run comes back after the next crash");
        assert_contiguous(&log);
        log.close().await;
    });
}

#[test]
fn after_each_commit_the_page_a_retry_would_rewrite_holds_the_acknowledged_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        // Batches bigger than a commit's cap: each run is one batch, and a
        // split write leaves its batch's last bytes to the next write.
        let config = LogConfig { max_message_bytes: 16 * 1024, ..pipelined_config() };
        let log = open(&path, config).await;
        // Values of no zero byte, so a page of zeros cannot pass for them.
        let value: bytes::Bytes = (0..9000).map(|k| (k % 251 + 1) as u8).collect::<Vec<u8>>().into();
        let patterned =
            || crate::kafka::record_batch::encode_batch(&[(None, value.clone())], super::now_ms()).expect("batch");
        let mut appends: futures_util::stream::FuturesUnordered<_> =
            (0..12).map(|_| log.append(patterned(), AckWait::Commit)).collect();
        let mut checked = 0;
        while let Some(result) = futures_util::StreamExt::next(&mut appends).await {
            result.expect("append");
            // What a commit after a failed write would carry must be what is
            // on disk before the acknowledged end.
            let s = log.state.borrow();
            let end = s.active.written_bytes as usize;
            let page_start = end / 4096 * 4096;
            assert_eq!(
                &s.active.tail_page[..end - page_start],
                &s.active.data[page_start..end],
                "carried page at {end}"
            );
            assert!(s.active.tail_page[end - page_start..].iter().all(|&b| b == 0));
            checked += 1;
        }
        assert_eq!(checked, 12);
        assert!(log.commit_writes_overlapped() > 0);
        log.close().await;
    });
}

/// Pages of `path` in `[from, to)` (byte positions, `from` rounded up to a
/// page) that are in the page cache (mincore on a map of our own, which
/// faults nothing in).
fn cached_pages(path: &Path, from: u64, to: u64) -> usize {
    let file = std::fs::File::open(path).expect("open");
    let len = file.metadata().expect("stat").len().min(to) as usize;
    let from = (from as usize).next_multiple_of(4096).min(len);
    if len == from {
        return 0;
    }
    // SAFETY: a private read-only map, only passed to mincore.
    let map = unsafe { memmap2::MmapOptions::new().offset(from as u64).len(len - from).map(&file) }.expect("map");
    let mut resident = vec![0u8; (len - from).div_ceil(4096)];
    // SAFETY: `resident` holds one byte per page of the mapped range.
    let rc = unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, len - from, resident.as_mut_ptr()) };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    resident.iter().filter(|&&b| b & 1 == 1).count()
}

/// The active segment's file, its durable end and its capacity.
fn active_extent(log: &PartitionLog) -> (std::path::PathBuf, u64, u64) {
    let s = log.state.borrow();
    (s.active.path.clone(), s.active.written_bytes, s.active.capacity_bytes)
}

#[test]
fn after_recovery_no_page_after_the_one_holding_the_durable_end_is_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = tempfile::tempdir().expect("tempdir");
    let (path, image_path) = (dir.path().to_path_buf(), image.path().to_path_buf());
    run(async move {
        let config = LogConfig { segment_bytes: 4 << 20, preallocation: Preallocation::Zero, ..small_config() };
        let log = open(&path, config.clone()).await;
        for _ in 0..20 {
            log.append(batch(1, 1000), AckWait::Commit).await.expect("append");
        }
        // A crash image: recovery scans the window a cut-off write could
        // have reached, through a map.
        crash_image(&path, &image_path);
        log.close().await;
        drop(log);
        for dir in [&path, &image_path] {
            let log = open(dir, config.clone()).await;
            let (active, end, capacity) = active_extent(&log);
            assert_eq!(log.high_watermark(), 20);
            // The page holding the end is valid log up to it; none after it is.
            assert_eq!(
                cached_pages(&active, end, capacity),
                0,
                "pages past the durable end cached after opening {}",
                dir.display()
            );
            log.close().await;
        }
    });
}

#[test]
fn a_segment_made_from_a_recycled_file_has_none_of_its_old_pages_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    run(async move {
        let log = open(&path, recycling_config()).await;
        // Readers map sealed segments and leave their pages cached, the
        // segment about to be retired (and recycled) among them.
        while log.segments_recycled() == 0 {
            log.append(batch(1, 2000), AckWait::Commit).await.expect("append");
            let start = log.offsets().log_start_offset;
            assert_eq!(read_all(&log, start).last().map(|b| b.1), Some(log.high_watermark() - 1));
        }
        let (active, end, capacity) = active_extent(&log);
        assert!(end < capacity / 2, "the recycled segment has room left");
        assert_eq!(
            cached_pages(&active, end, capacity),
            0,
            "an earlier segment's pages are still cached where appends go next"
        );
        log.close().await;
    });
}

/// The file's first 4 KiB, read past the page cache (O_DIRECT).
fn read_first_page_direct(path: &Path) -> crate::tune::AlignedBlock {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path).expect("open O_DIRECT");
    let mut block = crate::tune::AlignedBlock::new();
    file.read_exact_at(block.as_mut_slice(), 0).expect("read O_DIRECT");
    block
}

/// A commit write is handed to the kernel when the committer issues it, not
/// at the executor's next reactor turn, which comes only after every other
/// runnable task has run (patch 4 in `vendor/glommio/PATCHES.md`).
#[test]
fn a_dma_write_reaches_the_disk_before_its_task_yields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    std::fs::write(&path, vec![0u8; 64 * 1024]).expect("write zeros");
    std::fs::File::open(&path).expect("open").sync_all().expect("sync");
    let p = path.clone();
    run(async move {
        let file = glommio::io::OpenOptions::new().read(true).write(true).dma_open(&p).await.expect("dma open");
        let mut buf = file.alloc_dma_buffer(4096);
        buf.as_bytes_mut().fill(0xab);
        let mut write = std::pin::pin!(file.write_at(buf, 0));
        // Polled once: the write is queued (its completion is reaped later).
        let first =
            std::future::poll_fn(|cx| std::task::Poll::Ready(std::future::Future::poll(write.as_mut(), cx))).await;
        assert!(first.is_pending());
        // This task does not yield: only a write already submitted can land.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while read_first_page_direct(&p).as_slice()[0] != 0xab {
            assert!(std::time::Instant::now() < deadline, "the write was not submitted while its task kept running");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(write.await.expect("write"), 4096);
    });
    assert!(read_first_page_direct(&path).as_slice().iter().all(|&b| b == 0xab));
}

// Tests of one piece that need a whole log, kept out of the piece's module
// so that no piece depends on `PartitionLog`.
mod delete_records;
mod producer_state;
mod time_lookup;
