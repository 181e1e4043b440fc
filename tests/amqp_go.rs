//! rabbitmq/amqp091-go's own integration suite (the Go client RabbitMQ
//! maintains), run unchanged against ringmq but for one documented edit.
//!
//! Debian ships the client's sources with its tests
//! (`golang-github-rabbitmq-amqp091-go-dev`, installed by `tests/run` with
//! `golang-go`); they are copied into a GOPATH under the target directory and
//! run with `go test -tags integration -run Integration` against a broker's
//! AMQP port (`AMQP_URL`). Every one of the suite's `TestIntegration*` tests
//! must report `--- PASS`.
//!
//! The one edit: `TestIntegrationRecoverNotImplemented` asserts only against
//! a server whose product is "RabbitMQ", and against any other server it
//! leaves its connection open, which makes the package's goleak `TestMain`
//! fail the run. ringmq answers basic.recover(requeue=false) with 540
//! NOT_IMPLEMENTED exactly as RabbitMQ does, so the copy makes that test
//! assert against a server whose product is "ringmq" too.

mod amqp_common;
mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Where Debian installs the client's sources (tests included).
const DEBIAN_SOURCES: &str = "/usr/share/gocode/src/github.com/rabbitmq/amqp091-go";
const DEBIAN_GOPATH: &str = "/usr/share/gocode";

/// Every integration test of the suite (amqp091-go 1.5.0, as Debian ships it).
const INTEGRATION_TESTS: [&str; 31] = [
    "TestIntegrationOpenClose",
    "TestIntegrationOpenCloseChannel",
    "TestIntegrationHighChannelChurnInTightLoop",
    "TestIntegrationOpenConfig",
    "TestIntegrationOpenConfigWithNetDial",
    "TestIntegrationLocalAddr",
    "TestIntegrationRemoteAddr",
    "TestIntegrationExchangeDeclarePassiveOnDeclaredShouldNotError",
    "TestIntegrationExchange",
    "TestIntegrationQueueDeclarePassiveOnMissingExchangeShouldError",
    "TestIntegrationPassiveQueue",
    "TestIntegrationBasicQueueOperations",
    "TestIntegrationConnectionNegotiatesMaxChannels",
    "TestIntegrationConnectionNegotiatesClientMaxChannels",
    "TestIntegrationChannelIDsExhausted",
    "TestIntegrationChannelClosing",
    "TestIntegrationMeaningfulChannelErrors",
    "TestIntegrationNonBlockingClose",
    "TestIntegrationPublishConsume",
    "TestIntegrationConsumeFlow",
    "TestIntegrationRecoverNotImplemented",
    "TestIntegrationPublishFlow",
    "TestIntegrationConsumeCancel",
    "TestIntegrationGetOk",
    "TestIntegrationGetEmpty",
    "TestIntegrationTxCommit",
    "TestIntegrationTxRollback",
    "TestIntegrationReturn",
    "TestIntegrationCancel",
    "TestIntegrationConfirm",
    "TestIntegrationGetNextPublishSeqNo",
];

/// The edit, as a sed expression on `integration_test.go`.
const RECOVER_EDIT: &str =
    r#"s/product.(string) == "RabbitMQ" {/(product.(string) == "RabbitMQ" || product.(string) == "ringmq") {/"#;

fn target_tmp() -> PathBuf {
    option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tmp"))
}

