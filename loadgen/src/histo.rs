//! Latency histograms: the run's clock, the shared recorders that producer
//! and consumer threads write into (a per-second interval histogram and a
//! measured-window total per metric), HdrHistogram's percentile-distribution
//! text format (`.hgrm`, written and parsed back) and the interval log.
//!
//! Values are recorded in microseconds; `.hgrm` files show milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Highest latency recorded (one hour, in µs); larger values are clamped.
pub const MAX_US: u64 = 3_600_000_000;
/// `.hgrm` values are in ms: µs divided by this.
pub const HGRM_SCALE: f64 = 1000.0;

/// A fresh latency histogram (µs, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants known to be valid.
    Histogram::new_with_bounds(1, MAX_US, 3).unwrap_or_else(|_| unreachable!("constant histogram bounds are valid"))
}

/// The run's time base: every intended send time is ns since `epoch`.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub epoch: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { epoch: Instant::now() }
    }
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }
}

/// The part of the run that counts: messages whose intended send time lies in
/// `[start_ns, end_ns)`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Window {
    pub fn contains(&self, ns: u64) -> bool {
        ns >= self.start_ns && ns < self.end_ns
    }
}

/// One latency metric shared by threads: the current interval (every
/// message, for the progress line and the interval log) and the total over
/// the measured window.
pub struct Metric {
    interval: Mutex<Histogram<u64>>,
    total: Mutex<Histogram<u64>>,
    /// Messages recorded in the current interval / in the window.
    pub interval_count: AtomicU64,
    pub window_count: AtomicU64,
}

impl Default for Metric {
    fn default() -> Self {
        Metric {
            interval: Mutex::new(new_histogram()),
            total: Mutex::new(new_histogram()),
            interval_count: AtomicU64::new(0),
            window_count: AtomicU64::new(0),
        }
    }
}

/// Latencies of one batch of messages, gathered before taking the locks once.
#[derive(Default)]
pub struct Samples {
    /// (latency µs, in the measured window)
    pub values: Vec<(u64, bool)>,
}

impl Samples {
    pub fn push(&mut self, latency_ns: u64, measured: bool) {
        self.values.push((latency_ns / 1000, measured));
    }
    pub fn clear(&mut self) {
        self.values.clear();
    }
}

impl Metric {
    /// Records a batch of samples (one lock per histogram).
    pub fn record(&self, samples: &Samples) {
        if samples.values.is_empty() {
            return;
        }
        let mut measured = 0u64;
        {
            let mut h = lock(&self.interval);
            for &(v, _) in &samples.values {
                h.saturating_record(v.min(MAX_US));
            }
        }
        {
            let mut t = lock(&self.total);
            for &(v, m) in &samples.values {
                if m {
                    t.saturating_record(v.min(MAX_US));
                    measured += 1;
                }
            }
        }
        self.interval_count.fetch_add(samples.values.len() as u64, Ordering::Relaxed);
        self.window_count.fetch_add(measured, Ordering::Relaxed);
    }

    /// Takes the current interval histogram and starts a new one.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut h = lock(&self.interval);
        let out = h.clone();
        h.reset();
        self.interval_count.store(0, Ordering::Relaxed);
        out
    }

    /// A copy of the measured-window total.
    pub fn total(&self) -> Histogram<u64> {
        lock(&self.total).clone()
    }
}

