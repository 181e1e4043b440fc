//! Shared harness for ringmq's integration tests: starts the real `ringmq`
//! binary on ephemeral ports, and wraps the real Kafka clients (rdkafka) and
//! the on-disk segment format the tests look at.
//!
//! The binary is `CARGO_BIN_EXE_ringmq` (set by cargo when these files live in
//! the ringmq package), else the `RINGMQ_BIN` environment variable.
//! Temporary directories go under `CARGO_TARGET_TMPDIR` (the target
//! directory's disk, which supports O_DIRECT, unlike a tmpfs `/tmp`), else
//! `RINGMQ_TEST_TMPDIR`, else the system temp dir. A test that panics keeps
//! its directory and prints the tail of `broker.log`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// How long a broker may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for one client round trip (metadata, watermarks, admin).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `wait_for` waits for a condition the broker reaches on its own
/// (retention, a file written in the background): generous, for a busy machine.
pub const CONDITION_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Locating things
// ---------------------------------------------------------------------------

/// Path of the broker binary under test.
pub fn broker_bin() -> PathBuf {
    let p = match option_env!("CARGO_BIN_EXE_ringmq") {
        Some(p) => PathBuf::from(p),
        None => match std::env::var_os("RINGMQ_BIN") {
            Some(p) => PathBuf::from(p),
            None => panic!(
                "no broker binary: these tests need CARGO_BIN_EXE_ringmq (cargo sets it when the \
                 tests are part of the ringmq package) or RINGMQ_BIN=/path/to/ringmq"
            ),
        },
    };
    assert!(p.is_file(), "broker binary {} does not exist", p.display());
    p
}

/// A fresh temporary directory on a disk that supports O_DIRECT.
pub fn test_tempdir(prefix: &str) -> tempfile::TempDir {
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("RINGMQ_TEST_TMPDIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    fs::create_dir_all(&base).expect("create test temp base dir");
    tempfile::Builder::new().prefix(&format!("ringmq-{prefix}-")).tempdir_in(&base).expect("create temp dir")
}

/// A topic name unique to this process and call.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A shared tokio runtime for the async parts of rdkafka (admin, futures).
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
    })
}

// ---------------------------------------------------------------------------
// The broker process
// ---------------------------------------------------------------------------

/// Command-line options of one broker.
#[derive(Clone, Debug)]
pub struct BrokerOpts {
    /// Use this data dir instead of `<tempdir>/data`.
    pub data_dir: Option<PathBuf>,
    pub default_partitions: Option<u32>,
    pub auto_create_topics: Option<bool>,
    /// Segment size; the harness default is 16 MiB so that preallocating
    /// segments stays cheap on a small CI disk (the broker's own default is
    /// 128 MiB). `None` leaves the broker's default.
    pub segment_bytes: Option<u64>,
    pub flush: Option<String>,
    pub extra_args: Vec<String>,
}

impl Default for BrokerOpts {
    fn default() -> Self {
        BrokerOpts {
            data_dir: None,
            default_partitions: None,
            auto_create_topics: None,
            segment_bytes: Some(16 << 20),
            flush: None,
            extra_args: Vec::new(),
        }
    }
}

impl BrokerOpts {
    pub fn default_partitions(mut self, n: u32) -> Self {
        self.default_partitions = Some(n);
        self
    }
    pub fn auto_create_topics(mut self, on: bool) -> Self {
        self.auto_create_topics = Some(on);
        self
    }
    pub fn segment_bytes(mut self, n: u64) -> Self {
        self.segment_bytes = Some(n);
        self
    }
    pub fn flush(mut self, f: &str) -> Self {
        self.flush = Some(f.to_string());
        self
    }
    pub fn data_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(d.into());
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.extra_args.push(a.to_string());
        self
    }
}

