//! What `tests/loadgen.rs` and `tests/loadgen_amqp.rs` share: waiting for a
//! load generator run, reading its summary, and dependency-free checks of
//! its output files (HdrHistogram percentile text, SVG well-formedness).

#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Waits for the load generator `child`, killing it after `limit`.
pub fn finish(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for ringmq-loadgen"),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("ringmq-loadgen did not finish within {limit:?}");
        }
    }
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn read_summary(dir: &Path) -> Json {
    let path = dir.join("summary.json");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid JSON: {e}\n{text}", path.display()))
}

pub fn within_pct(value: f64, target: f64, pct: f64) -> bool {
    (value - target).abs() <= target * pct / 100.0
}

pub fn assert_percentiles(summary: &Json, key: &str, count: f64) {
    let p = summary.get(key).unwrap_or_else(|| panic!("summary has no {key}"));
    let mut last = 0.0;
    for q in ["p50", "p90", "p99", "p999", "p9999", "max"] {
        let v = p.num(q).unwrap_or_else(|| panic!("{key}.{q} missing"));
        assert!(v >= last, "{key}.{q} = {v} is below the previous percentile {last}");
        last = v;
    }
    assert!(last > 0.0, "{key}.max is 0");
    assert_eq!(p.num("count"), Some(count), "{key}.count");
}

/// Checks HdrHistogram's percentile-distribution text; returns its total count.
pub fn check_hgrm(text: &str) -> Result<u64, String> {
    let mut lines = text.lines();
    let header = lines.next().ok_or("empty file")?;
    let cols: Vec<&str> = header.split_whitespace().collect();
    if cols != ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"] {
        return Err(format!("bad header '{header}'"));
    }
    let (mut last_v, mut last_p, mut last_c) = (0.0f64, 0.0f64, 0u64);
    let mut rows = 0;
    let mut footer_total = None;
    for line in lines {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        if let Some(rest) = l.strip_prefix("#[") {
            if let Some(i) = rest.find("Total count") {
                let n = rest[i..]
                    .trim_start_matches("Total count")
                    .trim_start_matches([' ', '='])
                    .trim_end_matches(']')
                    .trim();
                footer_total = Some(n.parse::<u64>().map_err(|_| format!("bad total count in '{l}'"))?);
            }
            continue;
        }
        let c: Vec<&str> = l.split_whitespace().collect();
        if c.len() != 3 && c.len() != 4 {
            return Err(format!("bad row '{l}'"));
        }
        let v: f64 = c[0].parse().map_err(|_| format!("bad value in '{l}'"))?;
        let p: f64 = c[1].parse().map_err(|_| format!("bad percentile in '{l}'"))?;
        let n: u64 = c[2].parse().map_err(|_| format!("bad count in '{l}'"))?;
        if v < last_v || p < last_p || n < last_c || !(0.0..=1.0).contains(&p) {
            return Err(format!("row '{l}' goes backwards"));
        }
        (last_v, last_p, last_c) = (v, p, n);
        rows += 1;
    }
    let total = footer_total.ok_or("no '#[Max = …, Total count = …]' footer")?;
    if rows > 0 && (last_c != total || last_p != 1.0) {
        return Err(format!("last row (count {last_c}, percentile {last_p}) does not reach the total {total}"));
    }
    Ok(total)
}

/// Checks that the SVG is well-formed: XML prolog, `<svg>` root with the SVG
/// namespace, every tag closed in order, nothing after the root.
pub fn check_svg(text: &str) -> Result<(), String> {
    let mut rest = text.trim_start();
    if let Some(r) = rest.strip_prefix("<?xml") {
        rest = &r[r.find("?>").ok_or("unterminated XML declaration")? + 2..];
    }
    let mut stack: Vec<String> = Vec::new();
    let mut seen_root = false;
    while let Some(lt) = rest.find('<') {
        let text_before = &rest[..lt];
        if stack.is_empty() && !text_before.trim().is_empty() {
            return Err(format!("text outside the root element: '{}'", text_before.trim()));
        }
        if text_before.contains('&') && !entities_ok(text_before) {
            return Err(format!("bad entity in '{text_before}'"));
        }
        rest = &rest[lt..];
        if let Some(r) = rest.strip_prefix("<!--") {
            rest = &r[r.find("-->").ok_or("unterminated comment")? + 3..];
            continue;
        }
        let gt = tag_end(rest).ok_or("unterminated tag")?;
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().ok_or_else(|| format!("</{name}> closes nothing"))?;
            if open != name.trim() {
                return Err(format!("<{open}> closed by </{name}>"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let name: String = tag.chars().take_while(|c| !c.is_whitespace() && *c != '/').collect();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-') {
            return Err(format!("bad tag '<{tag}>'"));
        }
        if !attrs_ok(&tag[name.len()..]) {
            return Err(format!("bad attributes in '<{tag}>'"));
        }
        if stack.is_empty() {
            if seen_root {
                return Err("more than one root element".to_string());
            }
            if name != "svg" || !tag.contains(r#"xmlns="http://www.w3.org/2000/svg""#) {
                return Err(format!("root element is '<{tag}>', not an SVG"));
            }
            seen_root = true;
        }
        if !self_closing {
            stack.push(name);
        }
    }
    if !rest.trim().is_empty() {
        return Err(format!("text after the root: '{}'", rest.trim()));
    }
    if !stack.is_empty() {
        return Err(format!("unclosed elements: {stack:?}"));
    }
    if !seen_root {
        return Err("no root element".to_string());
    }
    Ok(())
}

/// Index of the `>` ending the tag at the start of `s`, skipping quoted values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// `name="value"` pairs only, values without `<` and with valid entities.
fn attrs_ok(s: &str) -> bool {
    let mut rest = s.trim().trim_end_matches('/').trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { return false };
        let name = rest[..eq].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_')) {
            return false;
        }
        let after = rest[eq + 1..].trim_start();
        let Some(q) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            return false;
        };
        let Some(close) = after[1..].find(q) else { return false };
        let value = &after[1..1 + close];
        if value.contains('<') || !entities_ok(value) {
            return false;
        }
        rest = after[close + 2..].trim_start();
    }
    true
}

fn entities_ok(s: &str) -> bool {
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        let after = &rest[i + 1..];
        let Some(semi) = after.find(';') else { return false };
        let ent = &after[..semi];
        let ok = matches!(ent, "amp" | "lt" | "gt" | "quot" | "apos")
            || (ent.starts_with('#')
                && ent.len() > 1
                && (ent[1..].chars().all(|c| c.is_ascii_digit())
                    || (ent[1..].starts_with('x') && ent[2..].chars().all(|c| c.is_ascii_hexdigit()))));
        if !ok {
            return false;
        }
        rest = &after[semi + 1..];
    }
    true
}

/// summary.json as read by the tests: serde_json's value (strict JSON), and
/// the one accessor the checks use most.
pub type Json = serde_json::Value;

pub trait NumField {
    /// The number under `key` of an object.
    fn num(&self, key: &str) -> Option<f64>;
}

impl NumField for Json {
    fn num(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }
}
