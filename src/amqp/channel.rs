//! One channel's state: the message being published (method, header, body
//! frames), delivery tags and what each stands for, consumers, prefetch,
//! publisher confirms and transactions. Plain state and its rules; the
//! frames it leads to are sent by `handlers` and `connection`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use super::codec::ContentHeader;
use super::message::PendingBody;
use super::queue::{ConsumerKey, Delivery};

/// A message being received: basic.publish seen, header and body to come.
pub struct Content {
    pub exchange: String,
    pub routing_key: String,
    pub mandatory: bool,
    /// Confirm sequence number, in confirm mode.
    pub seq: Option<u64>,
    pub header: Option<ContentHeader>,
    pub body: Option<PendingBody>,
    /// Body bytes still to come when the message is being discarded
    /// (refused before its body arrived).
    pub discard_remaining: Option<u64>,
    /// The body's share of the connection's budget for messages being
    /// received, given back when the content goes (finished or dropped).
    pub reserved: Option<Reservation>,
}

/// Bytes taken from a budget (`Cell` shared by a connection's channels),
/// given back when dropped.
pub struct Reservation {
    budget: std::rc::Rc<std::cell::Cell<usize>>,
    bytes: usize,
}

impl Reservation {
    /// Takes `bytes` from `used` unless that would pass `max`.
    pub fn take(used: &std::rc::Rc<std::cell::Cell<usize>>, bytes: usize, max: usize) -> Option<Reservation> {
        let now = used.get();
        if now.checked_add(bytes)? > max {
            return None;
        }
        used.set(now + bytes);
        Some(Reservation { budget: used.clone(), bytes })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let now = self.budget.get();
        assert!(now >= self.bytes, "a reservation gives back what it took");
        self.budget.set(now - self.bytes);
    }
}

/// What a delivery tag stands for.
#[derive(Debug, Clone)]
pub struct Unacked {
    pub queue: Arc<str>,
    pub offset: i64,
    /// The consumer it went to (`None`: basic.get).
    pub consumer: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub queue: Arc<str>,
    pub no_ack: bool,
    /// consume-ok was sent: deliveries may go out.
    pub ready: bool,
}

/// Publisher confirms: sequence numbers handed out and which completed.
#[derive(Debug, Default)]
pub struct Confirms {
    /// The next publish gets this number (the first is 1).
    pub next_seq: u64,
    /// Everything up to here was confirmed to the client.
    confirmed_through: u64,
    /// Completed but not yet confirmed (an earlier one is still pending):
    /// sequence → routed and stored everywhere (ack) or not (nack).
    done: BTreeMap<u64, bool>,
}

/// One confirm to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmFrame {
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64 },
}

impl Confirms {
    pub fn new() -> Confirms {
        Confirms { next_seq: 1, confirmed_through: 0, done: BTreeMap::new() }
    }

    pub fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Records that `seq` completed and returns the confirms now due, in
    /// order: runs of acks as one `multiple` ack, each nack alone.
    pub fn complete(&mut self, seq: u64, ok: bool) -> Vec<ConfirmFrame> {
        assert!(
            seq > self.confirmed_through && seq < self.next_seq,
            "confirm {seq} was handed out and not yet confirmed"
        );
        let fresh = self.done.insert(seq, ok).is_none();
        assert!(fresh, "confirm {seq} completed twice");
        let mut out = Vec::new();
        // The run of acks being gathered: (first, last).
        let mut run: Option<(u64, u64)> = None;
        while let Some(ok) = self.done.remove(&(self.confirmed_through + 1)) {
            self.confirmed_through += 1;
            let seq = self.confirmed_through;
            if ok {
                run = Some(run.map_or((seq, seq), |(first, _)| (first, seq)));
            } else {
                if let Some((first, last)) = run.take() {
                    out.push(ConfirmFrame::Ack { tag: last, multiple: last > first });
                }
                out.push(ConfirmFrame::Nack { tag: seq });
            }
        }
        if let Some((first, last)) = run {
            out.push(ConfirmFrame::Ack { tag: last, multiple: last > first });
        }
        out
    }

