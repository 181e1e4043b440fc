//! Rendering of the admin commands' results (topics, groups, queues):
//! aligned tables and `KEY value` blocks for people (`--format text`), or
//! one pretty-printed JSON document per command with the field names of the
//! result structs (`--format json`).

use std::io::{self, Write};

use serde::Serialize;

use super::group::{GroupDescription, GroupSummary, ResetPlan};
use super::topic::{ConfigsAltered, TopicCreated, TopicDescription, TopicSummary};
use crate::amqp::admin_api::{QueueDeleted, QueueInfo, QueuePurged};

/// `topic list` as JSON.
#[derive(Serialize)]
pub struct TopicList<'a> {
    pub topics: &'a [TopicSummary],
}

/// `group list` as JSON.
#[derive(Serialize)]
pub struct GroupList<'a> {
    pub groups: &'a [GroupSummary],
}

/// `queue list` as JSON.
#[derive(Serialize)]
pub struct QueueList<'a> {
    pub queues: &'a [QueueInfo],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables, for people.
    Text,
    /// One JSON document on stdout, for scripts.
    Json,
}

/// Columns left-aligned to their widest cell, two spaces apart, headers in capitals.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len(), "a row has one cell per column");
        self.rows.push(cells);
    }

    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  "));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// `KEY  value` lines, keys padded to the longest.
fn fields(out: &mut dyn Write, pairs: &[(&str, String)]) -> io::Result<()> {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        writeln!(out, "{k:<width$}  {v}")?;
    }
    Ok(())
}

/// One JSON document and a newline.
pub fn json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::other)?;
    writeln!(out)
}

fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).filter(|s| !s.is_empty()).unwrap_or_else(|| "-".to_string())
}

