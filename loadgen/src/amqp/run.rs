//! One AMQP load run from start to finish: queues and exchange set up on a
//! setup connection, consumers consuming before anything is published,
//! producers on the same schedule as the Kafka mode's, the per-second
//! monitor, the drain (until every queue delivered every measured message,
//! or `--drain-timeout`), and the same outputs as a Kafka run, written
//! whatever happened.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::config::{AmqpConfig, AmqpSettings};
use super::conn::Connection;
use super::consumer::Consumer;
use super::producer::Producer;
use super::stats::AmqpStats;
use super::topology;
use crate::error::Error;
use crate::histo::{Clock, Window};
use crate::producer::Schedule;
use crate::report::{self, RunSettings};
use crate::run::{join_all, summary_of, Ending, Monitor};
use crate::shared::Shared;

/// Delay between the end of setup and the first due message.
const START_DELAY: Duration = Duration::from_millis(20);
/// How often the monitor wakes between ticks.
const MONITOR_POLL: Duration = Duration::from_millis(20);

const CLOSED_NOTE: &str = "closed loop (--rate 0): each message is timed from its creation and at most --confirm-window publishes are unconfirmed per connection, so a stalled broker slows the sender instead of showing in the tail (coordinated omission NOT corrected)";

/// Runs the load and writes every output; `Err` when the run failed (the
/// outputs are written then too).
pub fn command(cfg: AmqpConfig) -> Result<(), Error> {
    std::fs::create_dir_all(&cfg.out).map_err(Error::file("cannot create the output directory", &cfg.out))?;
    let shared = Arc::new(Shared::new(Clock::new(), rand::random()));
    let stats = Arc::new(AmqpStats::new(&cfg.queues));
    let cfg = Arc::new(cfg);
    let mut monitor = Monitor::new(&cfg.out, cfg.size, cfg.consumers > 0, shared.clone());
    let mut notes = Vec::new();
    let outcome = execute(&cfg, &shared, &stats, &mut monitor, &mut notes);
    let failure = match outcome {
        Err(e) => Some(e),
        Ok(()) => shared.take_failure(),
    };
    let counts = stats.snapshot();
    notes.extend(counts.notes());
    if cfg.confirm_window == 0 {
        notes.push(
            "--confirm-window 0: no confirms; publish latency is the time until the message was written to the socket"
                .to_string(),
        );
    }
    if cfg.delay_ms.is_some() {
        notes.push(
            "--delay-ms: end-to-end latency still counts from the intended send time, the delay included".to_string(),
        );
    }
    let ended_ns = shared.clock.now_ns();
    let mut summary = summary_of(Ending {
        shared: &shared,
        monitor: &monitor,
        settings: RunSettings::Amqp(AmqpSettings::of(&cfg)),
        duration: cfg.duration,
        size: cfg.size,
        closed_note: CLOSED_NOTE,
        notes,
        error: failure.as_ref().map(|e| e.to_string()),
        ended_ns,
    });
    summary.amqp = Some(counts);
    print!("{}", report::table(&summary));
    report::write_outputs(&cfg.out, &summary, &shared.produce.total(), &shared.e2e.total())?;
    eprintln!("ringmq-loadgen: results in {}", cfg.out.display());
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn execute(
    cfg: &Arc<AmqpConfig>,
    shared: &Arc<Shared>,
    stats: &Arc<AmqpStats>,
    monitor: &mut Monitor,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    let mut setup = Connection::open(&cfg.url, &format!("{}-setup", cfg.client_id), cfg.request_timeout)?;
    let ready = topology::prepare(&mut setup, cfg)?;
    stats.ready_at_start.store(ready, Ordering::Relaxed);
    setup.close();

    // Consumers consume before anything is published.
    let mut consumers = Vec::new();
    for (q, _) in cfg.queues.iter().enumerate() {
        for _ in 0..cfg.consumers {
            let index = consumers.len();
            consumers.push(Consumer::connect(index, q, cfg.clone(), shared.clone(), stats.clone())?);
        }
    }
    let start_ns = shared.clock.now_ns() + START_DELAY.as_nanos() as u64;
    let window = Window {
        start_ns: start_ns + cfg.warmup.as_nanos() as u64,
        end_ns: start_ns + (cfg.warmup + cfg.duration).as_nanos() as u64,
    };
    shared.set_window(window);
    let mut producers = Vec::new();
    for i in 0..cfg.producers {
        let schedule = Schedule::new(start_ns, window.end_ns, cfg.rate, cfg.producers, i);
        producers.push(Producer::connect(i, cfg.clone(), shared.clone(), stats.clone(), schedule)?);
    }
    let mut consumer_threads = Vec::new();
    for c in consumers {
        consumer_threads.push(c.spawn()?);
    }
    let mut producer_threads = Vec::new();
    for p in producers {
        match p.spawn() {
            Ok(h) => producer_threads.push(h),
            Err(e) => {
                shared.fail(e);
                break;
            }
        }
    }
    monitor.start(start_ns);
    drain(cfg, shared, monitor, &producer_threads, notes);
    shared.consumers_stop.store(true, Ordering::SeqCst);
    join_all("producer", producer_threads, shared);
    join_all("consumer", consumer_threads, shared);
    monitor.finish();
    if let Some(e) = monitor.log_error.take() {
        notes.push(format!("the interval log is incomplete: {e}"));
    }
    Ok(())
}

/// Runs the monitor until the producers are done and every queue delivered
/// what was published in the window (or the drain timeout passed).
fn drain(
    cfg: &AmqpConfig,
    shared: &Shared,
    monitor: &mut Monitor,
    producers: &[JoinHandle<()>],
    notes: &mut Vec<String>,
) {
    let mut deadline: Option<Instant> = None;
    loop {
        monitor.poll();
        if shared.stopped() {
            return;
        }
        if deadline.is_none() && producers.iter().all(JoinHandle::is_finished) {
            deadline = Some(Instant::now() + cfg.drain_timeout);
        }
        if let Some(deadline) = deadline {
            let expected = shared.produced() * cfg.deliveries_per_message();
            if shared.consumed() >= expected {
                return;
            }
            if Instant::now() >= deadline {
                notes.push(format!(
                    "consumers received {} of the {expected} deliveries due ({} messages × {} queue(s)) within the {:?} drain timeout",
                    shared.consumed(),
                    shared.produced(),
                    cfg.queues.len(),
                    cfg.drain_timeout
                ));
                return;
            }
        }
        thread::sleep(MONITOR_POLL);
    }
}
