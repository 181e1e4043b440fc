//! The queue's rules on real logs (a temp dir on the target's disk) and a
//! recording outlet in place of connections.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::*;
use crate::amqp::message::{MessageMeta, PendingBody, StoredMessage};
use crate::runtime::task::run_local;

/// A delivery as the outlet saw it.
struct Seen {
    tag: String,
    offset: i64,
    redelivered: bool,
    body: Vec<u8>,
}

#[derive(Default)]
struct Recorder {
    deliveries: RefCell<Vec<Seen>>,
    /// Deliveries not yet credited back to the queue (as written to a socket).
    uncredited: Cell<u32>,
    cancelled: RefCell<Vec<String>>,
    unused: RefCell<Vec<String>>,
}

struct RecordingOutlet(Rc<Recorder>);

impl Outlet for RecordingOutlet {
    fn deliver(&self, d: Delivery) -> LocalBoxFuture<'_, ()> {
        let body = StoredMessage::parse(&d.batch).expect("stored message").body.to_vec();
        self.0.uncredited.set(self.0.uncredited.get() + 1);
        self.0.deliveries.borrow_mut().push(Seen {
            tag: d.consumer.tag.to_string(),
            offset: d.offset,
            redelivered: d.redelivered,
            body,
        });
        Box::pin(async {})
    }
    fn cancelled(&self, consumer: ConsumerKey) {
        self.0.cancelled.borrow_mut().push(consumer.tag.to_string());
    }
    fn unused(&self, queue: Arc<str>) {
        self.0.unused.borrow_mut().push(queue.to_string());
    }
}

fn message(body: &str) -> bytes::BytesMut {
    let mut p = PendingBody::new("", "q", &[0, 0], MessageMeta { persistent: true, ..Default::default() }, body.len());
    p.space(body.len()).copy_from_slice(body.as_bytes());
    p.advance(body.len());
    p.finish()
}

fn key(tag: &str) -> ConsumerKey {
    ConsumerKey { shard: 0, connection: 1, channel: 1, tag: Arc::from(tag) }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        preallocation: crate::storage::Preallocation::Fallocate,
        ..LogConfig::default()
    }
}

async fn open(dir: &std::path::Path, rec: &Rc<Recorder>) -> Rc<Queue> {
    Queue::open_durable(dir, Arc::from("q"), log_config(), log_config(), Rc::new(RecordingOutlet(rec.clone())), false)
        .await
        .expect("open queue")
}

/// Lets the dispatcher run until `done` holds (bounded).
async fn settle_until(done: impl Fn() -> bool) {
    for _ in 0..5000 {
        if done() {
            return;
        }
        crate::runtime::task::sleep(std::time::Duration::from_millis(2)).await;
    }
    panic!("condition not reached");
}

fn bodies(rec: &Recorder) -> Vec<String> {
    rec.deliveries.borrow().iter().map(|d| String::from_utf8_lossy(&d.body).into_owned()).collect()
}

#[test]
fn messages_go_round_robin_to_consumers_in_publish_order() {
    run_local(async {
        let rec = Rc::new(Recorder::default());
        let q = Queue::in_memory(
            Arc::from("q"),
            Rc::new(MemoryBudget { used_bytes: Cell::new(0), max_bytes: 1 << 20 }),
            Rc::new(RecordingOutlet(rec.clone())),
            false,
        );
        q.consume(key("a"), false, 0, false).expect("consume a");
        q.consume(key("b"), false, 0, false).expect("consume b");
        for i in 0..4 {
            q.publish(message(&format!("m{i}")), false).await.expect("publish");
        }
        settle_until(|| rec.deliveries.borrow().len() == 4).await;
        let d = rec.deliveries.borrow();
        let order: Vec<(&str, &[u8])> = d.iter().map(|x| (x.tag.as_str(), &x.body[..])).collect();
        assert_eq!(order, vec![("a", &b"m0"[..]), ("b", b"m1"), ("a", b"m2"), ("b", b"m3")]);
        assert_eq!(q.unacked_count(), 4);
        assert_eq!(q.ready_count(), 0);
    });
}

