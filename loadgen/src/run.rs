//! One load run from start to finish: topic setup, consumers positioned at
//! the latest offsets, producers on their schedule, a progress line and an
//! interval-log entry per second, the drain, and the outputs, which are
//! written whatever happened (a failed run's summary says why it failed).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::baseline::Baseline;
use crate::cli::{RunArgs, RunConfig};
use crate::client::{ConnectOptions, Connection};
use crate::cluster::{prepare_topic, TopicRequest};
use crate::consumer::Consumer;
use crate::error::Error;
use crate::histo::{new_histogram, Clock, Percentiles, Window};
use crate::producer::{Producer, Schedule};
use crate::report::{self, ConfigSummary, IntervalSummary, RunSettings, Summary};
use crate::shared::Shared;

/// Delay between the end of setup and the first due message.
const START_DELAY: Duration = Duration::from_millis(20);
/// How often the monitor wakes between ticks.
const MONITOR_POLL: Duration = Duration::from_millis(20);

pub const FILES: [&str; 5] = ["summary.json", "produce.hgrm", "e2e.hgrm", "latency.svg", "intervals.hlog"];

/// Runs the load and writes every output; `Err` when the run failed (the
/// outputs are written then too).
pub fn command(cfg: RunConfig) -> Result<(), Error> {
    std::fs::create_dir_all(&cfg.out).map_err(Error::file("cannot create the output directory", &cfg.out))?;
    let baseline = match &cfg.baseline {
        Some(p) => match Baseline::load(p) {
            Ok(b) => Some(b),
            Err(e) => {
                write_failure(&cfg.out, RunSettings::Kafka(ConfigSummary::of(&cfg)), &e.to_string());
                return Err(e);
            }
        },
        None => None,
    };
    let clock = Clock::new();
    let run_id: u32 = rand::random();
    let shared = Arc::new(Shared::new(clock, run_id));
    let cfg = Arc::new(cfg);
    let mut monitor = Monitor::new(&cfg.out, cfg.size, cfg.consumers > 0, shared.clone());
    let mut notes = Vec::new();
    let outcome = execute(&cfg, &shared, &mut monitor, &mut notes);
    let failure = match outcome {
        Err(e) => Some(e),
        Ok(()) => shared.take_failure(),
    };
    let ended_ns = shared.clock.now_ns();
    let summary =
        summarize(&cfg, &shared, &monitor, notes, failure.as_ref().map(|e| e.to_string()), ended_ns, baseline.as_ref());
    print!("{}", report::table(&summary));
    report::write_outputs(&cfg.out, &summary, &shared.produce.total(), &shared.e2e.total())?;
    eprintln!("ringmq-loadgen: results in {}", cfg.out.display());
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn execute(
    cfg: &Arc<RunConfig>,
    shared: &Arc<Shared>,
    monitor: &mut Monitor,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    let opts = ConnectOptions { client_id: cfg.client_id.clone(), request_timeout: cfg.request_timeout };
    let mut bootstrap = Connection::connect(&cfg.bootstrap, &opts)?;
    let layout = prepare_topic(
        &mut bootstrap,
        &TopicRequest {
            topic: cfg.topic.clone(),
            partitions: cfg.partitions,
            create: cfg.create_topic,
            timeout: cfg.request_timeout,
        },
    )?;
    drop(bootstrap);
    if !layout.created && layout.partitions.len() as i32 != cfg.partitions {
        notes.push(format!(
            "topic {} already existed with {} partitions; --partitions {} was not applied",
            cfg.topic,
            layout.partitions.len(),
            cfg.partitions
        ));
    }
    if cfg.consumers > layout.partitions.len() {
        notes.push(format!(
            "{} consumers for {} partitions: {} consumer(s) idle",
            cfg.consumers,
            layout.partitions.len(),
            cfg.consumers - layout.partitions.len()
        ));
    }
    let layout = Arc::new(layout);

    // Consumers take their start offsets before anything is produced.
    let mut consumers = Vec::new();
    for i in 0..cfg.consumers {
        consumers.push(Consumer::connect(i, cfg.clone(), &layout, shared.clone())?);
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
        producers.push(Producer::connect(i, cfg.clone(), layout.clone(), shared.clone(), schedule)?);
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

    // Produce, then let the consumers catch up.
    let mut drain_deadline: Option<Instant> = None;
    loop {
        monitor.poll();
        if shared.stopped() {
            break;
        }
        if drain_deadline.is_none() && producer_threads.iter().all(JoinHandle::is_finished) {
            drain_deadline = Some(Instant::now() + cfg.drain_timeout);
        }
        if let Some(deadline) = drain_deadline {
            if cfg.consumers == 0 || shared.consumed() >= shared.produced() {
                break;
            }
            if Instant::now() >= deadline {
                notes.push(format!(
                    "consumers received {} of {} produced messages within the {:?} drain timeout",
                    shared.consumed(),
                    shared.produced(),
                    cfg.drain_timeout
                ));
                break;
            }
        }
        thread::sleep(MONITOR_POLL);
    }
    shared.consumers_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    join_all("producer", producer_threads, shared);
    join_all("consumer", consumer_threads, shared);
    monitor.finish();
    if let Some(e) = monitor.log_error.take() {
        notes.push(format!("the interval log is incomplete: {e}"));
    }
    Ok(())
}

pub fn join_all(role: &'static str, handles: Vec<JoinHandle<()>>, shared: &Shared) {
    for h in handles {
        if let Err(p) = h.join() {
            let detail = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            shared.fail(Error::Panic { role, detail });
        }
    }
}

/// Per-second bookkeeping: progress line, interval log, interval summaries.
pub struct Monitor {
    shared: Arc<Shared>,
    size: usize,
    consumers: bool,
    start: Option<Instant>,
    start_ns: u64,
    next_tick: u32,
    last_tick_ns: u64,
    log: Option<IntervalLog>,
    pub log_error: Option<String>,
    intervals: Vec<IntervalSummary>,
}

/// intervals.hlog: HdrHistogram interval log, tags produce / e2e (with a
/// `-warmup` suffix during the warmup), values in µs.
struct IntervalLog {
    out: BufWriter<File>,
    serializer: V2DeflateSerializer,
    header_written: bool,
    start: SystemTime,
}

impl IntervalLog {
    fn write(&mut self, h: &Histogram<u64>, start: Duration, len: Duration, tag: &str) -> Result<(), String> {
        let mut b = IntervalLogWriterBuilder::new();
        if !self.header_written {
            b.add_comment("ringmq-loadgen interval log: values in microseconds; tags produce, e2e (suffix -warmup during the warmup)");
            b.with_start_time(self.start).with_base_time(self.start).with_max_value_divisor(1000.0);
            self.header_written = true;
        }
        let mut w = b.begin_log_with(&mut self.out, &mut self.serializer).map_err(|e| e.to_string())?;
        w.write_histogram(h, start, len, Tag::new(tag)).map_err(|e| format!("{e:?}"))
    }
}

impl Monitor {
    /// Writes `intervals.hlog` into `out`; `size` is the message size
    /// (for MB/s), `consumers` whether end-to-end figures are shown.
    pub fn new(out: &Path, size: usize, consumers: bool, shared: Arc<Shared>) -> Monitor {
        let path = out.join("intervals.hlog");
        let (log, log_error) = match File::create(&path) {
            Ok(f) => (
                Some(IntervalLog {
                    out: BufWriter::new(f),
                    serializer: V2DeflateSerializer::new(),
                    header_written: false,
                    start: SystemTime::now(),
                }),
                None,
            ),
            Err(e) => (None, Some(format!("cannot create {}: {e}", path.display()))),
        };
        Monitor {
            shared,
            size,
            consumers,
            start: None,
            start_ns: 0,
            next_tick: 1,
            last_tick_ns: 0,
            log,
            log_error,
            intervals: Vec::new(),
        }
    }

    pub fn start(&mut self, start_ns: u64) {
        self.start = Some(self.shared.clock.instant_at(start_ns));
        self.start_ns = start_ns;
        self.last_tick_ns = start_ns;
        if let Some(log) = self.log.as_mut() {
            log.start = SystemTime::now() + Duration::from_nanos(start_ns.saturating_sub(self.shared.clock.now_ns()));
        }
        // Samples recorded before the start (none expected) go to the first interval.
    }

    /// Takes an interval when a second boundary has passed.
    pub fn poll(&mut self) {
        let Some(start) = self.start else { return };
        let tick_at = start + Duration::from_secs(self.next_tick as u64);
        if Instant::now() >= tick_at {
            let end_ns = self.start_ns + self.next_tick as u64 * 1_000_000_000;
            self.take(end_ns);
            self.next_tick += 1;
        }
    }

    /// The last, partial interval.
    pub fn finish(&mut self) {
        if self.start.is_none() {
            return;
        }
        // The last, partial interval, unless it is empty and negligible.
        let now = self.shared.clock.now_ns();
        let pending = self.shared.produce.interval_count.load(std::sync::atomic::Ordering::Relaxed)
            + self.shared.e2e.interval_count.load(std::sync::atomic::Ordering::Relaxed);
        if now > self.last_tick_ns && pending > 0 {
            self.take(now);
        }
        if let Some(mut log) = self.log.take() {
            use std::io::Write;
            if let Err(e) = log.out.flush() {
                self.log_error.get_or_insert(e.to_string());
            }
        }
    }

    fn take(&mut self, end_ns: u64) {
        let produce = self.shared.produce.take_interval();
        let e2e = self.shared.e2e.take_interval();
        let warmup = end_ns <= self.shared.window().start_ns;
        let p = Percentiles::of(&produce);
        let e = Percentiles::of(&e2e);
        let iv = IntervalSummary {
            t_s: ((end_ns - self.start_ns) as f64 / 1e9 * 1000.0).round() / 1000.0,
            seconds: (end_ns.saturating_sub(self.last_tick_ns) as f64 / 1e9 * 1000.0).round() / 1000.0,
            warmup,
            produced: produce.len(),
            consumed: e2e.len(),
            produce_p50_us: p.p50,
            produce_p99_us: p.p99,
            produce_max_us: p.max,
            e2e_p50_us: e.p50,
            e2e_p99_us: e.p99,
            e2e_max_us: e.max,
        };
        eprintln!("{}", report::progress_line(&iv, self.size, self.consumers));
        let from = Duration::from_nanos(self.last_tick_ns.saturating_sub(self.start_ns));
        let len = Duration::from_nanos(end_ns.saturating_sub(self.last_tick_ns));
        let suffix = if warmup { "-warmup" } else { "" };
        if let Some(log) = self.log.as_mut() {
            let r = log
                .write(&produce, from, len, &format!("produce{suffix}"))
                .and_then(|_| log.write(&e2e, from, len, &format!("e2e{suffix}")));
            if let Err(e) = r {
                self.log_error = Some(e);
                self.log = None;
            }
        }
        self.last_tick_ns = end_ns;
        self.intervals.push(iv);
    }
}

fn summarize(
    cfg: &RunConfig,
    shared: &Shared,
    monitor: &Monitor,
    mut notes: Vec<String>,
    error: Option<String>,
    ended_ns: u64,
    baseline: Option<&Baseline>,
) -> Summary {
    if cfg.acks == 0 {
        notes.push("acks=0: produce latency is the time until the request was written to the socket (no acknowledgement exists)".to_string());
    }
    let mut s = summary_of(Ending {
        shared,
        monitor,
        settings: RunSettings::Kafka(ConfigSummary::of(cfg)),
        duration: cfg.duration,
        size: cfg.size,
        closed_note: "closed loop (--rate 0): each message is timed from its creation and at most --max-in-flight requests are in flight per connection, so a stalled broker slows the sender instead of showing in the tail (coordinated omission NOT corrected)",
        notes,
        error,
        ended_ns,
    });
    if let (Some(b), Some(path)) = (baseline, cfg.baseline.as_ref()) {
        s.baseline = Some(report::ratios(path, b, &s));
    }
    s
}

/// What a finished run's summary is made of, whatever the protocol.
pub struct Ending<'a> {
    pub shared: &'a Shared,
    pub monitor: &'a Monitor,
    pub settings: RunSettings,
    /// The measured window's length as asked for.
    pub duration: Duration,
    pub size: usize,
    /// The note of a closed-loop run (what bounds the sender).
    pub closed_note: &'static str,
    pub notes: Vec<String>,
    pub error: Option<String>,
    pub ended_ns: u64,
}

/// The summary of a run from its shared state: counts over the measured
/// window (shortened when the run failed), rates and percentiles.
pub fn summary_of(e: Ending) -> Summary {
    let shared = e.shared;
    let window = shared.window();
    let full = e.duration.as_secs_f64();
    let duration_s = if e.error.is_none() {
        full
    } else if window.start_ns == u64::MAX || e.ended_ns <= window.start_ns {
        0.0
    } else {
        ((e.ended_ns - window.start_ns) as f64 / 1e9).min(full)
    };
    let produced = shared.produced();
    let consumed = shared.consumed();
    let per_s = |n: u64| {
        if duration_s > 0.0 {
            ((n as f64 / duration_s) * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    let closed = e.settings.rate_msgs_per_s() == 0.0;
    let note = if closed {
        e.closed_note.to_string()
    } else {
        "open loop: latency counts from each message's intended send time, so a stalled broker shows in the tail (coordinated omission corrected)".to_string()
    };
    Summary {
        tool: "ringmq-loadgen".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        complete: e.error.is_none(),
        error: e.error,
        mode: if closed { "closed-loop" } else { "open-loop" }.to_string(),
        coordinated_omission_corrected: !closed,
        note,
        notes: e.notes,
        config: e.settings,
        produced,
        consumed,
        sent: shared.sent.load(std::sync::atomic::Ordering::Relaxed),
        acked: shared.acked.load(std::sync::atomic::Ordering::Relaxed),
        duration_s: (duration_s * 1000.0).round() / 1000.0,
        throughput_msgs_per_s: per_s(produced),
        throughput_mb_per_s: if duration_s > 0.0 {
            ((produced as f64 * e.size as f64 / duration_s / 1e6) * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        consumed_msgs_per_s: per_s(consumed),
        produce_latency_us: Percentiles::of(&shared.produce.total()),
        e2e_latency_us: Percentiles::of(&shared.e2e.total()),
        send_delay_us: Percentiles::of(&shared.send_delay.total()),
        files: FILES.iter().map(|f| f.to_string()).collect(),
        baseline: None,
        amqp: None,
        intervals: e.monitor.intervals.clone(),
    }
}

/// A run that could not start (bad flags, unreadable baseline): the outputs
/// still appear, with zero counts and the reason.
pub fn write_failure(dir: &Path, config: RunSettings, error: &str) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let summary = Summary {
        tool: "ringmq-loadgen".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        complete: false,
        error: Some(error.to_string()),
        mode: if config.rate_msgs_per_s() == 0.0 { "closed-loop" } else { "open-loop" }.to_string(),
        coordinated_omission_corrected: config.rate_msgs_per_s() != 0.0,
        note: "the run did not start".to_string(),
        notes: Vec::new(),
        config,
        produced: 0,
        consumed: 0,
        sent: 0,
        acked: 0,
        duration_s: 0.0,
        throughput_msgs_per_s: 0.0,
        throughput_mb_per_s: 0.0,
        consumed_msgs_per_s: 0.0,
        produce_latency_us: Percentiles::default(),
        e2e_latency_us: Percentiles::default(),
        send_delay_us: Percentiles::default(),
        files: FILES[..4].iter().map(|f| f.to_string()).collect(),
        baseline: None,
        amqp: None,
        intervals: Vec::new(),
    };
    let empty = new_histogram();
    if let Err(e) = report::write_outputs(dir, &summary, &empty, &empty) {
        eprintln!("ringmq-loadgen: {e}");
    }
}

/// The settings as far as they could be read from flags that failed checks.
pub fn config_of_args(a: &RunArgs) -> ConfigSummary {
    ConfigSummary {
        bootstrap: a.bootstrap.clone().unwrap_or_default(),
        topic: a.topic.clone().unwrap_or_default(),
        partitions: a.partitions,
        producers: a.producers,
        consumers: a.consumers,
        size_bytes: a.size,
        rate_msgs_per_s: a.rate,
        duration_s: a.duration.as_secs_f64(),
        warmup_s: a.warmup.as_secs_f64(),
        acks: report::acks_name(a.acks).to_string(),
        key_distribution: a.key_distribution.to_string(),
        keys: a.keys,
        batch_max_bytes: a.batch_max_bytes,
        linger_us: a.linger_us,
        compression: a.compression.name().to_string(),
        max_in_flight: a.max_in_flight,
    }
}