/// A running `ringmq serve` process with its own temp dir.
pub struct Broker {
    opts: BrokerOpts,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    addr: SocketAddr,
    /// The AMQP listener's address (from the ready line's `amqp=`).
    amqp_addr: Option<SocketAddr>,
    starts: u32,
    /// Every line the broker printed on stdout, over all its runs.
    stdout_lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Broker {
    /// Starts a broker on an ephemeral port and waits for its ready line.
    pub fn start(opts: BrokerOpts) -> Broker {
        let dir = test_tempdir("broker");
        let root = dir.path().to_path_buf();
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| root.join("data"));
        fs::create_dir_all(&data_dir).expect("create data dir");
        let log_path = root.join("broker.log");
        let mut b = Broker {
            opts,
            child: None,
            dir: Some(dir),
            root,
            data_dir,
            log_path,
            addr: "127.0.0.1:0".parse().unwrap(),
            amqp_addr: None,
            starts: 0,
            stdout_lines: Default::default(),
        };
        b.spawn("127.0.0.1:0".to_string());
        b
    }

    /// `127.0.0.1:PORT` the broker listens on.
    /// The AMQP listener's `HOST:PORT`.
    pub fn amqp_addr(&self) -> String {
        self.amqp_addr.expect("the broker's ready line named no AMQP listener").to_string()
    }