    /// Publishes waiting for their confirm.
    pub fn outstanding(&self) -> u64 {
        self.next_seq - 1 - self.confirmed_through
    }
}

/// A message ready to be routed and stored (complete, maybe held by a
/// transaction).
pub struct ReadyMessage {
    pub exchange: String,
    pub routing_key: String,
    pub mandatory: bool,
    pub seq: Option<u64>,
    pub header: ContentHeader,
    pub batch: bytes::BytesMut,
}

/// A settlement held by a transaction until commit.
#[derive(Debug, Clone, Copy)]
pub enum TxSettle {
    Ack { tag: u64, multiple: bool },
    Reject { tag: u64, multiple: bool, requeue: bool },
}

#[derive(Default)]
pub struct Tx {
    pub publishes: Vec<ReadyMessage>,
    /// Bytes of the messages held.
    pub bytes: usize,
    pub settles: Vec<TxSettle>,
}

/// Messages and acks a transaction may hold, at most.
pub const TX_PUBLISHES_MAX: usize = 100_000;

pub struct Channel {
    pub id: u16,
    /// This side sent channel.close and waits for close-ok.
    pub closing: bool,
    pub content: Option<Content>,
    pub confirm: Option<Confirms>,
    pub tx: Option<Tx>,
    next_tag: u64,
    pub unacked: BTreeMap<u64, Unacked>,
    pub consumers: HashMap<Arc<str>, ConsumerInfo>,
    /// basic.qos global=false: for consumers started after it.
    pub prefetch_count: u16,
    /// basic.qos global=true: unacked deliveries of the whole channel.
    pub global_prefetch: u16,
    /// Deliveries waiting for room under the channel's limits or for their
    /// consumer's consume-ok.
    pub held: VecDeque<Delivery>,
    /// The last queue declared on this channel (the empty queue name means it).
    pub last_queue: Option<String>,
    /// The channel reached its channel-wide prefetch: its consumers are
    /// paused at their queues until an ack makes room.
    pub paused: bool,
    /// Where this channel lives (for consumer keys).
    pub shard: usize,
    pub connection: u64,
}

impl Channel {
    pub fn new(id: u16, shard: usize, connection: u64) -> Channel {
        Channel {
            id,
            closing: false,
            content: None,
            confirm: None,
            tx: None,
            next_tag: 1,
            unacked: BTreeMap::new(),
            consumers: HashMap::new(),
            prefetch_count: 0,
            global_prefetch: 0,
            held: VecDeque::new(),
            last_queue: None,
            paused: false,
            shard,
            connection,
        }
    }

    pub fn consumer_key(&self, tag: &Arc<str>) -> ConsumerKey {
        ConsumerKey { shard: self.shard, connection: self.connection, channel: self.id, tag: tag.clone() }
    }

    /// A delivery tag for a message; recorded as unacked unless `no_ack`.
    pub fn tag(&mut self, unacked: Option<Unacked>) -> u64 {
        let t = self.next_tag;
        self.next_tag += 1;
        if let Some(u) = unacked {
            let fresh = self.unacked.insert(t, u).is_none();
            assert!(fresh, "delivery tags are never reused on a channel");
        }
        t
    }

    /// Removes and returns the tags an ack/nack/reject covers: `tag` alone,
    /// or with `multiple` every unacked tag up to it (tag 0: all). `None`
    /// when a single tag is unknown (a channel error: PRECONDITION_FAILED).
    pub fn take_tags(&mut self, tag: u64, multiple: bool) -> Option<Vec<(u64, Unacked)>> {
        if multiple {
            let upto = if tag == 0 { u64::MAX } else { tag };
            if tag != 0 && tag >= self.next_tag {
                return None;
            }
            let keys: Vec<u64> = self.unacked.range(..=upto).map(|(k, _)| *k).collect();
            return Some(keys.into_iter().filter_map(|k| self.unacked.remove(&k).map(|u| (k, u))).collect());
        }
        self.unacked.remove(&tag).map(|u| vec![(tag, u)])
    }

