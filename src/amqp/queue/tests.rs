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
    /// Dead letters as routed: (exchange, routing key, body).
    dead_letters: RefCell<Vec<(String, String, Vec<u8>)>>,
    dead_letter_batches: RefCell<Vec<Bytes>>,
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
    fn dead_letter(&self, letter: DeadLetter) -> LocalBoxFuture<'_, bool> {
        let batch = letter.batch.freeze();
        let body = StoredMessage::parse(&batch).expect("stored dead letter").body.to_vec();
        self.0.dead_letters.borrow_mut().push((letter.exchange.clone(), letter.routing_key.clone(), body));
        self.0.dead_letter_batches.borrow_mut().push(batch);
        Box::pin(async { true })
    }
    fn cancelled(&self, consumer: ConsumerKey) {
        self.0.cancelled.borrow_mut().push(consumer.tag.to_string());
    }
    fn unused(&self, queue: Arc<str>) {
        self.0.unused.borrow_mut().push(queue.to_string());
    }
}

fn message(body: &str) -> bytes::BytesMut {
    message_with(body, MessageMeta { persistent: true, ..Default::default() })
}

/// A message published now (unless `meta` says when).
fn message_with(body: &str, mut meta: MessageMeta) -> bytes::BytesMut {
    if meta.published_ms == 0 {
        meta.published_ms = now_ms();
    }
    let mut p = PendingBody::new("", "q", &[0, 0], meta, body.len());
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

fn spec(name: &str, auto_delete: bool, options: QueueOptions) -> QueueSpec {
    QueueSpec { name: Arc::from(name), auto_delete, options }
}

fn budget() -> Rc<MemoryBudget> {
    Rc::new(MemoryBudget { used_bytes: Cell::new(0), max_bytes: 1 << 20 })
}

async fn open(dir: &std::path::Path, rec: &Rc<Recorder>) -> Rc<Queue> {
    open_with(dir, rec, QueueOptions::default()).await
}

async fn open_with(dir: &std::path::Path, rec: &Rc<Recorder>, options: QueueOptions) -> Rc<Queue> {
    let outlet = Rc::new(RecordingOutlet(rec.clone()));
    Queue::open_durable(dir, spec("q", false, options), log_config(), log_config(), outlet).await.expect("open queue")
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
            spec("q", false, QueueOptions::default()),
            budget(),
            Rc::new(RecordingOutlet(rec.clone())),
        );
        q.consume(key("a"), false, 0, false).expect("consume a");
        q.consume(key("b"), false, 0, false).expect("consume b");
        for i in 0..4 {
            q.publish(message(&format!("m{i}")), false, None).await.expect("publish");
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
            q.publish(message(&format!("m{i}")), true, None).await.expect("publish");
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
            q.publish(message(&format!("m{i}")), true, None).await.expect("publish");
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
            spec("q", false, QueueOptions::default()),
            budget(),
            Rc::new(RecordingOutlet(rec.clone())),
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
            q.publish(message(&format!("m{i}")), true, None).await.expect("publish");
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
            q.publish(message(&format!("m{i}")), true, None).await.expect("publish");
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
        q.publish(message("x"), true, None).await.expect("publish");
        q.consume(key("a"), false, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 1).await;
        q.publish(message("y"), true, None).await.expect("publish");
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
            spec("ad", true, QueueOptions::default()),
            budget(),
            Rc::new(RecordingOutlet(rec.clone())),
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
        let q = Queue::in_memory(
            spec("m", false, QueueOptions::default()),
            budget.clone(),
            Rc::new(RecordingOutlet(rec.clone())),
        );
        let mut taken = 0;
        while q.publish(message("0123456789"), false, None).await.is_ok() {
            taken += 1;
            assert!(taken < 100, "the budget must bind");
        }
        assert!(budget.used_bytes.get() <= 400);
        q.consume(key("a"), true, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == taken).await;
        assert_eq!(budget.used_bytes.get(), 0, "no-ack deliveries free their bytes");
        q.publish(message("again"), false, None).await.expect("room again");
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
            q.publish(message(&body), true, None).await.expect("publish");
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

// ---- queue features (arguments of queue.declare) ----

fn dead_letter_to(exchange: &str) -> Option<options::DeadLetterTarget> {
    Some(options::DeadLetterTarget { exchange: exchange.to_string(), routing_key: Some("dead".to_string()) })
}

fn with_priority(body: &str, priority: u8) -> bytes::BytesMut {
    message_with(body, MessageMeta { persistent: true, priority, ..Default::default() })
}

fn dead_bodies(rec: &Recorder) -> Vec<String> {
    rec.dead_letters.borrow().iter().map(|d| String::from_utf8_lossy(&d.2).into_owned()).collect()
}

#[test]
fn higher_priorities_go_first_fifo_within_one_and_after_a_reopen() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let options = QueueOptions { max_priority: Some(5), ..Default::default() };
        let q = open_with(dir.path(), &rec, options.clone()).await;
        for (body, p) in [("low-1", 1), ("high-1", 5), ("none", 0), ("low-2", 1), ("high-2", 9)] {
            q.publish(with_priority(body, p), true, None).await.expect("publish");
        }
        q.close().await;
        let q = open_with(dir.path(), &rec, options).await;
        q.consume(key("a"), true, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 5).await;
        // Priority 9 is capped to the queue's maximum, 5: after high-1.
        assert_eq!(bodies(&rec), ["high-1", "high-2", "low-1", "low-2", "none"]);
        q.close().await;
    });
}