#[test]
fn a_consumer_gets_no_more_than_its_prefetch_until_it_acks() {
    run_local(async {
        let rec = Rc::new(Recorder::default());
        let dir = tempdir();
        let q = open(dir.path(), &rec).await;
        for i in 0..5 {
            q.publish(message(&format!("m{i}")), true).await.expect("publish");
        }
        q.consume(key("a"), false, 2, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 2).await;
        crate::runtime::task::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(rec.deliveries.borrow().len(), 2, "prefetch 2 holds the third back");
        let first = rec.deliveries.borrow()[0].offset;
        q.settle(&[first]);
        settle_until(|| rec.deliveries.borrow().len() == 3).await;
        assert_eq!(bodies(&rec), vec!["m0", "m1", "m2"]);
        q.close().await;
    });
}

#[test]
fn requeued_messages_come_back_first_in_their_original_order_flagged_redelivered() {
    run_local(async {
        let rec = Rc::new(Recorder::default());
        let dir = tempdir();
        let q = open(dir.path(), &rec).await;
        for i in 0..4 {
            q.publish(message(&format!("m{i}")), true).await.expect("publish");
        }
        q.consume(key("a"), false, 3, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 3).await;
        let offsets: Vec<i64> = rec.deliveries.borrow().iter().map(|d| d.offset).collect();
        q.requeue(&[offsets[2], offsets[0]]);
        settle_until(|| rec.deliveries.borrow().len() == 5).await;
        let tail: Vec<(String, bool)> = rec.deliveries.borrow()[3..]
            .iter()
            .map(|x| (String::from_utf8_lossy(&x.body).into_owned(), x.redelivered))
            .collect();
        assert_eq!(tail, vec![("m0".to_string(), true), ("m2".to_string(), true)]);
        q.close().await;
    });
}

#[test]
fn an_exclusive_consumer_keeps_others_out() {
    run_local(async {
        let rec = Rc::new(Recorder::default());
        let q = Queue::in_memory(
            Arc::from("q"),
            Rc::new(MemoryBudget { used_bytes: Cell::new(0), max_bytes: 1 << 20 }),
            Rc::new(RecordingOutlet(rec.clone())),
            false,
        );
        q.consume(key("a"), false, 0, true).expect("exclusive");
        assert_eq!(q.consume(key("b"), false, 0, false), Err(ConsumeError::ExclusiveUse("q".into())));
        assert!(q.cancel(&key("a")));
        q.consume(key("b"), false, 0, false).expect("free again");
        assert_eq!(q.consume(key("c"), false, 0, true), Err(ConsumeError::ExclusiveUse("q".into())));
    });
}

#[test]
fn acknowledged_messages_stay_gone_and_unacknowledged_come_back_redelivered_after_reopen() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let q = open(dir.path(), &rec).await;
        for i in 0..10 {
            q.publish(message(&format!("m{i}")), true).await.expect("publish");
        }
        q.consume(key("a"), false, 6, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 6).await;
        let offsets: Vec<i64> = rec.deliveries.borrow().iter().map(|d| d.offset).collect();
        q.settle(&offsets[..4]);
        q.close().await;

        let rec2 = Rc::new(Recorder::default());
        let q = open(dir.path(), &rec2).await;
        assert_eq!(q.ready_count(), 6, "4 of 10 were acknowledged");
        q.consume(key("b"), true, 0, false).expect("consume");
        settle_until(|| rec2.deliveries.borrow().len() == 6).await;
        let got: Vec<(String, bool)> = rec2
            .deliveries
            .borrow()
            .iter()
            .map(|x| (String::from_utf8_lossy(&x.body).into_owned(), x.redelivered))
            .collect();
        assert_eq!(&got[..2], &[("m4".to_string(), true), ("m5".to_string(), true)], "delivered before: redelivered");
        assert_eq!(got.iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), vec!["m4", "m5", "m6", "m7", "m8", "m9"]);
        q.close().await;
    });
}

