//! The executor's task and timer primitives for code outside `runtime/`,
//! `net/` and `storage/`, which keeps glommio's types out of the protocol
//! layers: spawning a task on this shard, sleeping, a deadline around a
//! future, a bounded local channel and a FIFO semaphore.

use std::future::Future;
use std::time::Duration;

/// Runs `future` on this shard, detached: it lives until it completes.
pub fn spawn<F: Future<Output = ()> + 'static>(future: F) {
    glommio::spawn_local(future).detach();
}

/// A task on this shard whose result can be awaited.
pub struct Task<T>(glommio::task::JoinHandle<T>);

impl<T> Task<T> {
    /// Its result; `None` if it was cancelled.
    pub async fn join(self) -> Option<T> {
        self.0.await
    }
}

/// Runs `future` on this shard and returns a handle to await its result.
pub fn spawn_joinable<T: 'static, F: Future<Output = T> + 'static>(future: F) -> Task<T> {
    Task(glommio::spawn_local(future).detach())
}

/// Lets the shard's other tasks run before this one goes on.
pub async fn yield_now() {
    futures_lite::future::yield_now().await;
}

pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// `future`'s output, or `None` once `duration` passed.
pub async fn timeout<T>(duration: Duration, future: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(duration).await;
        None
    })
    .await
}

/// A bounded single-shard channel: `send` waits while it holds `capacity`.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let (tx, rx) = glommio::channels::local_channel::new_bounded(capacity);
    (Sender(tx), Receiver(rx))
}

pub struct Sender<T>(glommio::channels::local_channel::LocalSender<T>);
pub struct Receiver<T>(glommio::channels::local_channel::LocalReceiver<T>);

impl<T> Sender<T> {
    /// Waits for room; `Err` with the value when the receiver is gone.
    pub async fn send(&self, value: T) -> Result<(), T> {
        self.0.send(value).await.map_err(|e| match e {
            glommio::GlommioError::Closed(glommio::ResourceType::Channel(v)) => v,
            glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(v)) => v,
            other => panic!("local channel send failed unexpectedly: {other}"),
        })
    }

    /// Sends without waiting; `Err` with the value when full or closed.
    pub fn try_send(&self, value: T) -> Result<(), T> {
        self.0.try_send(value).map_err(|e| match e {
            glommio::GlommioError::Closed(glommio::ResourceType::Channel(v)) => v,
            glommio::GlommioError::WouldBlock(glommio::ResourceType::Channel(v)) => v,
            other => panic!("local channel try_send failed unexpectedly: {other}"),
        })
    }

    pub fn is_full(&self) -> bool {
        self.0.is_full()
    }
}

impl<T> Receiver<T> {
    /// The next value; `None` once every sender is gone and it is empty.
    pub async fn recv(&self) -> Option<T> {
        self.0.recv().await
    }
}

/// A semaphore whose waiters are served first come, first served; shared
/// (`Rc`) so that a permit can move into a spawned task.
pub struct Semaphore(std::rc::Rc<glommio::sync::Semaphore>);

/// Permits held until dropped.
pub struct Permit(#[allow(dead_code)] glommio::sync::StaticPermit);

impl Clone for Semaphore {
    fn clone(&self) -> Semaphore {
        Semaphore(self.0.clone())
    }
}

impl Semaphore {
    pub fn new(permits: u64) -> Semaphore {
        Semaphore(std::rc::Rc::new(glommio::sync::Semaphore::new(permits)))
    }

    /// `None` when the semaphore was closed.
    pub async fn acquire(&self, permits: u64) -> Option<Permit> {
        self.0.acquire_static_permit(permits).await.ok().map(Permit)
    }

    pub fn available(&self) -> u64 {
        self.0.available()
    }

    /// Wakes every waiter with `None`.
    pub fn close(&self) {
        self.0.close();
    }
}

/// Runs `future` to completion on a fresh single-shard executor on this
/// thread (tests and tools; the broker's shards are made by `runtime`).
pub fn run_local<T: 'static, F: Future<Output = T> + 'static>(future: F) -> T {
    match glommio::LocalExecutorBuilder::default().make() {
        Ok(ex) => ex.run(future),
        Err(e) => panic!("cannot make an executor: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    /// Spawns a task that takes `permits` of `sem`, records `name` and
    /// gives them back.
    fn taker(sem: &Semaphore, permits: u64, name: &'static str, order: &Rc<RefCell<Vec<&'static str>>>) -> Task<()> {
        let (sem, order) = (sem.clone(), order.clone());
        spawn_joinable(async move {
            let _permit = sem.acquire(permits).await;
            order.borrow_mut().push(name);
        })
    }

    #[test]
    fn a_woken_waiter_is_not_overtaken_by_a_task_that_comes_meanwhile() {
        let order = run_local(async {
            let sem = Semaphore::new(1);
            let order = Rc::new(RefCell::new(Vec::new()));
            let held = sem.acquire(1).await;
            let first = taker(&sem, 1, "first", &order);
            sleep(Duration::from_millis(1)).await; // `first` waits now
            drop(held); // wakes `first`, which has not run yet when...
            let again = sem.acquire(1).await; // ...this task asks again
            order.borrow_mut().push("second");
            drop(again);
            first.join().await;
            Rc::try_unwrap(order).map(RefCell::into_inner).unwrap_or_default()
        });
        assert_eq!(order, ["first", "second"]);
    }

    #[test]
    fn a_smaller_later_request_does_not_overtake_a_larger_waiting_one() {
        let order = run_local(async {
            let sem = Semaphore::new(4);
            let order = Rc::new(RefCell::new(Vec::new()));
            let held = sem.acquire(3).await;
            let large = taker(&sem, 4, "large", &order);
            sleep(Duration::from_millis(1)).await;
            let small = taker(&sem, 1, "small", &order);
            sleep(Duration::from_millis(1)).await;
            drop(held);
            large.join().await;
            small.join().await;
            Rc::try_unwrap(order).map(RefCell::into_inner).unwrap_or_default()
        });
        assert_eq!(order, ["large", "small"]);
    }

    #[test]
    fn a_waiter_dropped_after_it_was_woken_passes_its_permit_on() {
        let next_got_it = run_local(async {
            let sem = Semaphore::new(1);
            let held = sem.acquire(1).await;
            let mut quitter = Box::pin(sem.acquire(1));
            assert!(futures_lite::future::poll_once(&mut quitter).await.is_none(), "it waits");
            let next = {
                let sem = sem.clone();
                spawn_joinable(async move { timeout(Duration::from_secs(5), sem.acquire(1)).await.is_some() })
            };
            sleep(Duration::from_millis(1)).await; // `next` waits behind it
            drop(held); // hands the permit to `quitter`...
            drop(quitter); // ...which goes without taking it
            next.join().await
        });
        assert_eq!(next_got_it, Some(true));
    }
}
