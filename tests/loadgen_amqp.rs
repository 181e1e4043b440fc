//! ringmq-loadgen's AMQP mode (`ringmq-loadgen amqp …`) against the real
//! broker's AMQP listener (`tests/common` starts it with `--amqp-listen
//! 127.0.0.1:0`): a closed loop delivers every confirmed message exactly
//! once, an open loop reports its latencies in summary.json, .hgrm and SVG,
//! a fanout delivers each message to every queue, and a bad URL, a refused
//! connection or a missing queue fail at once with a clear message.
//!
//! The load generator is the `ringmq-loadgen` file beside the broker binary
//! (`cargo build --release --workspace` builds both). The .hgrm and SVG
//! checkers at the end are the same as tests/loadgen.rs's.

mod common;
mod loadgen_checks;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use loadgen_checks::{
    assert_percentiles, check_hgrm, check_svg, describe, finish, read_summary, within_pct, Json, NumField,
};

use common::{Broker, BrokerOpts};

/// Runs that load a broker go one at a time, so that two of them do not
/// share the two cores and slow each other past their limits.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn loadgen_bin() -> PathBuf {
    let p = common::broker_bin().with_file_name("ringmq-loadgen");
    assert!(
        p.is_file(),
        "the load generator {} does not exist: build it with `cargo build --release --workspace` \
         (tests/run does) before running these tests",
        p.display()
    );
    p
}

/// Runs the load generator with `args`, killing it after `limit`.
fn run_loadgen(args: &[&str], limit: Duration) -> Output {
    let child: Child = Command::new(loadgen_bin())
        .arg("amqp")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringmq-loadgen");
    finish(child, limit)
}

/// A load run against `broker` with the common flags, then `extra`.
fn run_against(broker: &Broker, out_dir: &Path, extra: &[&str]) -> Output {
    let url = broker.amqp_url();
    let mut args = vec!["--url", url.as_str(), "--out", out_dir.to_str().expect("utf-8 path")];
    args.extend_from_slice(extra);
    run_loadgen(&args, Duration::from_secs(60))
}

/// The AMQP counts of a summary that must show a clean run: no nack, no
/// return, no redelivery, nothing left over from another run.
fn assert_clean_amqp(s: &Json, out: &Output) {
    let a = s.get("amqp").unwrap_or_else(|| panic!("summary has no amqp section\n{}", describe(out)));
    for k in ["nacked", "returned", "redelivered", "foreign", "ready_at_start"] {
        assert_eq!(a.num(k), Some(0.0), "amqp.{k}\n{}", describe(out));
    }
}

/// Deliveries per queue as summary.json's amqp.consumed_per_queue lists them.
fn consumed_per_queue(s: &Json) -> Vec<(String, f64)> {
    let list = s.get("amqp").and_then(|a| a.get("consumed_per_queue")).and_then(Json::as_array);
    list.expect("amqp.consumed_per_queue")
        .iter()
        .map(|q| {
            let name = q.get("queue").and_then(Json::as_str).expect("queue name").to_string();
            (name, q.num("consumed").expect("consumed"))
        })
        .collect()
}

fn broker() -> Broker {
    Broker::start(BrokerOpts::default())
}

