//! What an append passes before it gets offsets: its batches are validated
//! against the size limits (`check_request`), then it waits for room under
//! back-pressure: a bounded amount may wait for the disk
//! (`pending_max_bytes`), and appends that have to wait for room are served
//! in arrival order: a later, smaller one must not overtake (an idempotent
//! producer's sequences would arrive out of order). This module owns the
//! queue of waiting appends (their tickets).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ops::Range;

use event_listener::Event;

use super::batch::{self, BatchError, BatchHeader};
use super::config::LogConfig;
use super::error::StorageError;
use super::producer_state::ProducerBatch;

/// The size limits an append is checked against, as configured when it came.
pub(crate) struct AppendLimits {
    pub max_message_bytes: usize,
    pub segment_bytes: u64,
    pub pending_max_bytes: usize,
}

impl AppendLimits {
    pub fn of(config: &LogConfig) -> AppendLimits {
        AppendLimits {
            max_message_bytes: config.max_message_bytes,
            segment_bytes: config.segment_bytes,
            pending_max_bytes: config.pending_max_bytes,
        }
    }
}

/// A produce request's validated batches (ranges of its bytes).
pub(crate) type Batches = Vec<(Range<usize>, BatchHeader)>;

/// A produce request that passed validation.
pub(crate) enum Checked {
    /// To append, with its producer fields when it carries a producer id.
    Valid(Batches, Option<ProducerBatch>),
    /// Valid but over a size limit: refused with the error, unless it is the
    /// retry of an idempotent batch stored before the limit was lowered.
    OverLimit(Batches, StorageError),
}

/// Validates a produce request's `records` against the size limits.
pub(crate) fn check_request(records: &[u8], limits: &AppendLimits) -> Result<Checked, StorageError> {
    let batches = match batch::validate_all(records, limits.max_message_bytes) {
        Ok(batches) => batches,
        Err(too_large @ BatchError::TooLarge { .. }) => {
            // Valid but over max.message.bytes: a retry of a batch stored
            // before the limit was lowered still gets its offsets.
            let Ok(batches) = batch::validate_all(records, usize::MAX) else { return Err(too_large.into()) };
            return Ok(Checked::OverLimit(batches, too_large.into()));
        }
        Err(e) => return Err(e.into()),
    };
    let producer = ProducerBatch::of_request(&batches)?;
    let capacity = limits.segment_bytes;
    if batches.iter().any(|(r, _)| r.len() as u64 > capacity) {
        let too_large = StorageError::TooLarge { bytes: records.len(), max: capacity as usize };
        return Ok(Checked::OverLimit(batches, too_large));
    }
    Ok(Checked::Valid(batches, producer))
}

/// Tickets of the appends waiting for pending space, oldest first.
#[derive(Default)]
pub(crate) struct AppendQueue {
    waiting: RefCell<VecDeque<u64>>,
    next_ticket: Cell<u64>,
}

/// A place in `AppendQueue`; leaving it (served or dropped) wakes the others.
struct AppendTurn<'a> {
    queue: &'a AppendQueue,
    space_freed: &'a Event,
    ticket: u64,
}

impl Drop for AppendTurn<'_> {
    fn drop(&mut self) {
        self.queue.waiting.borrow_mut().retain(|&t| t != self.ticket);
        self.space_freed.notify(usize::MAX);
    }
}

/// What an append waits on: the bytes already waiting for a commit, the
/// event fired when a commit frees some, and whether the log closed.
pub(crate) struct Room<'a, F: Fn() -> usize> {
    pub pending_bytes: F,
    pub pending_max_bytes: usize,
    pub space_freed: &'a Event,
    pub closed: &'a Cell<bool>,
}

impl AppendQueue {
    /// Waits until an append of `bytes` may queue for the commit: it is
    /// first in line and fits under `pending_max_bytes` (or nothing waits
    /// for the disk). Leaving the queue wakes the next waiter, which runs
    /// after this append has taken its offsets, as long as the caller does
    /// not await before taking them.
    pub async fn wait_for_room<F: Fn() -> usize>(&self, bytes: usize, room: Room<'_, F>) -> Result<(), StorageError> {
        let mut turn: Option<AppendTurn<'_>> = None;
        loop {
            let first = match &turn {
                Some(t) => self.waiting.borrow().front() == Some(&t.ticket),
                None => self.waiting.borrow().is_empty(),
            };
            let pending = (room.pending_bytes)();
            if first && (pending == 0 || pending + bytes <= room.pending_max_bytes) {
                break;
            }
            let listener = room.space_freed.listen();
            if turn.is_none() {
                turn = Some(self.take_turn(room.space_freed));
            }
            if room.closed.get() {
                return Err(StorageError::Closed);
            }
            listener.await;
        }
        drop(turn);
        if room.closed.get() {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    fn take_turn<'a>(&'a self, space_freed: &'a Event) -> AppendTurn<'a> {
        let ticket = self.next_ticket.get();
        self.next_ticket.set(ticket.wrapping_add(1));
        self.waiting.borrow_mut().push_back(ticket);
        AppendTurn { queue: self, space_freed, ticket }
    }
}