pub fn topic_created(out: &mut dyn Write, t: &TopicCreated) -> io::Result<()> {
    match t.partitions {
        Some(n) => writeln!(out, "created topic `{}` with {n} partition{}", t.name, plural(n as usize)),
        None => writeln!(out, "created topic `{}`", t.name),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub fn topic_list(out: &mut dyn Write, topics: &[TopicSummary]) -> io::Result<()> {
    let mut t = Table::new(&["NAME", "PARTITIONS", "REPLICAS"]);
    for topic in topics {
        t.row(vec![topic.name.clone(), topic.partitions.to_string(), topic.replicas.to_string()]);
    }
    t.write(out)
}

pub fn topic_description(out: &mut dyn Write, d: &TopicDescription) -> io::Result<()> {
    fields(
        out,
        &[
            ("NAME", d.name.clone()),
            ("TOPIC-ID", or_dash(d.topic_id.as_deref())),
            ("INTERNAL", d.internal.to_string()),
            ("PARTITIONS", d.partitions.len().to_string()),
        ],
    )?;
    writeln!(out)?;
    let mut t = Table::new(&["PARTITION", "LEADER", "START-OFFSET", "END-OFFSET"]);
    for p in &d.partitions {
        t.row(vec![
            p.partition.to_string(),
            p.leader.to_string(),
            p.start_offset.to_string(),
            p.end_offset.to_string(),
        ]);
    }
    t.write(out)?;
    writeln!(out)?;
    let mut t = Table::new(&["CONFIG", "VALUE", "SOURCE"]);
    for c in &d.configs {
        let value = if c.sensitive { "(sensitive)".to_string() } else { or_dash(c.value.as_deref()) };
        t.row(vec![c.name.clone(), value, c.source.clone()]);
    }
    t.write(out)
}

pub fn configs_altered(out: &mut dyn Write, a: &ConfigsAltered) -> io::Result<()> {
    let mut changes: Vec<String> = a.set.iter().map(|c| format!("set {}={}", c.name, c.value)).collect();
    changes.extend(a.deleted.iter().map(|k| format!("deleted {k}")));
    writeln!(out, "altered topic `{}`: {}", a.topic, changes.join(", "))
}

pub fn group_list(out: &mut dyn Write, groups: &[GroupSummary]) -> io::Result<()> {
    let mut t = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE"]);
    for g in groups {
        t.row(vec![g.group.clone(), or_dash(g.state.as_deref()), or_dash(Some(&g.protocol_type))]);
    }
    t.write(out)
}

pub fn group_description(out: &mut dyn Write, d: &GroupDescription) -> io::Result<()> {
    fields(
        out,
        &[
            ("GROUP", d.group.clone()),
            ("STATE", d.state.clone()),
            ("PROTOCOL-TYPE", or_dash(Some(&d.protocol_type))),
            ("PROTOCOL", or_dash(Some(&d.protocol))),
            ("MEMBERS", d.members.len().to_string()),
            ("TOTAL-LAG", d.total_lag.to_string()),
        ],
    )?;
    if !d.members.is_empty() {
        writeln!(out)?;
        let mut t = Table::new(&["MEMBER-ID", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
        for m in &d.members {
            let assignment: Vec<String> = m
                .assignment
                .iter()
                .map(|tp| {
                    let ps: Vec<String> = tp.partitions.iter().map(|p| p.to_string()).collect();
                    format!("{}:{}", tp.topic, ps.join(","))
                })
                .collect();
            t.row(vec![
                m.member_id.clone(),
                or_dash(Some(&m.client_id)),
                or_dash(Some(&m.client_host)),
                or_dash(Some(assignment.join(" "))),
            ]);
        }
        t.write(out)?;
    }
    writeln!(out)?;
    let mut t = Table::new(&["TOPIC", "PARTITION", "COMMITTED-OFFSET", "END-OFFSET", "LAG", "MEMBER-ID"]);
    for p in &d.partitions {
        t.row(vec![
            p.topic.clone(),
            p.partition.to_string(),
            or_dash(p.committed_offset),
            or_dash(p.end_offset),
            or_dash(p.lag),
            or_dash(p.member_id.as_deref()),
        ]);
    }
    t.write(out)
}

/// The plan of a reset, before it is committed.
pub fn reset_plan(out: &mut dyn Write, plan: &ResetPlan) -> io::Result<()> {
    writeln!(out, "reset offsets of group `{}` on topic `{}` to {}:", plan.group, plan.topic, plan.to)?;
    let mut t = Table::new(&["PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"]);
    for e in &plan.partitions {
        t.row(vec![e.partition.to_string(), or_dash(e.current_offset), e.new_offset.to_string()]);
    }
    t.write(out)
}

/// The outcome of a committed reset.
pub fn reset_done(out: &mut dyn Write, plan: &ResetPlan) -> io::Result<()> {
    let n = plan.partitions.len();
    writeln!(
        out,
        "committed new offsets for {n} partition{} of topic `{}` in group `{}`",
        plural(n),
        plan.topic,
        plan.group
    )
}

pub fn queue_list(out: &mut dyn Write, queues: &[QueueInfo]) -> io::Result<()> {
    let mut t = Table::new(&["NAME", "TYPE", "DURABLE", "MESSAGES-READY", "UNACKED", "CONSUMERS"]);
    for q in queues {
        t.row(vec![
            q.name.clone(),
            q.kind.clone(),
            q.durable.to_string(),
            q.messages_ready.to_string(),
            q.messages_unacknowledged.to_string(),
            q.consumers.to_string(),
        ]);
    }
    t.write(out)
}

pub fn queue_purged(out: &mut dyn Write, p: &QueuePurged) -> io::Result<()> {
    let n = p.messages_purged;
    writeln!(out, "purged {n} message{} from queue `{}`", plural(n as usize), p.name)
}

pub fn queue_deleted(out: &mut dyn Write, d: &QueueDeleted) -> io::Result<()> {
    let n = d.messages_deleted;
    writeln!(out, "deleted queue `{}` and its {n} ready message{}", d.name, plural(n as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_aligned_without_trailing_spaces() {
        let mut t = Table::new(&["NAME", "PARTITIONS"]);
        t.row(vec!["a-long-name".into(), "3".into()]);
        t.row(vec!["b".into(), "12".into()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "NAME         PARTITIONS\na-long-name  3\nb            12\n");
    }
}
