//! ringmq-loadgen against the real broker binary: counts and well-formed
//! outputs of a constant-rate run, coordinated omission (a frozen broker must
//! show in the open-loop tail; a closed loop may hide it and must say so),
//! comparing runs with `plot`, and clear failures with partial results.
//!
//! The broker is `CARGO_BIN_EXE_ringmq`; the load generator is the
//! `ringmq-loadgen` file beside it, which `cargo build --release --workspace`
//! (run by tests/run) builds. A missing load generator fails the tests.
//!
//! summary.json is read with serde_json; .hgrm and SVG are checked with the
//! small parsers at the end of this file.

mod loadgen_checks;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use loadgen_checks::{
    assert_percentiles, check_hgrm, check_svg, describe, finish, read_summary, within_pct, Json, NumField,
};

/// Runs that put load on a broker go one at a time, so that timings are the
/// broker's and not the neighbour test's.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn broker_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringmq"))
}

fn loadgen_bin() -> PathBuf {
    let p = broker_bin().with_file_name("ringmq-loadgen");
    assert!(
        p.is_file(),
        "the load generator {} does not exist: build it with `cargo build --release --workspace` \
         (tests/run does) before running these tests",
        p.display()
    );
    p
}

/// A directory under the target dir (O_DIRECT-capable), removed unless the test failed.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let base = option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let p = base.join(format!("loadgen-{name}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).expect("create test dir");
        TestDir(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("[loadgen test] keeping {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A running `ringmq serve`.
struct Broker {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
}

impl Broker {
    fn start(dir: &Path, extra: &[&str]) -> Broker {
        let data = dir.join("data");
        fs::create_dir_all(&data).expect("create data dir");
        let log = dir.join("broker.log");
        let mut child = Command::new(broker_bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--amqp-listen",
                "off",
                "--metrics",
                "off",
                "--segment-bytes",
                "16777216",
                "--data-dir",
            ])
            .arg(&data)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(fs::File::create(&log).expect("create broker.log")))
            .spawn()
            .expect("spawn the broker");
        let stdout = child.stdout.take().expect("broker stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.trim().strip_prefix("ringmq ready listen=") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Broker { child: Some(child), addr, log },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the broker did not get ready in 30 s; log:\n{}", fs::read_to_string(&log).unwrap_or_default());
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("broker running").id()
    }

    fn signal(&self, sig: &str) {
        let st = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().expect("run kill");
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-CONT").arg(c.id().to_string()).status();
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
            eprintln!("[loadgen test] broker ignored SIGTERM; log in {}", self.log.display());
        }
    }
}

/// Starts the load generator with `args`; `run` waits for it (killing it
/// after `limit`) and returns its output.
fn spawn_loadgen(args: &[&str]) -> Child {
    Command::new(loadgen_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringmq-loadgen")
}

fn run_loadgen(args: &[&str], limit: Duration) -> Output {
    finish(spawn_loadgen(args), limit)
}

/// A load generator whose stderr is read as it comes, so that a test can act
/// at a point of the run (its progress lines) rather than after a guessed delay.
struct Watched {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: thread::JoinHandle<Vec<u8>>,
}

impl Watched {
    fn spawn(args: &[&str]) -> Watched {
        let mut child = spawn_loadgen(args);
        let stderr = child.stderr.take().expect("loadgen stderr");
        let (tx, lines) = mpsc::channel();
        let stderr = thread::spawn(move || {
            let mut all = Vec::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                all.extend_from_slice(line.as_bytes());
                all.push(b'\n');
                let _ = tx.send(line);
            }
            all
        });
        Watched { child, lines, stderr }
    }

    /// Waits for a stderr line for which `wanted` holds; panics naming `what`
    /// if none comes within LINE_TIMEOUT or the load generator exits first.
    fn wait_for_line(&self, what: &str, wanted: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + LINE_TIMEOUT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if wanted(&line) => return,
                Ok(_) => {}
                Err(e) => panic!("ringmq-loadgen printed no {what} ({e:?} after {LINE_TIMEOUT:?})"),
            }
        }
    }

    fn finish(self, limit: Duration) -> Output {
        let mut out = finish(self.child, limit);
        out.stderr = self.stderr.join().expect("stderr reader");
        out
    }
}

const LINE_TIMEOUT: Duration = Duration::from_secs(60);

/// The produce rate of a progress line (`[   2.0s]   produce   2000 msg/s ...`).
fn progress_rate(line: &str) -> Option<u64> {
    let rest = line.trim_start().strip_prefix('[')?.split_once("produce")?.1;
    rest.split_whitespace().next()?.parse().ok()
}