#[test]
fn a_message_past_the_queue_ttl_is_never_delivered_and_is_dead_lettered_as_expired() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let options =
            QueueOptions { message_ttl_ms: Some(30), dead_letter: dead_letter_to("dlx"), ..Default::default() };
        let q = open_with(dir.path(), &rec, options).await;
        q.publish(message("stale"), true, None).await.expect("publish");
        settle_until(|| rec.dead_letters.borrow().len() == 1).await;
        q.publish(message("fresh"), true, None).await.expect("publish");
        q.consume(key("a"), true, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 1).await;
        assert_eq!(bodies(&rec), ["fresh"]);
        let (exchange, routing_key, body) = rec.dead_letters.borrow()[0].clone();
        assert_eq!((exchange.as_str(), routing_key.as_str(), &body[..]), ("dlx", "dead", &b"stale"[..]));
        let dead = StoredMessage::parse(&rec.dead_letter_batches.borrow()[0]).expect("dead letter");
        let raw = String::from_utf8_lossy(&dead.properties);
        assert!(raw.contains("x-death") && raw.contains("expired"), "x-death names the reason: {raw}");
        assert_eq!(q.counters.expired.get(), 1);
        q.close().await;
    });
}

#[test]
fn a_message_past_its_own_expiration_is_dropped_at_the_head_without_a_dead_letter_exchange() {
    run_local(async {
        let rec = Rc::new(Recorder::default());
        let q = Queue::in_memory(
            spec("q", false, QueueOptions::default()),
            budget(),
            Rc::new(RecordingOutlet(rec.clone())),
        );
        let gone = MessageMeta { expires_at_ms: now_ms() + 20, ..Default::default() };
        q.publish(message_with("short-lived", gone), false, None).await.expect("publish");
        q.publish(message("kept"), false, None).await.expect("publish");
        crate::runtime::task::sleep(std::time::Duration::from_millis(40)).await;
        q.consume(key("a"), true, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 1).await;
        crate::runtime::task::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(bodies(&rec), ["kept"]);
        assert_eq!(q.ready_count(), 0);
    });
}

#[test]
fn a_rejected_message_is_dead_lettered_and_then_settled() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let options = QueueOptions { dead_letter: dead_letter_to("dlx"), ..Default::default() };
        let q = open_with(dir.path(), &rec, options).await;
        q.publish(message("bad"), true, None).await.expect("publish");
        q.consume(key("a"), false, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 1).await;
        q.reject(&[rec.deliveries.borrow()[0].offset]);
        settle_until(|| q.unacked_count() == 0 && rec.dead_letters.borrow().len() == 1).await;
        assert_eq!(dead_bodies(&rec), ["bad"]);
        assert_eq!(q.ready_count(), 0, "settled once its dead letter was stored");
        assert_eq!(q.counters.dead_lettered.get(), 1);
        q.close().await;
    });
}

#[test]
fn drop_head_keeps_the_newest_messages_within_max_length_and_dead_letters_the_rest() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let options = QueueOptions { max_length: Some(2), dead_letter: dead_letter_to("dlx"), ..Default::default() };
        let q = open_with(dir.path(), &rec, options).await;
        for i in 0..5 {
            q.publish(message(&format!("m{i}")), true, None).await.expect("drop-head takes every publish");
        }
        settle_until(|| rec.dead_letters.borrow().len() == 3).await;
        assert_eq!(dead_bodies(&rec), ["m0", "m1", "m2"]);
        q.consume(key("a"), true, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 2).await;
        assert_eq!(bodies(&rec), ["m3", "m4"]);
        q.close().await;
    });
}

#[test]
fn reject_publish_refuses_a_message_past_max_length_bytes() {
    run_local(async {
        let rec = Rc::new(Recorder::default());
        let options = QueueOptions {
            max_length_bytes: Some(10),
            overflow: options::Overflow::RejectPublish,
            ..Default::default()
        };
        let q = Queue::in_memory(spec("q", false, options), budget(), Rc::new(RecordingOutlet(rec.clone())));
        q.publish(message("12345"), false, None).await.expect("5 of 10 bytes");
        q.publish(message("67890"), false, None).await.expect("10 of 10 bytes");
        let refused = q.publish(message("x"), false, None).await;
        assert!(matches!(refused, Err(PublishError::Full(_))), "{refused:?}");
        assert_eq!(q.ready_count(), 2);
        assert!(rec.dead_letters.borrow().is_empty(), "reject-publish does not dead-letter");
    });
}