/// A fresh GOPATH under the target directory holding a copy of the suite,
/// with the one edit applied; returns the package directory.
fn prepare_suite() -> PathBuf {
    assert!(
        Path::new(DEBIAN_SOURCES).join("integration_test.go").is_file(),
        "{DEBIAN_SOURCES} is missing: run tests/run, which installs golang-go and \
         golang-github-rabbitmq-amqp091-go-dev with apt"
    );
    let gopath = target_tmp().join("amqp091-go-gopath");
    let pkg = gopath.join("src/github.com/rabbitmq/amqp091-go");
    let _ = fs::remove_dir_all(&pkg);
    fs::create_dir_all(pkg.parent().unwrap()).expect("create GOPATH");
    let (st, _, err) =
        run_with_timeout(Command::new("cp").arg("-r").arg(DEBIAN_SOURCES).arg(&pkg), None, Duration::from_secs(60));
    assert!(st.success(), "copying the suite failed: {}", String::from_utf8_lossy(&err));
    let file = pkg.join("integration_test.go");
    let before = fs::read_to_string(&file).expect("read integration_test.go");
    let (st, _, err) =
        run_with_timeout(Command::new("sed").arg("-i").arg(RECOVER_EDIT).arg(&file), None, Duration::from_secs(30));
    assert!(st.success(), "sed failed: {}", String::from_utf8_lossy(&err));
    let after = fs::read_to_string(&file).expect("read integration_test.go");
    let in_suite: Vec<&str> = after
        .lines()
        .filter_map(|l| l.strip_prefix("func "))
        .filter_map(|l| l.split('(').next())
        .filter(|name| name.starts_with("TestIntegration"))
        .collect();
    assert_eq!(in_suite, INTEGRATION_TESTS, "the suite's integration tests are not the ones this test lists");
    let changed: Vec<(&str, &str)> = before.lines().zip(after.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(before.lines().count(), after.lines().count());
    assert_eq!(changed.len(), 1, "the edit must change exactly one line (in TestIntegrationRecoverNotImplemented)");
    eprintln!("[amqp_go] the one edit to the suite's copy, sed -i '{RECOVER_EDIT}' integration_test.go:");
    eprintln!("[amqp_go]   - {}", changed[0].0.trim());
    eprintln!("[amqp_go]   + {}", changed[0].1.trim());
    pkg
}

#[test]
fn amqp091_go_integration_suite_passes_every_test() {
    let broker = Broker::start(BrokerOpts::default().arg("--cores").arg("2"));
    let pkg = prepare_suite();
    let gopath = pkg.ancestors().nth(4).expect("GOPATH above the package").to_path_buf();
    let mut cmd = Command::new("go");
    cmd.current_dir(&pkg)
        .args(["test", "-count=1", "-tags", "integration", "-run", "Integration", "-v", "."])
        .env("GO111MODULE", "off")
        .env("GOPATH", format!("{}:{DEBIAN_GOPATH}", gopath.display()))
        .env("GOCACHE", target_tmp().join("amqp091-go-cache"))
        .env("GOFLAGS", "")
        .env("AMQP_URL", broker.amqp_url());
    let started = Instant::now();
    let (status, stdout, stderr) = run_with_timeout(&mut cmd, None, Duration::from_secs(600));
    let out = String::from_utf8_lossy(&stdout);
    eprintln!("[amqp_go] go test ran {:.1?} ({status})", started.elapsed());
    let passed: Vec<&str> = out.lines().filter_map(|l| l.trim().strip_prefix("--- PASS: ")).collect();
    let missing: Vec<&str> = INTEGRATION_TESTS
        .iter()
        .copied()
        .filter(|name| !passed.iter().any(|p| p.split_whitespace().next() == Some(*name)))
        .collect();
    let not_passing: Vec<&str> =
        out.lines().filter(|l| l.trim().starts_with("--- FAIL") || l.trim().starts_with("--- SKIP")).collect();
    assert!(
        status.success() && missing.is_empty() && not_passing.is_empty(),
        "go test {status}; without a --- PASS line: {missing:?}; failed or skipped: {not_passing:?}\n\
         --- go test output ---\n{out}\n--- stderr ---\n{}\n--- broker.log (tail) ---\n{}",
        String::from_utf8_lossy(&stderr),
        broker.log_tail(80)
    );
    eprintln!("[amqp_go] {} of {} integration tests passed", INTEGRATION_TESTS.len(), INTEGRATION_TESTS.len());
    let mut broker = broker;
    amqp_common::assert_healthy(&mut broker);
}
