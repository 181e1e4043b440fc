//! Back-pressure on appends: a bounded amount may wait for the disk
//! (`pending_max_bytes`), and appends that have to wait for room are served
//! in arrival order: a later, smaller one must not overtake (an idempotent
//! producer's sequences would arrive out of order). This module owns the
//! queue of waiting appends (their tickets).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use event_listener::Event;

use super::error::StorageError;

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
