//! State shared by the run's threads: the clock and measured window, the
//! latency metrics, the stop flags, the first failure, and the sockets to
//! shut down when the run is aborted.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::Error;
use crate::histo::{lock, Clock, Metric, Window};

pub struct Shared {
    pub clock: Clock,
    /// The measured window, set before any producer or consumer starts.
    window_start_ns: AtomicU64,
    window_end_ns: AtomicU64,
    /// Identifies this run's records (consumers skip others).
    pub run_id: u32,
    /// Abort: a thread failed, every thread stops.
    pub stop: AtomicBool,
    /// The producers are done and the consumers caught up (or gave up).
    pub consumers_stop: AtomicBool,
    failure: Mutex<Option<Error>>,
    sockets: Mutex<Vec<TcpStream>>,
    /// Produce ack latency (acks=0: until the request was written).
    pub produce: Metric,
    /// Intended send time → consumer received it.
    pub e2e: Metric,
    /// Intended send time → request written (the generator's own delay:
    /// linger, batching, in-flight limit, scheduling).
    pub send_delay: Metric,
    /// Messages written to a socket (all, warmup included).
    pub sent: AtomicU64,
    /// Messages acknowledged (all, warmup included).
    pub acked: AtomicU64,
}

impl Shared {
    pub fn new(clock: Clock, run_id: u32) -> Shared {
        Shared {
            clock,
            window_start_ns: AtomicU64::new(u64::MAX),
            window_end_ns: AtomicU64::new(u64::MAX),
            run_id,
            stop: AtomicBool::new(false),
            consumers_stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            sockets: Mutex::new(Vec::new()),
            produce: Metric::default(),
            e2e: Metric::default(),
            send_delay: Metric::default(),
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
        }
    }

    /// Sets the measured window (before the threads start).
    pub fn set_window(&self, w: Window) {
        self.window_start_ns.store(w.start_ns, Ordering::SeqCst);
        self.window_end_ns.store(w.end_ns, Ordering::SeqCst);
    }

    pub fn window(&self) -> Window {
        Window {
            start_ns: self.window_start_ns.load(Ordering::Relaxed),
            end_ns: self.window_end_ns.load(Ordering::Relaxed),
        }
    }

    /// Records the first failure and stops every thread.
    pub fn fail(&self, e: Error) {
        {
            let mut f = lock(&self.failure);
            if f.is_none() {
                *f = Some(e);
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        self.consumers_stop.store(true, Ordering::SeqCst);
        // Wake threads blocked on a socket.
        for s in lock(&self.sockets).iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn take_failure(&self) -> Option<Error> {
        lock(&self.failure).take()
    }

    /// Keeps a handle on a connection so that `fail` can shut it down.
    pub fn register_socket(&self, s: TcpStream) {
        lock(&self.sockets).push(s);
    }

    /// Messages produced in the measured window (acked, or written with acks=0).
    pub fn produced(&self) -> u64 {
        self.produce.window_count.load(Ordering::Relaxed)
    }

    /// Messages of the measured window that consumers received.
    pub fn consumed(&self) -> u64 {
        self.e2e.window_count.load(Ordering::Relaxed)
    }
}