#[test]
fn a_message_returned_more_than_the_delivery_limit_is_dead_lettered() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let options =
            QueueOptions { delivery_limit: Some(2), dead_letter: dead_letter_to("dlx"), ..Default::default() };
        let q = open_with(dir.path(), &rec, options).await;
        q.publish(message("poison"), true, None).await.expect("publish");
        q.consume(key("a"), false, 0, false).expect("consume");
        for round in 1..=3 {
            settle_until(|| rec.deliveries.borrow().len() == round).await;
            let offset = rec.deliveries.borrow()[round - 1].offset;
            q.requeue(&[offset]);
        }
        settle_until(|| rec.dead_letters.borrow().len() == 1).await;
        assert_eq!(rec.deliveries.borrow().len(), 3, "delivered once and returned twice, then gone");
        assert_eq!(dead_bodies(&rec), ["poison"]);
        q.close().await;
    });
}

#[test]
fn a_queue_unused_for_x_expires_reports_itself_unused() {
    run_local(async {
        let rec = Rc::new(Recorder::default());
        let options = QueueOptions { expires_ms: Some(30), ..Default::default() };
        let q = Queue::in_memory(spec("idle", false, options), budget(), Rc::new(RecordingOutlet(rec.clone())));
        q.consume(key("a"), false, 0, false).expect("consume");
        crate::runtime::task::sleep(std::time::Duration::from_millis(60)).await;
        assert!(rec.unused.borrow().is_empty(), "a queue with a consumer is in use");
        q.cancel(&key("a"));
        settle_until(|| !rec.unused.borrow().is_empty()).await;
        assert_eq!(*rec.unused.borrow(), ["idle".to_string()]);
    });
}

#[test]
fn publishes_arriving_together_cannot_all_pass_a_reject_publish_limit() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let options =
            QueueOptions { max_length: Some(5), overflow: options::Overflow::RejectPublish, ..Default::default() };
        let q = open_with(dir.path(), &rec, options).await;
        // Twenty appends in one group commit: none is visible when the
        // others are checked.
        let publishes = (0..20).map(|i| q.publish(message(&format!("m{i}")), false, None));
        let outcomes = futures_util::future::join_all(publishes).await;
        let taken = outcomes.iter().filter(|o| o.is_ok()).count();
        assert_eq!(taken, 5, "{outcomes:?}");
        assert_eq!(q.ready_count(), 5);
        q.close().await;
    });
}

/// A message with `message_id` `id`, and its de-duplication key.
fn keyed(body: &str, id: &str) -> (bytes::BytesMut, Option<Bytes>) {
    use crate::amqp::codec::{encode_properties, protocol::basic::AMQPProperties, short};
    let props = AMQPProperties::default().with_message_id(short(id)).with_delivery_mode(2);
    let raw = encode_properties(&props);
    let meta = MessageMeta { persistent: true, published_ms: now_ms(), ..Default::default() };
    let mut p = PendingBody::new("", "q", &raw, meta, body.len());
    p.space(body.len()).copy_from_slice(body.as_bytes());
    p.advance(body.len());
    (p.finish(), dedup::key_of(&props))
}

fn dedup_options(cache_size: u32) -> QueueOptions {
    QueueOptions { dedup: Some(options::Dedup { cache_size, ttl_ms: None }), ..Default::default() }
}

#[test]
fn a_message_whose_key_was_stored_is_taken_but_not_enqueued_also_after_a_reopen() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let q = open_with(dir.path(), &rec, dedup_options(100)).await;
        for (body, id) in [("first", "a"), ("again", "a"), ("other", "b")] {
            let (batch, key) = keyed(body, id);
            q.publish(batch, true, key).await.expect("taken");
        }
        assert_eq!(q.ready_count(), 2);
        assert_eq!(q.counters.deduplicated.get(), 1);
        // Consumed and settled: the keys stay (the log keeps the messages).
        q.consume(key("c"), true, 0, false).expect("consume");
        settle_until(|| rec.deliveries.borrow().len() == 2).await;
        q.close().await;
        let q = open_with(dir.path(), &rec, dedup_options(100)).await;
        let (batch, key) = keyed("after the reopen", "a");
        q.publish(batch, true, key).await.expect("taken");
        assert_eq!(q.ready_count(), 0, "a duplicate of a message stored before the reopen");
        assert_eq!(bodies(&rec), ["first", "other"]);
        q.close().await;
    });
}

#[test]
fn a_duplicate_arriving_while_its_original_is_appended_waits_for_it() {
    run_local(async {
        let dir = tempdir();
        let rec = Rc::new(Recorder::default());
        let q = open_with(dir.path(), &rec, dedup_options(100)).await;
        let (first, k1) = keyed("first", "same");
        let (second, k2) = keyed("second", "same");
        let (a, b) = futures_lite::future::zip(q.publish(first, true, k1), q.publish(second, true, k2)).await;
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(q.ready_count(), 1, "one of the two is stored");
        assert_eq!(q.counters.deduplicated.get(), 1);
        q.close().await;
    });
}
