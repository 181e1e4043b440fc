//! A full disk: producers get KAFKA_STORAGE_ERROR, reads go on, nothing
//! acknowledged is lost, and writes resume once space returns. Runs on a real
//! small ext4 filesystem (a loop-mounted image), which needs root.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

/// A loop-mounted ext4 image, unmounted on drop.
struct SmallFs {
    mount: PathBuf,
}

impl SmallFs {
    fn new(root: &Path, size_mib: u64) -> SmallFs {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(unsafe { libc::geteuid() }, 0, "the full-disk test mounts a loop ext4 image and needs root");
        let image = root.join("small.img");
        let mount = root.join("mnt");
        std::fs::create_dir_all(&mount).expect("mount point");
        let f = std::fs::File::create(&image).expect("image");
        f.set_len(size_mib << 20).expect("size image");
        drop(f);
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-m", "0"]).arg(&image));
        run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&mount));
        SmallFs { mount }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Produces one message without retries; Ok(offset) or the Kafka error code.
fn try_produce(p: &rdkafka::producer::FutureProducer, topic: &str, payload: &[u8]) -> Result<i64, RDKafkaErrorCode> {
    let rec = FutureRecord::<[u8], [u8]>::to(topic).partition(0).payload(payload);
    match rt().block_on(p.send(rec, Duration::from_secs(30))) {
        Ok((_, offset)) => Ok(offset),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((e, _)) => panic!("unexpected produce error: {e}"),
    }
}

#[test]
fn full_disk_refuses_writes_with_storage_error_keeps_reads_and_resumes_when_space_returns() {
    let dir = test_tempdir("diskfull");
    // Created before the broker's Broker (and its drop) so the mount outlives it.
    let fs = SmallFs::new(dir.path(), 48);
    let filler = fs.mount.join("filler");
    std::fs::write(&filler, vec![7u8; 12 << 20]).expect("filler");
    let data = fs.mount.join("data");
    let mut broker =
        Broker::start(BrokerOpts::default().data_dir(&data).segment_bytes(2 << 20).arg("--cores").arg("1"));
    let addr = broker.addr();
    let topic = unique_topic("full");
    create_topic(&addr, &topic, 1, &[]);
    let producer = producer(&addr, &[("retries", "0"), ("linger.ms", "0"), ("message.timeout.ms", "30000")]);

    let mut acked: Vec<(i64, Vec<u8>)> = Vec::new();
    let started = Instant::now();
    let failure = loop {
        assert!(started.elapsed() < Duration::from_secs(120), "the disk never filled");
        assert!(acked.len() < 2000, "2000 x 32 KiB acknowledged on a 48 MiB disk");
        let payload = random_bytes(acked.len() as u64, 32 << 10);
        match try_produce(&producer, &topic, &payload) {
            Ok(offset) => acked.push((offset, payload)),
            Err(code) => break code,
        }
    };
    assert_eq!(failure, RDKafkaErrorCode::KafkaStorageError, "a full disk must answer KAFKA_STORAGE_ERROR");
    assert!(!acked.is_empty(), "some writes must have succeeded before the disk filled");
    broker.assert_running();

    // Reads still work, and everything acknowledged is there.
    let got = read_all(&addr, &topic, 0, Duration::from_secs(60));
    assert_eq!(got.len(), acked.len(), "acknowledged vs readable after the disk filled");
    for (rec, (offset, payload)) in got.iter().zip(&acked) {
        assert_eq!(rec.offset, *offset);
        assert_eq!(rec.payload.as_deref(), Some(&payload[..]), "offset {offset}");
    }

    // Space comes back: writes resume after the last acknowledged offset.
    std::fs::remove_file(&filler).expect("remove filler");
    let last = acked.last().map(|(o, _)| *o).unwrap_or(-1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let resumed = loop {
        match try_produce(&producer, &topic, b"after the disk had room again") {
            Ok(offset) => break offset,
            Err(code) if Instant::now() < deadline => {
                eprintln!("still refused after freeing space: {code:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(code) => panic!("writes did not resume after space returned: {code:?}\n{}", broker.log_tail(40)),
        }
    };
    assert_eq!(resumed, last + 1, "new writes continue right after the last acknowledged offset");
    broker.assert_running();
    broker.stop();
    drop(broker);
    drop(fs);
}
