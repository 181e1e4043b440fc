//! kcat (Debian's, linked against an older librdkafka) produces and consumes
//! through the broker. kcat missing is a failure: `tests/run` installs it.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const KCAT_TIMEOUT: Duration = Duration::from_secs(120);

fn kcat() -> Command {
    let found = Command::new("kcat").arg("-V").output();
    match found {
        Ok(o) if o.status.success() || !o.stdout.is_empty() => {}
        Ok(o) => panic!("`kcat -V` failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr)),
        Err(e) => panic!(
            "kcat is not installed ({e}); it is required by this test. Run tests/run (which installs it) \
             or `apt-get install -y kcat`."
        ),
    }
    Command::new("kcat")
}

fn run_kcat(args: &[&str], stdin: Option<Vec<u8>>) -> Vec<u8> {
    let mut cmd = kcat();
    cmd.args(args);
    let (st, out, err) = run_with_timeout(&mut cmd, stdin, KCAT_TIMEOUT);
    assert!(st.success(), "kcat {args:?} exited with {st}\nstderr:\n{}", String::from_utf8_lossy(&err));
    out
}

/// 1,000 distinct lines of varying length, with tabs, non-ASCII text and
/// bytes that are not valid UTF-8 (everything but '\n').
fn lines() -> Vec<Vec<u8>> {
    (0..1000u64)
        .map(|i| {
            let mut s = i;
            let mut line = format!("line {i:04}\t").into_bytes();
            match i % 4 {
                0 => line.extend_from_slice("ünïcødé ✓".as_bytes()),
                1 => {
                    let n = (splitmix64(&mut s) % 200) as usize;
                    line.extend(random_bytes(i, n).into_iter().map(|b| if b == b'\n' { b'.' } else { b }));
                }
                2 => line.extend(std::iter::repeat_n(b'x', (splitmix64(&mut s) % 3000) as usize)),
                _ => line.extend_from_slice(b"short"),
            }
            line
        })
        .collect()
}

fn join_lines(lines: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for l in lines {
        v.extend_from_slice(l);
        v.push(b'\n');
    }
    v
}

#[test]
fn kcat_produced_lines_are_consumed_back_in_order() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("kcat");
    let lines = lines();
    let input = join_lines(&lines);

    run_kcat(&["-P", "-b", &addr, "-t", &topic, "-p", "0"], Some(input.clone()));

    // Cross-check with librdkafka: 1,000 records at offsets 0..1000.
    assert_eq!(watermarks(&addr, &topic, 0), (0, 1000), "watermarks after kcat -P");

    let out = run_kcat(&["-C", "-b", &addr, "-t", &topic, "-p", "0", "-o", "beginning", "-e", "-q"], None);
    if out != input {
        let got: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        let first_diff =
            lines.iter().zip(got.iter()).position(|(a, b)| a.as_slice() != *b).unwrap_or(lines.len().min(got.len()));
        panic!(
            "kcat -C output differs: {} bytes vs {} expected, {} lines vs {}; first differing line {}: got {:?}, want {:?}",
            out.len(),
            input.len(),
            got.len().saturating_sub(1),
            lines.len(),
            first_diff,
            got.get(first_diff).map(|l| String::from_utf8_lossy(l)),
            lines.get(first_diff).map(|l| String::from_utf8_lossy(l)),
        );
    }
}

#[test]
fn kcat_keyed_messages_are_consumed_back_with_their_keys() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("kcatkey");
    let pairs: Vec<(String, String)> =
        (0..500).map(|i| (format!("key-{i}"), format!("value {i} {}", "v".repeat(i % 50)))).collect();
    let mut input = String::new();
    for (k, v) in &pairs {
        input.push_str(&format!("{k}:{v}\n"));
    }

    run_kcat(&["-P", "-b", &addr, "-t", &topic, "-p", "0", "-K:"], Some(input.into_bytes()));

    let out =
        run_kcat(&["-C", "-b", &addr, "-t", &topic, "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%k=%s\n"], None);
    let out = String::from_utf8(out).expect("kcat output is UTF-8");
    let got: Vec<&str> = out.lines().collect();
    let want: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(got.len(), want.len(), "number of keyed messages read back");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "keyed message {i}");
    }

    // And librdkafka sees the same keys.
    let recs = read_all(&addr, &topic, 0, Duration::from_secs(60));
    assert_eq!(recs.len(), pairs.len());
    for (r, (k, v)) in recs.iter().zip(pairs.iter()) {
        assert_eq!(r.key.as_deref(), Some(k.as_bytes()));
        assert_eq!(r.payload.as_deref(), Some(v.as_bytes()));
    }
}

#[test]
fn kcat_metadata_lists_the_broker_topics_and_partitions() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let (a, b) = (unique_topic("kcat-list-a"), unique_topic("kcat-list-b"));
    create_topic(&addr, &a, 3, &[]);
    create_topic(&addr, &b, 5, &[]);

    let out = run_kcat(&["-L", "-b", &addr, "-J"], None);
    let md: serde_json::Value = serde_json::from_slice(&out).expect("kcat -L -J prints JSON");
    let brokers = md["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{md}");
    assert_eq!(brokers[0]["id"], 0, "{md}");
    assert_eq!(brokers[0]["name"], addr.as_str(), "{md}");
    let topics = md["topics"].as_array().expect("topics");
    for (name, partitions) in [(&a, 3), (&b, 5)] {
        let t =
            topics.iter().find(|t| t["topic"] == name.as_str()).unwrap_or_else(|| panic!("{name} not listed: {md}"));
        let ps = t["partitions"].as_array().expect("partitions");
        let mut ids: Vec<i64> = ps.iter().map(|p| p["partition"].as_i64().expect("partition id")).collect();
        ids.sort();
        assert_eq!(ids, (0..partitions).collect::<Vec<i64>>(), "{md}");
        assert!(ps.iter().all(|p| p["leader"] == 0 && p["replicas"][0]["id"] == 0 && p["isrs"][0]["id"] == 0), "{md}");
    }

    // The human-readable form names the same broker and topics.
    let text = String::from_utf8(run_kcat(&["-L", "-b", &addr], None)).expect("utf-8");
    assert!(text.contains("1 brokers:") && text.contains(&format!("broker 0 at {addr}")), "{text}");
    assert!(text.contains(&format!("topic \"{a}\" with 3 partitions")), "{text}");
    assert!(text.contains(&format!("topic \"{b}\" with 5 partitions")), "{text}");
}