/// Locks a mutex, going on with the data if another thread panicked while
/// holding it (histograms stay consistent enough to report).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The percentiles every report shows, in µs.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// HdrHistogram's percentile-distribution text (as Java's
/// `outputPercentileDistribution(out, 5, 1000.0)` writes it): values in ms.
pub fn hgrm_text(h: &Histogram<u64>) -> String {
    use std::fmt::Write;
    let digits = 3usize;
    let mut s = String::new();
    let _ = write!(s, "{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    if !h.is_empty() {
        let mut total: u64 = 0;
        let mut last_q = 0.0;
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / HGRM_SCALE;
            let q = v.quantile_iterated_to();
            last_q = q;
            if q < 1.0 {
                let _ = writeln!(s, "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(s, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
        if last_q < 1.0 {
            let value = h.highest_equivalent(h.max()) as f64 / HGRM_SCALE;
            let _ = writeln!(s, "{value:>12.digits$} {:>2.12} {:>10}", 1.0, h.len());
        }
    }
    let (mean, stdev) = if h.is_empty() { (0.0, 0.0) } else { (h.mean() / HGRM_SCALE, h.stdev() / HGRM_SCALE) };
    let _ = writeln!(s, "#[Mean    = {mean:>12.digits$}, StdDeviation   = {stdev:>12.digits$}]");
    let _ = writeln!(s, "#[Max     = {:>12.digits$}, Total count    = {:>12}]", h.max() as f64 / HGRM_SCALE, h.len());
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        (2 * 10u64.pow(h.sigfig() as u32)).next_power_of_two()
    );
    s
}

/// One point of a percentile curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CurvePoint {
    /// Percentile as a fraction, 0 ≤ q ≤ 1.
    pub quantile: f64,
    pub value_ms: f64,
}

/// Parses `.hgrm` text (this tool's, or any HdrHistogram
/// percentile-distribution output) into curve points.
pub fn parse_hgrm(text: &str) -> Result<Vec<CurvePoint>, String> {
    let mut points = Vec::new();
    let mut saw_header = false;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("Value") {
            saw_header = true;
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 3 {
            return Err(format!("line {}: expected 'value percentile totalcount [1/(1-p)]', got '{line}'", n + 1));
        }
        let value_ms: f64 = cols[0].parse().map_err(|_| format!("line {}: bad value '{}'", n + 1, cols[0]))?;
        let quantile: f64 = cols[1].parse().map_err(|_| format!("line {}: bad percentile '{}'", n + 1, cols[1]))?;
        let _count: u64 = cols[2].parse().map_err(|_| format!("line {}: bad total count '{}'", n + 1, cols[2]))?;
        if !(0.0..=1.0).contains(&quantile) || !value_ms.is_finite() {
            return Err(format!("line {}: percentile {quantile} or value {value_ms} out of range", n + 1));
        }
        points.push(CurvePoint { quantile, value_ms });
    }
    if !saw_header {
        return Err("no 'Value Percentile TotalCount' header: not a percentile distribution".to_string());
    }
    Ok(points)
}

/// Curve points straight from a histogram (same iteration as the `.hgrm`).
pub fn curve_of(h: &Histogram<u64>) -> Vec<CurvePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut pts: Vec<CurvePoint> = h
        .iter_quantiles(5)
        .map(|v| CurvePoint {
            quantile: v.quantile_iterated_to(),
            value_ms: h.highest_equivalent(v.value_iterated_to()) as f64 / HGRM_SCALE,
        })
        .collect();
    if pts.last().is_some_and(|p| p.quantile < 1.0) {
        pts.push(CurvePoint { quantile: 1.0, value_ms: h.highest_equivalent(h.max()) as f64 / HGRM_SCALE });
    }
    pts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_output_parses_back_to_the_same_curve() {
        let mut h = new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 10).expect("record");
        }
        let text = hgrm_text(&h);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"), "{text}");
        assert!(text.contains("#[Max     =      100.031, Total count    =        10000]"), "{text}");
        let pts = parse_hgrm(&text).expect("parse");
        assert_eq!(pts.len(), curve_of(&h).len());
        assert_eq!(pts.last().map(|p| p.quantile), Some(1.0));
        let p50 = pts.iter().find(|p| p.quantile >= 0.5).map(|p| p.value_ms).unwrap_or(0.0);
        assert!((p50 - 50.0).abs() < 0.1, "p50 {p50}");
    }

    #[test]
    fn an_empty_histogram_still_writes_a_valid_hgrm() {
        let text = hgrm_text(&new_histogram());
        assert_eq!(parse_hgrm(&text).expect("parse"), Vec::new());
    }

    #[test]
    fn garbage_is_not_a_percentile_distribution() {
        assert!(parse_hgrm("hello world\n").is_err());
        assert!(parse_hgrm("Value Percentile TotalCount\n1.0 x 3\n").is_err());
    }
}