    /// Whether the channel-wide prefetch leaves room for another delivery.
    pub fn has_room(&self) -> bool {
        self.global_prefetch == 0 || self.unacked.len() < usize::from(self.global_prefetch)
    }

    /// The prefetch a new consumer gets at its queue: the per-consumer
    /// limit, else the channel's (a queue must not send more than the
    /// channel may hold), else none.
    pub fn consumer_prefetch(&self) -> u32 {
        match (self.prefetch_count, self.global_prefetch) {
            (0, 0) => 0,
            (0, g) => u32::from(g),
            (p, 0) => u32::from(p),
            (p, g) => u32::from(p.min(g)),
        }
    }

    /// The unacked tags grouped by queue, offsets in tag order (for requeue
    /// on close and basic.recover), all removed.
    pub fn drain_unacked(&mut self) -> Vec<(Arc<str>, Vec<i64>)> {
        let mut by_queue: Vec<(Arc<str>, Vec<i64>)> = Vec::new();
        for (_, u) in std::mem::take(&mut self.unacked) {
            match by_queue.iter_mut().find(|(q, _)| *q == u.queue) {
                Some((_, v)) => v.push(u.offset),
                None => by_queue.push((u.queue, vec![u.offset])),
            }
        }
        by_queue
    }
}

/// Groups settled tags by queue: (queue, offsets).
pub fn by_queue(tags: &[(u64, Unacked)]) -> Vec<(Arc<str>, Vec<i64>)> {
    let mut out: Vec<(Arc<str>, Vec<i64>)> = Vec::new();
    for (_, u) in tags {
        match out.iter_mut().find(|(q, _)| *q == u.queue) {
            Some((_, v)) => v.push(u.offset),
            None => out.push((u.queue.clone(), vec![u.offset])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_go_out_in_order_with_acks_merged_and_nacks_alone() {
        let mut c = Confirms::new();
        for _ in 0..5 {
            c.take_seq();
        }
        assert_eq!(c.complete(2, true), vec![], "1 is still pending");
        assert_eq!(c.complete(1, true), vec![ConfirmFrame::Ack { tag: 2, multiple: true }]);
        assert_eq!(c.complete(4, true), vec![]);
        assert_eq!(
            c.complete(3, false),
            vec![ConfirmFrame::Nack { tag: 3 }, ConfirmFrame::Ack { tag: 4, multiple: false }]
        );
        assert_eq!(c.complete(5, true), vec![ConfirmFrame::Ack { tag: 5, multiple: false }]);
        assert_eq!(c.outstanding(), 0);
    }

    fn unacked(q: &str, offset: i64) -> Unacked {
        Unacked { queue: Arc::from(q), offset, consumer: None }
    }

    #[test]
    fn multiple_takes_every_tag_up_to_it_and_zero_takes_all() {
        let mut ch = Channel::new(1, 0, 1);
        for o in 0..5 {
            ch.tag(Some(unacked("q", o)));
        }
        let t = ch.take_tags(3, true).expect("known");
        assert_eq!(t.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(ch.take_tags(3, false).is_none(), "3 was acked already");
        assert_eq!(ch.take_tags(0, true).expect("all").len(), 2);
        assert!(ch.take_tags(99, true).is_none(), "a tag never handed out");
    }

    #[test]
    fn the_channel_limit_caps_a_consumer_without_its_own() {
        let mut ch = Channel::new(1, 0, 1);
        ch.global_prefetch = 10;
        assert_eq!(ch.consumer_prefetch(), 10);
        ch.prefetch_count = 3;
        assert_eq!(ch.consumer_prefetch(), 3);
        for o in 0..10 {
            ch.tag(Some(unacked("q", o)));
        }
        assert!(!ch.has_room());
    }
}