    /// `amqp://guest:guest@HOST:PORT/` for clients.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/", self.amqp_addr())
    }

    pub fn addr(&self) -> String {
        self.addr.to_string()
    }
    pub fn socket_addr(&self) -> SocketAddr {
        self.addr
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Everything the broker wrote to stderr so far, over all its runs.
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    }

    /// The body of `GET /metrics` (Prometheus text) from the metrics address
    /// the broker logged last; panics unless the answer is `200`.
    pub fn metrics(&self) -> String {
        use std::io::Write;
        let log = self.log();
        let addr = log
            .lines()
            .rev()
            .find_map(|l| l.split("metrics=").nth(1))
            .and_then(|s| s.split_whitespace().next())
            .expect("metrics address in broker.log")
            .to_string();
        let mut s = std::net::TcpStream::connect(&addr).expect("connect metrics");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        let (head, body) = text.split_once("\r\n\r\n").expect("http response");
        assert!(head.starts_with("HTTP/1.0 200"), "{head}");
        body.to_string()
    }

    /// The last `n` lines of broker.log.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(n);
        lines[from..].join("\n")
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Panics (with the log) unless the process is still running.
    pub fn assert_running(&mut self) {
        if let Some(c) = self.child.as_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                panic!("broker exited unexpectedly with {st}\n--- broker.log (tail) ---\n{}", self.log_tail(200));
            }
        } else {
            panic!("broker is not running (stopped or killed by the test)");
        }
    }

    /// SIGKILL, then reap. Panics if the broker had already exited.
    pub fn kill9(&mut self) {
        self.assert_running();
        let mut c = self.child.take().unwrap();
        c.kill().expect("SIGKILL broker");
        let _ = c.wait();
    }

    /// SIGTERM and wait for a clean exit (status 0) within STOP_TIMEOUT.
    pub fn stop(&mut self) -> ExitStatus {
        self.assert_running();
        let mut c = self.child.take().unwrap();
        let pid = c.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child, which has not been reaped.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed: {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match c.try_wait() {
                Ok(Some(st)) => {
                    assert!(
                        st.success(),
                        "broker exited with {st} after SIGTERM (expected a clean exit)\n--- broker.log (tail) ---\n{}",
                        self.log_tail(100)
                    );
                    return st;
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!(
                        "broker did not exit within {STOP_TIMEOUT:?} of SIGTERM\n--- broker.log (tail) ---\n{}",
                        self.log_tail(100)
                    );
                }
            }
        }
    }

    /// Starts the broker again on the same data dir and the same port. If it
    /// is still running it is stopped with SIGTERM first.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let listen = self.addr.to_string();
        self.spawn(listen);
    }

    /// Starts the broker with the same data dir and port, and new options
    /// (e.g. other flags). Must not be running.
    pub fn restart_with(&mut self, opts: BrokerOpts) {
        assert!(self.child.is_none(), "restart_with: broker still running");
        let data_dir = self.data_dir.clone();
        self.opts = opts;
        self.opts.data_dir = Some(data_dir);
        let listen = self.addr.to_string();
        self.spawn(listen);
    }

    fn command(&self, listen: &str) -> Command {
        let mut cmd = Command::new(broker_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(listen)
            .arg("--metrics")
            .arg("127.0.0.1:0");
        if let Some(n) = self.opts.default_partitions {
            cmd.arg("--default-partitions").arg(n.to_string());
        }
        if let Some(on) = self.opts.auto_create_topics {
            cmd.arg("--auto-create-topics").arg(on.to_string());
        }
        if let Some(n) = self.opts.segment_bytes {
            cmd.arg("--segment-bytes").arg(n.to_string());
        }
        if let Some(f) = &self.opts.flush {
            cmd.arg("--flush").arg(f);
        }
        // The AMQP listener on a free port (the same one again on restarts),
        // unless the test chose.
        if !self.opts.extra_args.iter().any(|a| a == "--amqp-listen") {
            let amqp = self.amqp_addr.map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
            cmd.arg("--amqp-listen").arg(amqp);
        }
        cmd.args(&self.opts.extra_args);
        cmd
    }

    fn spawn(&mut self, listen: String) {
        // A restart on a fixed port can, very rarely, find the port taken by
        // a client's ephemeral socket; retry only that case, briefly.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.try_spawn(&listen) {
                Ok(()) => return,
                Err(why) => {
                    let in_use = listen != "127.0.0.1:0"
                        && self.log_since_last_start().to_lowercase().contains("address already in use");
                    if in_use && attempts < 5 {
                        eprintln!("[harness] broker could not bind {listen} (attempt {attempts}), retrying");
                        thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                    panic!(
                        "broker failed to start (listen {listen}): {why}\ncommand: {:?}\n--- broker.log ---\n{}",
                        self.command(&listen),
                        self.log_tail(300)
                    );
                }
            }
        }
    }

    fn log_since_last_start(&self) -> String {
        let log = self.log();
        let marker = format!("=== harness: start #{} ", self.starts);
        match log.rfind(&marker) {
            Some(i) => log[i..].to_string(),
            None => log,
        }
    }

    fn try_spawn(&mut self, listen: &str) -> Result<(), String> {
        self.starts += 1;
        let mut log = OpenOptions::new().create(true).append(true).open(&self.log_path).expect("open broker.log");
        writeln!(log, "=== harness: start #{} listen={listen} ===", self.starts).unwrap();
        let mut cmd = self.command(listen);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        let mut child = cmd.spawn().map_err(|e| format!("spawn {:?}: {e}", broker_bin()))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        let lines = self.stdout_lines.clone();
        thread::spawn(move || {
            // Keeps draining stdout for the whole life of the process.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    if let Some(rest) = line.trim().strip_prefix("ringmq ready listen=") {
                        let mut fields = rest.split_whitespace();
                        let kafka = fields.next().unwrap_or_default();
                        if let Some(amqp) = fields.find_map(|f| f.strip_prefix("amqp=")) {
                            self.amqp_addr = amqp.parse().ok();
                        }
                        let addr: SocketAddr = match kafka.parse() {
                            Ok(a) => a,
                            Err(e) => {
                                let _ = child.kill();
                                let _ = child.wait();
                                return Err(format!("unparsable ready line {line:?}: {e}"));
                            }
                        };
                        if listen != "127.0.0.1:0" && addr.to_string() != listen {
                            let _ = child.kill();
                            let _ = child.wait();
                            return Err(format!("asked for {listen} but broker says {addr}"));
                        }
                        assert_ne!(addr.port(), 0, "ready line with port 0: {line:?}");
                        self.addr = addr;
                        self.child = Some(child);
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the process is exiting; fall through to try_wait.
                    thread::sleep(Duration::from_millis(50));
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("broker exited with {st} before printing its ready line"));
            }
            if Instant::now() > deadline {
                // Where it is stuck, before the evidence goes.
                let threads = thread_dump(child.id());
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "no `ringmq ready listen=` line within {READY_TIMEOUT:?}; its threads then:\n{threads}"
                ));
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let mut exited = None;
        if let Some(mut c) = self.child.take() {
            if let Ok(Some(st)) = c.try_wait() {
                exited = Some(st);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if thread::panicking() {
            if let Some(st) = exited {
                eprintln!("[harness] the broker (pid of the last start) had already exited on its own: {st}");
            }
            eprintln!(
                "--- broker.log tail ({}) ---\n{}\n--- end of broker.log ---",
                self.log_path.display(),
                self.log_tail(150)
            );
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!("[harness] kept test dir {}", kept.display());
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Kafka clients
// ---------------------------------------------------------------------------

pub fn client_config(addr: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", addr)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "30000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000");
    c
}

/// An acks=all producer without idempotence (tests that want it pass
/// `("enable.idempotence", "true")`), so that retries stay visible to the tests.
pub fn producer(addr: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = client_config(addr);
    c.set("acks", "all")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "60000")
        .set("request.timeout.ms", "30000")
        .set("linger.ms", "5");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("create producer")
}

/// A consumer that only uses `assign` with explicit offsets: it never
/// subscribes, joins a group or commits. librdkafka's `assign` refuses to work
/// without a group.id ("Local: Unknown group"), so one is set, unique per
/// consumer, but no group API is ever needed for reading.
pub fn consumer(addr: &str) -> BaseConsumer {
    let mut c = client_config(addr);
    c.set("group.id", unique_topic("ringmq-itest-assign-only"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "error")
        .set("enable.partition.eof", "false")
        .set("check.crcs", "true")
        .set("fetch.wait.max.ms", "200");
    c.create().expect("create consumer")
}

pub fn admin(addr: &str) -> AdminClient<DefaultClientContext> {
    client_config(addr).create().expect("create admin client")
}

/// CreateTopics through the admin API; panics on any error.
pub fn create_topic(addr: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(addr);
    let mut t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        t = t.set(k, v);
    }
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let res = rt().block_on(admin.create_topics(&[t], &opts)).unwrap_or_else(|e| panic!("CreateTopics {name}: {e}"));
    assert_eq!(res.len(), 1);
    match &res[0] {
        Ok(n) => assert_eq!(n, name),
        Err((n, code)) => panic!("CreateTopics {n} failed: {code:?}"),
    }
}

/// Partition count of a topic from Metadata (panics on a topic error).
pub fn partition_count(addr: &str, topic: &str) -> usize {
    let c = consumer(addr);
    let md = c.fetch_metadata(Some(topic), CLIENT_TIMEOUT).unwrap_or_else(|e| panic!("metadata for {topic}: {e}"));
    let t =
        md.topics().iter().find(|t| t.name() == topic).unwrap_or_else(|| panic!("topic {topic} missing from metadata"));
    assert!(t.error().is_none(), "metadata error for {topic}: {:?}", t.error());
    let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    ids.sort();
    assert_eq!(ids, (0..ids.len() as i32).collect::<Vec<_>>(), "partition ids of {topic}");
    ids.len()
}

/// (low, high) watermarks of one partition.
pub fn watermarks(addr: &str, topic: &str, partition: i32) -> (i64, i64) {
    let c = consumer(addr);
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    loop {
        match c.fetch_watermarks(topic, partition, Duration::from_secs(10)) {
            Ok(w) => return w,
            Err(e) if Instant::now() < deadline => {
                eprintln!("[harness] fetch_watermarks {topic}/{partition}: {e}; retrying");
                thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("fetch_watermarks {topic}/{partition}: {e}"),
        }
    }
}

/// One record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// Reads partitions from the beginning until each reaches its `end` offset
/// (exclusive). Panics if that takes longer than `timeout`, or if a record
/// at or past `end` appears.
pub fn read_partitions(addr: &str, topic: &str, ends: &[(i32, i64)], timeout: Duration) -> BTreeMap<i32, Vec<Rec>> {
    let c = consumer(addr);
    let mut tpl = TopicPartitionList::new();
    let mut out: BTreeMap<i32, Vec<Rec>> = BTreeMap::new();
    for &(p, end) in ends {
        out.insert(p, Vec::new());
        if end > 0 {
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
    }
    if tpl.count() == 0 {
        return out;
    }
    c.assign(&tpl).expect("assign");
    let ends_map: BTreeMap<i32, i64> = ends.iter().copied().collect();
    let done = |out: &BTreeMap<i32, Vec<Rec>>| {
        ends_map.iter().all(|(p, end)| *end == 0 || out[p].last().map(|r| r.offset + 1 >= *end).unwrap_or(false))
    };
    let deadline = Instant::now() + timeout;
    let mut errors = 0u32;
    while !done(&out) {
        if Instant::now() > deadline {
            let progress: Vec<String> =
                ends_map.iter().map(|(p, end)| format!("p{p}: {} of {end}", out[p].len())).collect();
            panic!("reading {topic} timed out after {timeout:?}: {}", progress.join(", "));
        }
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let p = m.partition();
                let end = ends_map[&p];
                assert!(
                    m.offset() < end,
                    "{topic}/{p}: read offset {} at or beyond the expected end {end}",
                    m.offset()
                );
                out.get_mut(&p).unwrap().push(Rec {
                    offset: m.offset(),
                    key: m.key().map(|k| k.to_vec()),
                    payload: m.payload().map(|v| v.to_vec()),
                });
            }
            Some(Err(e)) => {
                errors += 1;
                assert!(errors < 1000, "too many consumer errors, last: {e}");
                if errors <= 5 || errors.is_multiple_of(100) {
                    eprintln!("[harness] consumer error #{errors} on {topic}: {e}");
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
    out
}

/// Reads one partition from the beginning up to its current high watermark.
pub fn read_all(addr: &str, topic: &str, partition: i32, timeout: Duration) -> Vec<Rec> {
    let (_, hw) = watermarks(addr, topic, partition);
    read_partitions(addr, topic, &[(partition, hw)], timeout).remove(&partition).unwrap()
}

/// Produces one message and waits for its acknowledgement; returns its offset.
pub fn produce_one(p: &FutureProducer, topic: &str, partition: i32, key: Option<&[u8]>, payload: &[u8]) -> i64 {
    let mut rec = FutureRecord::<[u8], [u8]>::to(topic).partition(partition).payload(payload);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    match rt().block_on(p.send(rec, Duration::from_secs(30))) {
        Ok((part, off)) => {
            assert_eq!(part, partition);
            off
        }
        Err((e, _)) => panic!("produce to {topic}/{partition} failed: {e}"),
    }
}

/// Sends many messages (pipelined), waits for all acks and returns
/// (partition, offset) of each, in input order. Panics on any failure.
pub fn produce_many(
    p: &FutureProducer,
    topic: &str,
    msgs: impl IntoIterator<Item = (i32, Option<Vec<u8>>, Vec<u8>)>,
) -> Vec<(i32, i64)> {
    let mut futs = Vec::new();
    for (part, key, payload) in msgs {
        let mut rec = FutureRecord::<[u8], [u8]>::to(topic).partition(part).payload(&payload);
        if let Some(k) = key.as_deref() {
            rec = rec.key(k);
        }
        let start = Instant::now();
        loop {
            match p.send_result(rec) {
                Ok(f) => {
                    futs.push(f);
                    break;
                }
                Err((e, r)) => {
                    assert!(start.elapsed() < Duration::from_secs(60), "could not enqueue for 60 s: {e}");
                    rec = r;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    rt().block_on(async move {
        let mut out = Vec::with_capacity(futs.len());
        for (i, f) in futs.into_iter().enumerate() {
            match f.await {
                Ok(Ok((part, off))) => out.push((part, off)),
                Ok(Err((e, _))) => panic!("message #{i} to {topic} failed: {e}"),
                Err(_) => panic!("message #{i} to {topic}: delivery future cancelled"),
            }
        }
        out
    })
}

/// Waits for the producer's queue to drain.
pub fn flush(p: &FutureProducer) {
    p.flush(Duration::from_secs(60)).expect("producer flush");
}

// ---------------------------------------------------------------------------
// Deterministic payloads
// ---------------------------------------------------------------------------

/// splitmix64: a tiny seeded generator for reproducible payloads.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `len` pseudo-random bytes derived from `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut s = seed;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&splitmix64(&mut s).to_le_bytes());
    }
    v.truncate(len);
    v
}

// ---------------------------------------------------------------------------
// On-disk segments
// ---------------------------------------------------------------------------

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join("topics").join(topic).join(partition.to_string())
}

/// The `.log` segments of a partition dir as (base offset, path), ascending.
pub fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v = Vec::new();
    let rd = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for e in rd {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) == Some("log") {
            let stem = p.file_stem().unwrap().to_str().unwrap().to_string();
            assert_eq!(stem.len(), 20, "segment name not 20 digits: {}", p.display());
            let base: u64 = stem.parse().unwrap_or_else(|_| panic!("bad segment name {}", p.display()));
            v.push((base, p));
        }
    }
    v.sort();
    v
}

/// One RecordBatch found in a segment file.
#[derive(Clone, Debug)]
pub struct BatchPos {
    /// File position of the batch (its baseOffset field).
    pub pos: u64,
    pub base_offset: i64,
    /// 12 + batchLength.
    pub total_len: u64,
    /// Offset delta of the last record (base_offset + last_offset_delta is its last offset).
    pub last_offset_delta: i32,
}

/// Walks the batches of a segment up to its logical end (a batchLength of 0,
/// or the end of the file). A batch running past the end of the file stops
/// the walk and is not returned.
pub fn scan_segment(bytes: &[u8]) -> Vec<BatchPos> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos + 12 <= bytes.len() {
        let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
        let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap());
        if len <= 0 {
            break;
        }
        let total = 12 + len as usize;
        if pos + total > bytes.len() {
            break;
        }
        let lod = if len >= 27 { i32::from_be_bytes(bytes[pos + 23..pos + 27].try_into().unwrap()) } else { 0 };
        out.push(BatchPos { pos: pos as u64, base_offset: base, total_len: total as u64, last_offset_delta: lod });
        pos += total;
    }
    out
}

/// Logical data length of a segment file (end of its last whole batch).
pub fn segment_data_len(path: &Path) -> u64 {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    scan_segment(&bytes).last().map(|b| b.pos + b.total_len).unwrap_or(0)
}

/// Path and batches of the last segment (highest base offset) of a partition.
pub fn last_segment(data_dir: &Path, topic: &str, partition: i32) -> (PathBuf, Vec<BatchPos>) {
    let dir = partition_dir(data_dir, topic, partition);
    let segs = segments(&dir);
    assert!(!segs.is_empty(), "no segments in {}", dir.display());
    // The broker may prepare the next segment ahead of time: the last segment
    // holding data is the one to look at.
    for (_, p) in segs.iter().rev() {
        let bytes = fs::read(p).unwrap();
        let batches = scan_segment(&bytes);
        if !batches.is_empty() {
            return (p.clone(), batches);
        }
    }
    panic!("no segment with data in {}", dir.display());
}

// ---------------------------------------------------------------------------
// Misc
// ---------------------------------------------------------------------------

/// Polls `f` every 100 ms until it returns `Some`; panics naming `what`
/// after CONDITION_TIMEOUT. For states the broker reaches after an answer
/// (background work), instead of a sleep that guesses how long it takes.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < CONDITION_TIMEOUT, "timed out after {CONDITION_TIMEOUT:?} waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Base offsets of the `.log` files of a partition dir (names only: safe
/// while the broker deletes segments).
pub fn segment_bases(dir: &Path) -> Vec<u64> {
    segments(dir).into_iter().map(|(base, _)| base).collect()
}

/// Runs a command with a time limit; returns (status, stdout, stderr).
pub fn run_with_timeout(
    cmd: &mut Command,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> (ExitStatus, Vec<u8>, Vec<u8>) {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let writer = stdin.map(|data| {
        let mut w = child.stdin.take().unwrap();
        thread::spawn(move || {
            let _ = w.write_all(&data);
            // dropping w closes stdin
        })
    });
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let ho = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let he = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait().unwrap() {
            Some(st) => break st,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                let err = he.join().unwrap();
                panic!("{cmd:?} did not finish within {timeout:?}; stderr:\n{}", String::from_utf8_lossy(&err));
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    (status, ho.join().unwrap(), he.join().unwrap())
}

/// Each thread of process `pid` with its state, kernel wait channel and
/// kernel stack (the stack needs root), from /proc: where a process that
/// does not make progress is waiting.
pub fn thread_dump(pid: u32) -> String {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(no /proc/{pid}/task)");
    };
    let mut out = String::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap_or_default();
        let status = read("status");
        let state = status.lines().find_map(|l| l.strip_prefix("State:")).unwrap_or("?").trim().to_string();
        out.push_str(&format!(
            "  thread {} {:?} {state} wchan={}\n",
            task.file_name().to_string_lossy(),
            read("comm").trim(),
            read("wchan").trim()
        ));
        for frame in read("stack").lines() {
            out.push_str(&format!("      {frame}\n"));
        }
    }
    out
}

/// Resident set size of a process in KiB (Linux /proc).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok())
}
