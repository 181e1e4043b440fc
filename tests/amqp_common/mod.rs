//! What the AMQP acceptance tests share beyond `tests/common`: the client
//! scripts of `tests/amqp_clients/` run as processes whose output is read as
//! it comes (`Script`), and a small AMQP 0-9-1 client written straight on a
//! TCP socket (`wire`), for the tests that must control every frame (the
//! durability and hostile-input tests).
//!
//! The scripts' clients are installed by `tests/run`: pika in the venv under
//! `target/client-venv`, amqplib in `tests/amqp_clients/node_modules`. A
//! missing client fails the test with that hint rather than skipping it.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod wire;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long one client script may run, at most.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The two client libraries the tutorials are written for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// pika 1.3.2 (Python), `tests/amqp_clients/python/`.
    Pika,
    /// amqplib (node), `tests/amqp_clients/node/`.
    Amqplib,
}

pub fn clients_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/amqp_clients")
}

fn python() -> PathBuf {
    let p = std::env::var_os("RINGMQ_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/client-venv/bin/python"));
    assert!(p.exists(), "{} is missing: run tests/run, which installs pika into it", p.display());
    p
}

impl Client {
    /// The command running tutorial script `name` (without extension) with `args`.
    pub fn script(self, name: &str, args: &[&str]) -> Command {
        match self {
            Client::Pika => {
                let mut c = Command::new(python());
                c.arg(clients_dir().join("python").join(format!("{name}.py"))).args(args);
                c
            }
            Client::Amqplib => {
                assert!(
                    clients_dir().join("node_modules/amqplib").exists(),
                    "tests/amqp_clients/node_modules/amqplib is missing: run tests/run, which installs it with npm"
                );
                let mut c = Command::new("node");
                c.current_dir(clients_dir().join("node")).arg(format!("{name}.js")).args(args);
                c
            }
        }
    }
}

/// A client script running in the background, its stdout read line by line
/// as it comes.
pub struct Script {
    what: String,
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    stdout: Vec<String>,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
    status: Option<ExitStatus>,
}

/// What a finished script printed.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

impl Finished {
    /// The last stdout line as JSON; panics (with everything printed) unless
    /// the script succeeded and ended with a JSON line.
    pub fn report(&self, what: &str) -> serde_json::Value {
        assert!(self.status.success(), "{what} failed ({}):\n{}", self.status, self.dump());
        let last = self.stdout.last().map(String::as_str).unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{what}: last line is not JSON ({e}):\n{}", self.dump()))
    }

    pub fn dump(&self) -> String {
        format!("--- stdout ---\n{}\n--- stderr ---\n{}", self.stdout.join("\n"), self.stderr)
    }
}

impl Script {
    pub fn spawn(mut cmd: Command, what: &str) -> Script {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what} ({cmd:?}): {e}"));
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            v
        });
        Script {
            what: what.to_string(),
            child: Some(child),
            lines: rx,
            stdout: Vec::new(),
            stderr: Some(stderr),
            status: None,
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns it; panics
    /// if the script ends or `timeout` passes first.
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    self.stdout.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(e) => {
                    let f = self.finish_within(Duration::from_secs(10));
                    panic!("{}: no line starting with {prefix:?} ({e:?}; {}):\n{}", self.what, f.status, f.dump());
                }
            }
        }
    }

    /// Waits for the script to exit on its own within `timeout`; kills it and
    /// panics otherwise.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        self.finish_within(timeout)
    }

    fn finish_within(&mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = match self.status {
            Some(st) => st,
            None => {
                let child = self.child.as_mut().expect("the script's process");
                loop {
                    match child.try_wait().expect("try_wait") {
                        Some(st) => break st,
                        None if Instant::now() > deadline => {
                            let _ = child.kill();
                            let _ = child.wait();
                            let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
                            self.stdout.extend(self.lines.try_iter());
                            panic!(
                                "{} did not finish within {timeout:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                                self.what,
                                self.stdout.join("\n"),
                                String::from_utf8_lossy(&stderr)
                            );
                        }
                        None => thread::sleep(Duration::from_millis(20)),
                    }
                }
            }
        };
        self.status = Some(status);
        let stderr = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        Finished { status, stdout: self.stdout.clone(), stderr: String::from_utf8_lossy(&stderr).into_owned() }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.status.is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Runs a script to its end and returns its JSON report (panics with its
/// output on failure).
pub fn run_script(cmd: Command, what: &str) -> serde_json::Value {
    let f = Script::spawn(cmd, what).finish(SCRIPT_TIMEOUT);
    let report = f.report(what);
    eprintln!("[{what}] {report}");
    report
}

/// Panics unless the broker's process is running and none of its shard
/// threads panicked: a shard's panic leaves the process up, so its log is
/// where it shows.
pub fn assert_healthy(broker: &mut crate::common::Broker) {
    broker.assert_running();
    let log = broker.log();
    if let Some(at) = log.find("panicked at") {
        let from = log[..at].rfind("\nthread ").map_or(at, |i| i + 1);
        let end = log[at..].find("stack backtrace").map_or(log.len(), |i| at + i);
        panic!("a broker thread panicked:\n{}", &log[from..end]);
    }
}
