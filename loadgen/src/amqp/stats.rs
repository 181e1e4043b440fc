//! What only an AMQP run counts, beside the latency metrics in `Shared`:
//! nacks, returns, redeliveries, connection.blocked notices, deliveries
//! without this run's stamp, and deliveries per queue (a fanout's queues
//! each get every message). `AmqpStats` is written by the threads,
//! `AmqpCounts` is its snapshot in summary.json.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub struct AmqpStats {
    pub nacked: AtomicU64,
    pub returned: AtomicU64,
    pub redelivered: AtomicU64,
    pub blocked: AtomicU64,
    pub foreign: AtomicU64,
    queues: Vec<String>,
    /// Deliveries of messages due in the measured window, per queue.
    consumed: Vec<AtomicU64>,
    /// Messages the queues held before the run (declare-ok's message_count).
    pub ready_at_start: AtomicU64,
}

impl AmqpStats {
    pub fn new(queues: &[String]) -> AmqpStats {
        AmqpStats {
            nacked: AtomicU64::new(0),
            returned: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            queues: queues.to_vec(),
            consumed: queues.iter().map(|_| AtomicU64::new(0)).collect(),
            ready_at_start: AtomicU64::new(0),
        }
    }

    /// Counts `n` measured deliveries from queue number `queue`.
    pub fn consumed_from(&self, queue: usize, n: u64) {
        debug_assert!(queue < self.consumed.len());
        if let Some(c) = self.consumed.get(queue) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> AmqpCounts {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        AmqpCounts {
            nacked: get(&self.nacked),
            returned: get(&self.returned),
            redelivered: get(&self.redelivered),
            blocked: get(&self.blocked),
            foreign: get(&self.foreign),
            ready_at_start: get(&self.ready_at_start),
            consumed_per_queue: self
                .queues
                .iter()
                .zip(&self.consumed)
                .map(|(q, c)| QueueConsumed { queue: q.clone(), consumed: get(c) })
                .collect(),
        }
    }
}

/// Deliveries from one queue of messages due in the measured window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueConsumed {
    pub queue: String,
    pub consumed: u64,
}

/// The AMQP part of summary.json.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AmqpCounts {
    /// Publishes the broker refused (basic.nack): errors, not counted as produced.
    pub nacked: u64,
    /// Publishes returned unroutable (basic.return).
    pub returned: u64,
    /// Deliveries flagged redelivered.
    pub redelivered: u64,
    /// connection.blocked notices received.
    pub blocked: u64,
    /// Deliveries that were not this run's messages (left in the queue before it).
    pub foreign: u64,
    /// Messages the queues held when the run started.
    pub ready_at_start: u64,
    pub consumed_per_queue: Vec<QueueConsumed>,
}

impl AmqpCounts {
    /// One line for the final table.
    pub fn line(&self) -> String {
        let mut s = format!(
            "amqp: nacked {}, returned {}, redelivered {}, connection.blocked {}, deliveries of other runs {}",
            self.nacked, self.returned, self.redelivered, self.blocked, self.foreign
        );
        if self.consumed_per_queue.len() > 1 {
            s.push_str("; consumed per queue:");
            for q in &self.consumed_per_queue {
                let _ = write!(s, " {} {}", q.queue, q.consumed);
            }
        }
        s
    }

    /// Notes for whatever went wrong or needs saying.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if self.nacked > 0 {
            notes.push(format!(
                "ERROR: the broker nacked {} publishes (refused them); they are not counted as produced",
                self.nacked
            ));
        }
        if self.returned > 0 {
            notes.push(format!("{} publishes were returned unroutable (basic.return)", self.returned));
        }
        if self.redelivered > 0 {
            notes.push(format!("{} deliveries were flagged redelivered", self.redelivered));
        }
        if self.blocked > 0 {
            notes.push(format!("the broker blocked publishing {} time(s) (connection.blocked)", self.blocked));
        }
        if self.ready_at_start > 0 {
            notes.push(format!(
                "the queue(s) held {} messages before the run; consumers received {} deliveries that were not this run's (not counted)",
                self.ready_at_start, self.foreign
            ));
        }
        notes
    }
}