/// A progress line of the measured part of the run (after the warmup).
fn measured_progress(line: &str) -> bool {
    progress_rate(line).is_some() && !line.contains("warmup")
}

const OUTPUTS: [&str; 5] = ["summary.json", "produce.hgrm", "e2e.hgrm", "latency.svg", "intervals.hlog"];

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn a_ten_second_run_at_5000_msgs_per_s_produces_and_consumes_50000_and_writes_well_formed_files() {
    let _serial = serial();
    let dir = TestDir::new("rate");
    let broker = Broker::start(dir.path(), &[]);
    let out_dir = dir.path().join("out");
    let out = run_loadgen(
        &[
            "--bootstrap",
            &broker.addr,
            "--topic",
            "lg-rate",
            "--partitions",
            "2",
            "--rate",
            "5000",
            "--duration",
            "10s",
            "--warmup",
            "1s",
            "--size",
            "512",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", describe(&out));

    let s = read_summary(&out_dir);
    let produced = s.num("produced").expect("produced");
    let consumed = s.num("consumed").expect("consumed");
    assert!(within_pct(produced, 50_000.0, 1.0), "produced {produced}\n{}", describe(&out));
    assert!(within_pct(consumed, 50_000.0, 1.0), "consumed {consumed}\n{}", describe(&out));
    assert_eq!(s.num("duration_s"), Some(10.0));
    assert!(within_pct(s.num("throughput_msgs_per_s").expect("throughput_msgs_per_s"), 5000.0, 1.0));
    let mb = s.num("throughput_mb_per_s").expect("throughput_mb_per_s");
    assert!(within_pct(mb, 5000.0 * 512.0 / 1e6, 1.5), "throughput_mb_per_s {mb}");
    assert_eq!(s.get("complete"), Some(&Json::Bool(true)));
    assert_eq!(s.get("coordinated_omission_corrected"), Some(&Json::Bool(true)));
    assert_percentiles(&s, "produce_latency_us", produced);
    assert_percentiles(&s, "e2e_latency_us", consumed);

    for f in OUTPUTS {
        let p = out_dir.join(f);
        assert!(p.is_file() && fs::metadata(&p).map(|m| m.len() > 0).unwrap_or(false), "{f} missing or empty");
    }
    for (file, count) in [("produce.hgrm", produced), ("e2e.hgrm", consumed)] {
        let text = fs::read_to_string(out_dir.join(file)).expect("read hgrm");
        let total =
            check_hgrm(&text).unwrap_or_else(|e| panic!("{file} is not a percentile distribution: {e}\n{text}"));
        assert_eq!(total as f64, count, "{file} total count");
    }
    let svg = fs::read_to_string(out_dir.join("latency.svg")).expect("read svg");
    check_svg(&svg).unwrap_or_else(|e| panic!("latency.svg is not well-formed: {e}"));
    assert!(svg.matches("<polyline").count() >= 2, "latency.svg needs a produce and an end-to-end curve");
    for tick in ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
        assert!(svg.contains(&format!(">{tick}<")), "latency.svg lacks the {tick} tick");
    }
    let hlog = fs::read_to_string(out_dir.join("intervals.hlog")).expect("read hlog");
    assert!(
        hlog.lines().filter(|l| l.starts_with("Tag=produce,")).count() >= 9,
        "interval log has too few produce intervals:\n{hlog}"
    );

    let stdout = String::from_utf8_lossy(&out.stdout);
    for col in ["p50", "p90", "p99", "p99.9", "p99.99", "max", "produce", "end-to-end", "throughput"] {
        assert!(stdout.contains(col), "the final table lacks {col}:\n{stdout}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let progress = stderr.lines().filter(|l| l.contains("msg/s") && l.contains("MB/s") && l.contains("p99")).count();
    assert!(progress >= 10, "expected a progress line per second on stderr:\n{stderr}");
}

#[test]
fn a_frozen_broker_shows_in_the_open_loop_tail_as_produce_p99_of_at_least_one_second() {
    let _serial = serial();
    let dir = TestDir::new("co-open");
    let broker = Broker::start(dir.path(), &[]);
    let out_dir = dir.path().join("out");
    let run = Watched::spawn(&[
        "--bootstrap",
        &broker.addr,
        "--topic",
        "lg-co",
        "--rate",
        "2000",
        "--duration",
        "6s",
        "--warmup",
        "1s",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    // The stall lands in the measured 6 s: it starts after the first second of them.
    run.wait_for_line("progress line after the warmup", measured_progress);
    broker.signal("STOP");
    thread::sleep(Duration::from_millis(1500));
    broker.signal("CONT");
    let out = run.finish(Duration::from_secs(120));
    assert!(out.status.success(), "{}", describe(&out));
    let s = read_summary(&out_dir);
    let p99 = s.get("produce_latency_us").and_then(|p| p.num("p99")).expect("produce p99");
    assert!(p99 >= 1_000_000.0, "produce p99 {p99} µs hides the 1.5 s stall\n{}", describe(&out));
    let e2e_p99 = s.get("e2e_latency_us").and_then(|p| p.num("p99")).expect("e2e p99");
    assert!(e2e_p99 >= 1_000_000.0, "end-to-end p99 {e2e_p99} µs hides the 1.5 s stall");
    assert_eq!(s.get("coordinated_omission_corrected"), Some(&Json::Bool(true)));
    let produced = s.num("produced").expect("produced");
    assert!(within_pct(produced, 12_000.0, 1.0), "a stall must not lose scheduled messages: produced {produced}");
}

#[test]
fn a_closed_loop_run_may_hide_the_stall_and_says_so_in_its_summary() {
    let _serial = serial();
    let dir = TestDir::new("co-closed");
    let broker = Broker::start(dir.path(), &[]);
    let out_dir = dir.path().join("out");
    let run = Watched::spawn(&[
        "--bootstrap",
        &broker.addr,
        "--topic",
        "lg-closed",
        "--rate",
        "0",
        "--size",
        "100",
        "--duration",
        "4s",
        "--warmup",
        "500ms",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    run.wait_for_line("progress line after the warmup", measured_progress);
    broker.signal("STOP");
    thread::sleep(Duration::from_millis(1500));
    broker.signal("CONT");
    let out = run.finish(Duration::from_secs(120));
    assert!(out.status.success(), "{}", describe(&out));
    let s = read_summary(&out_dir);
    assert_eq!(s.get("coordinated_omission_corrected"), Some(&Json::Bool(false)), "{}", describe(&out));
    assert_eq!(s.get("mode").and_then(Json::as_str), Some("closed-loop"));
    let note = s.get("note").and_then(Json::as_str).unwrap_or_default();
    assert!(note.contains("coordinated omission NOT corrected"), "note: {note}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("coordinated omission NOT corrected"));
    assert!(s.num("produced").unwrap_or(0.0) > 0.0);
    eprintln!(
        "closed loop with a 1.5 s stall: produce p99 {} µs, max {} µs",
        s.get("produce_latency_us").and_then(|p| p.num("p99")).unwrap_or(-1.0),
        s.get("produce_latency_us").and_then(|p| p.num("max")).unwrap_or(-1.0)
    );
}

#[test]
fn a_run_given_a_baseline_reports_its_figures_as_ratios_to_it() {
    let _serial = serial();
    let dir = TestDir::new("baseline-ratios");
    let broker = Broker::start(dir.path(), &[]);
    // A baseline as `loadgen/baseline` writes it, with round figures so the
    // expected ratios are easy to state.
    let baseline = dir.path().join("baseline.json");
    fs::write(
        &baseline,
        r#"{"measured_at_unix_s":1,"kernel":"test","cores":2,"data_dir":"/d",
            "fio":[{"block_size":"4k","block_bytes":4096,"ops_per_s":10000.0,"us_per_op":100.0,"bytes_per_s":40960000.0,
                    "mib_per_s":39.0625,"write_p50_us":50.0,"fdatasync_p50_us":50.0,"fdatasync_p99_us":90.0},
                   {"block_size":"1m","block_bytes":1048576,"ops_per_s":1000.0,"us_per_op":1000.0,"bytes_per_s":1.0e9,
                    "mib_per_s":953.67,"write_p50_us":500.0,"fdatasync_p50_us":50.0,"fdatasync_p99_us":90.0}],
            "fio_paced":{"files":4,"rate_ops_per_s":2000,"ops_per_s":2000.0,"lat_p50_us":150.0,"lat_p99_us":400.0,"lat_p999_us":1000.0},
            "loopback_tcp":{"seconds":5,"bits_per_s":1.6e10,"bytes_per_s":2.0e9,"gbytes_per_s":2.0}}"#,
    )
    .expect("write baseline.json");
    let out_dir = dir.path().join("out");
    let out = run_loadgen(
        &[
            "--bootstrap",
            &broker.addr,
            "--topic",
            "lg-baseline",
            "--partitions",
            "4",
            "--rate",
            "1000",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--baseline",
            baseline.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let s = read_summary(&out_dir);
    let ratios = s.get("baseline").unwrap_or_else(|| panic!("summary has no baseline ratios: {s}"));
    let mb_per_s = s.num("throughput_mb_per_s").expect("throughput_mb_per_s");
    let p99_us = s.get("produce_latency_us").and_then(|p| p.num("p99")).expect("produce p99");
    let p50_us = s.get("produce_latency_us").and_then(|p| p.num("p50")).expect("produce p50");
    let close = |key: &str, expected: f64| {
        let got = ratios.num(key).unwrap_or_else(|| panic!("no {key} in {ratios}"));
        // Ratios are rounded to 3 decimals.
        assert!((got - expected).abs() <= 0.0005 + expected * 1e-9, "{key}: {got}, expected {expected}");
    };
    close("throughput_vs_fdatasync_1m", mb_per_s * 1e6 / 1.0e9);
    close("throughput_vs_loopback_tcp", mb_per_s * 1e6 / 2.0e9);
    close("produce_p50_vs_fdatasync_4k", p50_us / 100.0);
    close("produce_p99_vs_fio_paced_p99", p99_us / 400.0);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("paced 4 KiB O_DSYNC writes (2000 writes/s over 4 files: p99 400 us)"),
        "{}",
        describe(&out)
    );
}

#[test]
fn plot_draws_several_runs_on_one_chart_with_their_labels() {
    let _serial = serial();
    let dir = TestDir::new("plot");
    let broker = Broker::start(dir.path(), &[]);
    let mut runs = Vec::new();
    for acks in ["all", "1"] {
        let out_dir = dir.path().join(format!("acks-{acks}"));
        let out = run_loadgen(
            &[
                "--bootstrap",
                &broker.addr,
                "--topic",
                "lg-plot",
                "--rate",
                "1000",
                "--duration",
                "1s",
                "--warmup",
                "0s",
                "--acks",
                acks,
                "--out",
                out_dir.to_str().unwrap(),
            ],
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{}", describe(&out));
        runs.push(out_dir);
    }
    let chart = dir.path().join("compare.svg");
    let a = format!("acks=all={}", runs[0].display());
    let b = runs[1].to_str().unwrap().to_string();
    let out = run_loadgen(
        &["plot", &a, &b, "--out", chart.to_str().unwrap(), "--title", "acks compared"],
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let svg = fs::read_to_string(&chart).expect("read compare.svg");
    check_svg(&svg).unwrap_or_else(|e| panic!("compare.svg is not well-formed: {e}"));
    assert_eq!(svg.matches("<polyline").count(), 4, "two runs × produce and end-to-end");
    for label in ["acks=all: produce", "acks=all: end-to-end", "acks-1: produce", "acks-1: end-to-end", "acks compared"]
    {
        assert!(svg.contains(label), "compare.svg lacks the label {label}");
    }
    let missing = run_loadgen(
        &["plot", dir.path().join("nope").to_str().unwrap(), "--out", chart.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(missing.status.code(), Some(1), "{}", describe(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("produce.hgrm"), "{}", describe(&missing));
}

#[test]
fn a_broker_that_is_down_gives_a_clear_error_a_nonzero_exit_and_a_summary() {
    let dir = TestDir::new("down");
    // A port bound but never listening, held for the whole test: connections
    // to it are refused, and no broker started meanwhile can take it.
    let refuser = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    refuser.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind a port");
    let port = refuser.local_addr().ok().and_then(|a| a.as_socket()).expect("bound address").port();
    let bootstrap = format!("127.0.0.1:{port}");
    let out_dir = dir.path().join("out");
    let out = run_loadgen(
        &["--bootstrap", &bootstrap, "--topic", "t", "--duration", "2s", "--out", out_dir.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot connect to broker {bootstrap}")), "{}", describe(&out));
    let s = read_summary(&out_dir);
    assert_eq!(s.get("complete"), Some(&Json::Bool(false)));
    assert!(s.get("error").and_then(Json::as_str).unwrap_or_default().contains("cannot connect"));
    assert_eq!(s.num("produced"), Some(0.0));
    for f in ["produce.hgrm", "e2e.hgrm", "latency.svg"] {
        assert!(out_dir.join(f).is_file(), "{f} missing after a failed run");
    }
    check_hgrm(&fs::read_to_string(out_dir.join("produce.hgrm")).expect("read"))
        .expect("an empty .hgrm is still valid");
    check_svg(&fs::read_to_string(out_dir.join("latency.svg")).expect("read"))
        .expect("the SVG of a failed run is well-formed");
}

#[test]
fn an_unknown_topic_with_auto_create_off_fails_clearly_with_partial_results() {
    let _serial = serial();
    let dir = TestDir::new("unknown-topic");
    let broker = Broker::start(dir.path(), &["--auto-create-topics", "false"]);
    let out_dir = dir.path().join("out");
    let out = run_loadgen(
        &[
            "--bootstrap",
            &broker.addr,
            "--topic",
            "lg-missing",
            "--create-topic",
            "false",
            "--duration",
            "2s",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("topic 'lg-missing' does not exist"), "{}", describe(&out));
    let s = read_summary(&out_dir);
    assert_eq!(s.get("complete"), Some(&Json::Bool(false)));
    assert!(s.get("error").and_then(Json::as_str).unwrap_or_default().contains("does not exist"));
}

#[test]
fn bad_flags_fail_with_a_message_naming_the_flag_and_exit_code_2() {
    let dir = TestDir::new("flags");
    for (flag, value) in
        [("--acks", "2"), ("--size", "3"), ("--duration", "10parsecs"), ("--rate", "-5"), ("--bogus", "1")]
    {
        let out_dir = dir.path().join(flag.trim_start_matches('-'));
        let out = run_loadgen(
            &["--bootstrap", "127.0.0.1:9", "--topic", "t", flag, value, "--out", out_dir.to_str().unwrap()],
            Duration::from_secs(30),
        );
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: the message should name the flag\n{}", describe(&out));
        let s = read_summary(&out_dir);
        assert_eq!(s.get("complete"), Some(&Json::Bool(false)));
        assert!(s.get("error").and_then(Json::as_str).unwrap_or_default().contains(flag), "{flag}: summary error");
    }
}

#[test]
fn a_broker_killed_mid_run_leaves_partial_results_and_a_nonzero_exit() {
    let _serial = serial();
    let dir = TestDir::new("killed");
    let mut broker = Broker::start(dir.path(), &[]);
    let out_dir = dir.path().join("out");
    let run = Watched::spawn(&[
        "--bootstrap",
        &broker.addr,
        "--topic",
        "lg-killed",
        "--rate",
        "2000",
        "--duration",
        "5s",
        "--warmup",
        "0s",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    // Killed once messages are being acknowledged, well before the 5 s end.
    run.wait_for_line("progress line with acknowledged messages", |l| progress_rate(l).is_some_and(|r| r > 0));
    broker.kill9();
    let out = run.finish(Duration::from_secs(120));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"), "{}", describe(&out));
    let s = read_summary(&out_dir);
    assert_eq!(s.get("complete"), Some(&Json::Bool(false)));
    assert!(!s.get("error").and_then(Json::as_str).unwrap_or_default().is_empty());
    let produced = s.num("produced").expect("produced");
    assert!(produced > 0.0 && produced < 10_000.0, "partial results: produced {produced}");
    let duration = s.num("duration_s").expect("duration_s");
    assert!(duration > 0.0 && duration < 5.0, "partial duration {duration}");
    let text = fs::read_to_string(out_dir.join("produce.hgrm")).expect("read produce.hgrm");
    assert_eq!(check_hgrm(&text).expect("valid hgrm") as f64, produced);
}

#[test]
fn the_output_checkers_reject_malformed_files() {
    assert!(check_svg(r#"<svg xmlns="http://www.w3.org/2000/svg"><g><line/></g></svg>"#).is_ok());
    assert!(check_svg(r#"<svg xmlns="http://www.w3.org/2000/svg"><g></svg>"#).is_err());
    assert!(check_svg(r#"<svg xmlns="http://www.w3.org/2000/svg"><text>a & b</text></svg>"#).is_err());
    assert!(check_svg(r#"<html></html>"#).is_err());
    assert!(check_hgrm("       Value     Percentile TotalCount 1/(1-Percentile)\n\n#[Max     =        0.000, Total count    =            0]\n").is_ok());
    assert!(check_hgrm("garbage").is_err());
    assert_eq!(
        serde_json::from_str::<Json>(r#"{"a": [1, -2.5e3, "x\"y"], "b": null}"#).ok().map(|j| j.num("a")),
        Some(None)
    );
    assert!(serde_json::from_str::<Json>(r#"{"a": 1,}"#).is_err());
}