#[test]
fn purge_settles_ready_messages_only() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let q = open(dir.path(), &rec).await;
        for i in 0..5 {
            q.publish(message(&format!("m{i}")), true).await.expect("publish");
        }
        q.consume(key("a"), false, 2, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 2).await;
        assert!(q.cancel(&key("a")));
        assert_eq!(q.purge(), 3);
        assert_eq!(q.ready_count(), 0);
        assert_eq!(q.unacked_count(), 2);
        let offsets: Vec<i64> = rec.deliveries.borrow().iter().map(|d| d.offset).collect();
        q.requeue(&offsets);
        assert_eq!(q.ready_count(), 2, "the two unacked ones were not purged");
        q.close().await;
    });
}

#[test]
fn a_deleted_queue_cancels_its_consumers_and_removes_its_files() {
    run_local(async {
        let dir = tempdir();
        let qdir = dir.path().join("q");
        let rec = Rc::new(Recorder::default());
        let q = open(&qdir, &rec).await;
        q.publish(message("x"), true).await.expect("publish");
        q.consume(key("a"), false, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 1).await;
        q.publish(message("y"), true).await.expect("publish");
        assert_eq!(q.delete().await, 1, "one ready message (the other is unacked)");
        assert_eq!(*rec.cancelled.borrow(), vec!["a".to_string()]);
        assert!(!qdir.exists());
    });
}

#[test]
fn an_auto_delete_queue_reports_itself_unused_after_its_last_consumer() {
    run_local(async {
        let rec = Rc::new(Recorder::default());
        let q = Queue::in_memory(
            Arc::from("ad"),
            Rc::new(MemoryBudget { used_bytes: Cell::new(0), max_bytes: 1 << 20 }),
            Rc::new(RecordingOutlet(rec.clone())),
            true,
        );
        q.consume(key("a"), false, 0, false).expect("a");
        q.consume(key("b"), false, 0, false).expect("b");
        q.cancel(&key("a"));
        assert!(rec.unused.borrow().is_empty());
        q.cancel(&key("b"));
        assert_eq!(*rec.unused.borrow(), vec!["ad".to_string()]);
    });
}

#[test]
fn a_memory_queue_refuses_messages_beyond_its_budget_and_frees_settled_ones() {
    run_local(async {
        let rec = Rc::new(Recorder::default());
        let budget = Rc::new(MemoryBudget { used_bytes: Cell::new(0), max_bytes: 400 });
        let q = Queue::in_memory(Arc::from("m"), budget.clone(), Rc::new(RecordingOutlet(rec.clone())), false);
        let mut taken = 0;
        while q.publish(message("0123456789"), false).await.is_ok() {
            taken += 1;
            assert!(taken < 100, "the budget must bind");
        }
        assert!(budget.used_bytes.get() <= 400);
        q.consume(key("a"), true, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == taken).await;
        assert_eq!(budget.used_bytes.get(), 0, "no-ack deliveries free their bytes");
        q.publish(message("again"), false).await.expect("room again");
    });
}

#[test]
fn whole_segments_of_settled_messages_are_deleted() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let q = open(dir.path(), &rec).await;
        let body = "x".repeat(1000);
        for _ in 0..4000 {
            q.publish(message(&body), true).await.expect("publish");
        }
        assert_eq!(q.store.start(), 0);
        q.consume(key("a"), true, 0, false).expect("consume");
        // Nothing writes to a socket here: credit goes back by hand.
        settle_until(|| {
            q.credit(&key("a"), rec.uncredited.replace(0));
            rec.deliveries.borrow().len() == 4000
        })
        .await;
        // The journal task trims once the settled head is far enough ahead.
        settle_until(|| q.store.start() > 0).await;
        let start = q.store.start();
        assert!(start <= 4000, "only settled messages go: start {start}");
        let segments = std::fs::read_dir(store::messages_dir(dir.path()))
            .expect("messages dir")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .count();
        assert!(segments < 4, "1 MiB segments of 4 MB of messages: the first ones are gone ({segments} left)");
        q.close().await;
    });
}