fn temp_out(name: &str) -> tempfile::TempDir {
    common::test_tempdir(&format!("loadgen-amqp-{name}"))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[test]
fn a_closed_loop_run_delivers_every_confirmed_message_exactly_once() {
    let _serial = serial();
    let broker = broker();
    let dir = temp_out("closed");
    let out_dir = dir.path().join("out");
    let out = run_against(
        &broker,
        &out_dir,
        &["--queue", "lg-closed", "--declare", "--rate", "0", "--duration", "2s", "--warmup", "500ms"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let s = read_summary(&out_dir);
    let produced = s.num("produced").expect("produced");
    assert!(produced > 0.0, "nothing confirmed\n{}", describe(&out));
    assert_eq!(s.num("consumed"), Some(produced), "consumed\n{}", describe(&out));
    assert_eq!(consumed_per_queue(&s), vec![("lg-closed".to_string(), produced)]);
    assert_eq!(s.get("complete"), Some(&Json::Bool(true)));
    assert_eq!(s.get("mode").and_then(Json::as_str), Some("closed-loop"));
    assert_eq!(s.get("coordinated_omission_corrected"), Some(&Json::Bool(false)));
    assert_clean_amqp(&s, &out);
    let sent = s.num("sent").expect("sent");
    assert!(sent >= produced, "sent {sent} < produced {produced}");
    assert_percentiles(&s, "produce_latency_us", produced);
    assert_percentiles(&s, "e2e_latency_us", produced);
}

#[test]
fn an_open_loop_run_reports_its_latencies_and_writes_summary_hgrm_and_svg() {
    let _serial = serial();
    let broker = broker();
    let dir = temp_out("open");
    let out_dir = dir.path().join("out");
    let out = run_against(
        &broker,
        &out_dir,
        &["--queue", "lg-open", "--declare", "--rate", "1000", "--duration", "3s", "--warmup", "1s", "--size", "512"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let s = read_summary(&out_dir);
    let produced = s.num("produced").expect("produced");
    let consumed = s.num("consumed").expect("consumed");
    assert!(within_pct(produced, 3000.0, 1.0), "produced {produced}\n{}", describe(&out));
    assert_eq!(consumed, produced, "consumed\n{}", describe(&out));
    assert_eq!(s.num("duration_s"), Some(3.0));
    let throughput = s.num("throughput_msgs_per_s").expect("throughput_msgs_per_s");
    assert!(within_pct(throughput, 1000.0, 1.0), "throughput_msgs_per_s {throughput}");
    assert_eq!(s.get("complete"), Some(&Json::Bool(true)));
    assert_eq!(s.get("mode").and_then(Json::as_str), Some("open-loop"));
    assert_eq!(s.get("coordinated_omission_corrected"), Some(&Json::Bool(true)));
    assert_percentiles(&s, "produce_latency_us", produced);
    assert_percentiles(&s, "e2e_latency_us", consumed);
    assert_clean_amqp(&s, &out);
    let config = s.get("config").expect("config");
    assert_eq!(config.get("protocol").and_then(Json::as_str), Some("amqp"));
    assert_eq!(config.num("rate_msgs_per_s"), Some(1000.0));
    assert_eq!(config.num("confirm_window"), Some(192.0));
    assert_eq!(config.num("prefetch"), Some(200.0));
    assert_eq!(config.get("persistent"), Some(&Json::Bool(true)));
    let url = config.get("url").and_then(Json::as_str).expect("config.url");
    assert!(!url.contains("guest@") && url.contains(":***@"), "the password must not be in summary.json: {url}");

    for (file, count) in [("produce.hgrm", produced), ("e2e.hgrm", consumed)] {
        let text = fs::read_to_string(out_dir.join(file)).expect("read hgrm");
        let total =
            check_hgrm(&text).unwrap_or_else(|e| panic!("{file} is not a percentile distribution: {e}\n{text}"));
        assert_eq!(total as f64, count, "{file} total count");
    }
    let svg = fs::read_to_string(out_dir.join("latency.svg")).expect("read svg");
    check_svg(&svg).unwrap_or_else(|e| panic!("latency.svg is not well-formed: {e}"));
    assert!(svg.matches("<polyline").count() >= 2, "latency.svg needs a publish and an end-to-end curve");
    assert!(svg.contains("publish→confirm"), "latency.svg names the publish→confirm curve");
    let hlog = fs::read_to_string(out_dir.join("intervals.hlog")).expect("read hlog");
    assert!(hlog.lines().filter(|l| l.starts_with("Tag=produce,")).count() >= 3, "too few intervals:\n{hlog}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for col in ["p50", "p99", "p99.9", "max", "publish→confirm", "end-to-end", "throughput", "nacked 0"] {
        assert!(stdout.contains(col), "the final table lacks {col}:\n{stdout}");
    }
}

#[test]
fn a_fanout_to_three_queues_delivers_each_message_to_every_queue() {
    let _serial = serial();
    let broker = broker();
    let dir = temp_out("fanout");
    let out_dir = dir.path().join("out");
    let out = run_against(
        &broker,
        &out_dir,
        &["--queue", "lg-fan", "--declare", "--fanout", "3", "--rate", "500", "--duration", "2s", "--warmup", "500ms"],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let s = read_summary(&out_dir);
    let produced = s.num("produced").expect("produced");
    assert!(within_pct(produced, 1000.0, 1.0), "produced {produced}\n{}", describe(&out));
    assert_eq!(s.num("consumed"), Some(3.0 * produced), "each message once per queue\n{}", describe(&out));
    let per_queue = consumed_per_queue(&s);
    let want: Vec<(String, f64)> = (1..=3).map(|i| (format!("lg-fan-{i}"), produced)).collect();
    assert_eq!(per_queue, want, "\n{}", describe(&out));
    assert_clean_amqp(&s, &out);
    let config = s.get("config").expect("config");
    assert_eq!(config.get("exchange").and_then(Json::as_str), Some("lg-fan-fanout"));
}

#[test]
fn a_refused_connection_exits_nonzero_with_a_clear_message_and_a_summary() {
    // A port bound but never listening, held for the whole test: connections
    // to it are refused, and no broker started meanwhile can take it.
    let refuser = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    refuser.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind a port");
    let port = refuser.local_addr().ok().and_then(|a| a.as_socket()).expect("bound address").port();
    let dir = temp_out("refused");
    let out_dir = dir.path().join("out");
    let url = format!("amqp://guest:guest@127.0.0.1:{port}/");
    let out = run_loadgen(
        &["--url", &url, "--queue", "q", "--duration", "1s", "--out", out_dir.to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot connect to broker 127.0.0.1:{port}")), "{}", describe(&out));
    let s = read_summary(&out_dir);
    assert_eq!(s.get("complete"), Some(&Json::Bool(false)));
    assert!(s.get("error").and_then(Json::as_str).unwrap_or_default().contains("cannot connect"));
    assert_eq!(s.num("produced"), Some(0.0));
    check_svg(&fs::read_to_string(out_dir.join("latency.svg")).expect("read svg")).expect("well-formed SVG");
}

#[test]
fn a_malformed_url_exits_with_code_2_naming_the_flag() {
    let dir = temp_out("badurl");
    let out_dir = dir.path().join("out");
    for (url, why) in [("http://localhost/", "must start with amqp://"), ("amqp://localhost:99999/", "port")] {
        let out =
            run_loadgen(&["--url", url, "--queue", "q", "--out", out_dir.to_str().unwrap()], Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--url") && stderr.contains(why), "{url}: {}", describe(&out));
    }
}

#[test]
fn a_queue_that_does_not_exist_fails_the_run_at_once_unless_declared() {
    let _serial = serial();
    let broker = broker();
    let dir = temp_out("missing");
    let out_dir = dir.path().join("out");
    let out = run_against(&broker, &out_dir, &["--queue", "lg-nowhere", "--rate", "100", "--duration", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("queue 'lg-nowhere' does not exist") && stderr.contains("--declare"), "{}", describe(&out));
    assert_eq!(read_summary(&out_dir).get("complete"), Some(&Json::Bool(false)));
}
