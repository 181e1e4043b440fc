//! The AMQP side's metrics: per shard (connections, publish→confirm latency,
//! memory of transient queues, the disk alarm) and per queue (ready and
//! unacknowledged messages, consumers, publish/deliver/ack counts), as
//! Prometheus text appended to `/metrics`.

use std::fmt::Write;
use std::rc::Rc;

use super::broker::Broker;
use crate::histogram::Log2Histogram;
use crate::metrics::family;

/// One queue's gauges and counters.
#[derive(Debug, Clone)]
pub struct QueueGauges {
    pub name: String,
    pub durable: bool,
    pub ready: u64,
    pub unacked: u64,
    pub consumers: u32,
    pub published: u64,
    pub delivered: u64,
    pub acknowledged: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    pub deduplicated: u64,
}

/// One shard's AMQP report.
#[derive(Debug, Clone)]
pub struct AmqpReport {
    pub shard: usize,
    pub connections_open: u64,
    pub connections_accepted: u64,
    pub memory_queue_bytes: u64,
    pub disk_alarm: bool,
    pub publish_confirm_latency_us: Log2Histogram,
    pub queues: Vec<QueueGauges>,
}

impl Broker {
    pub fn report(&self) -> AmqpReport {
        let mut queues: Vec<QueueGauges> = self
            .local_queues()
            .iter()
            .map(|q| QueueGauges {
                name: q.name.to_string(),
                durable: q.store.is_durable(),
                ready: q.ready_count(),
                unacked: q.unacked_count(),
                consumers: q.consumer_count(),
                published: q.counters.published.get(),
                delivered: q.counters.delivered.get(),
                acknowledged: q.counters.acknowledged.get(),
                expired: q.counters.expired.get(),
                dead_lettered: q.counters.dead_lettered.get(),
                dropped: q.counters.dropped.get(),
                deduplicated: q.counters.deduplicated.get(),
            })
            .collect();
        queues.sort_by(|a, b| a.name.cmp(&b.name));
        AmqpReport {
            shard: self.shard.id,
            connections_open: self.counters.connections_open.get(),
            connections_accepted: self.counters.connections_accepted.get(),
            memory_queue_bytes: self.memory_used_bytes() as u64,
            disk_alarm: self.disk_alarm.get(),
            publish_confirm_latency_us: *self.counters.publish_confirm_latency_us.borrow(),
            queues,
        }
    }
}

/// Every shard's report (asked by message), in shard order.
pub async fn reports(broker: &Rc<Broker>) -> Vec<AmqpReport> {
    let mut out = Vec::with_capacity(broker.shard.count);
    for shard in 0..broker.shard.count {
        let r = broker.shard.run_on(shard, || async { Broker::current().map(|b| b.report()) }).await.flatten();
        out.extend(r);
    }
    out
}

/// A label value with `\`, `"` and newlines escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

pub fn render(reports: &[AmqpReport]) -> String {
    let mut out = String::new();
    type ShardValue = fn(&AmqpReport) -> u64;
    let shard_values: [(&str, &str, ShardValue); 4] = [
        ("ringmq_amqp_connections_open", "AMQP connections open now.", |r| r.connections_open),
        ("ringmq_amqp_connections_accepted_total", "AMQP connections accepted.", |r| r.connections_accepted),
        ("ringmq_amqp_memory_queue_bytes", "Bytes of messages held by transient (in-memory) queues.", |r| {
            r.memory_queue_bytes
        }),
        ("ringmq_amqp_disk_alarm", "1 while publishers are blocked because the data disk is nearly full.", |r| {
            u64::from(r.disk_alarm)
        }),
    ];
    for (name, help, get) in shard_values {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        family(&mut out, name, kind, help);
        for r in reports {
            let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", r.shard, get(r));
        }
    }
    family(
        &mut out,
        "ringmq_amqp_publish_confirm_seconds",
        "histogram",
        "Time from a message's last frame read to its publisher confirm, per shard of the publishing connection.",
    );
    for r in reports {
        let labels = format!("shard=\"{}\"", r.shard);
        crate::metrics::histogram(
            &mut out,
            "ringmq_amqp_publish_confirm_seconds",
            &labels,
            &r.publish_confirm_latency_us,
            1e-6,
        );
    }
    type QueueValue = fn(&QueueGauges) -> u64;
    let queue_values: [(&str, &str, QueueValue); 10] = [
        ("ringmq_amqp_queue_messages_ready", "Messages ready for delivery.", |q| q.ready),
        ("ringmq_amqp_queue_messages_unacked", "Messages delivered and not yet acknowledged.", |q| q.unacked),
        ("ringmq_amqp_queue_consumers", "Consumers of the queue.", |q| u64::from(q.consumers)),
        ("ringmq_amqp_queue_published_total", "Messages stored in the queue since it opened.", |q| q.published),
        ("ringmq_amqp_queue_delivered_total", "Deliveries (consumers and basic.get) since it opened.", |q| q.delivered),
        ("ringmq_amqp_queue_acknowledged_total", "Messages acknowledged since it opened.", |q| q.acknowledged),
        ("ringmq_amqp_queue_expired_total", "Messages expired (TTL) since it opened.", |q| q.expired),
        ("ringmq_amqp_queue_dead_lettered_total", "Messages dead-lettered since it opened.", |q| q.dead_lettered),
        (
            "ringmq_amqp_queue_dropped_total",
            "Messages dropped (expired or over a limit, no dead-letter exchange) since it opened.",
            |q| q.dropped,
        ),
        (
            "ringmq_amqp_queue_deduplicated_total",
            "Messages taken as duplicates (confirmed, not stored) since it opened.",
            |q| q.deduplicated,
        ),
    ];
    for (name, help, get) in queue_values {
        let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
        family(&mut out, name, kind, help);
        for r in reports {
            for q in &r.queues {
                let _ = writeln!(
                    out,
                    "{name}{{vhost=\"/\",queue=\"{}\",durable=\"{}\",shard=\"{}\"}} {}",
                    label(&q.name),
                    q.durable,
                    r.shard,
                    get(q)
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_are_escaped_in_labels() {
        let r = AmqpReport {
            shard: 0,
            connections_open: 1,
            connections_accepted: 2,
            memory_queue_bytes: 0,
            disk_alarm: false,
            publish_confirm_latency_us: Log2Histogram::default(),
            queues: vec![QueueGauges {
                name: "a\"b\\c".into(),
                durable: true,
                ready: 3,
                unacked: 1,
                consumers: 0,
                published: 4,
                delivered: 1,
                acknowledged: 0,
                expired: 0,
                dead_lettered: 0,
                dropped: 0,
                deduplicated: 0,
            }],
        };
        let text = render(&[r]);
        assert!(
            text.contains(r#"ringmq_amqp_queue_messages_ready{vhost="/",queue="a\"b\\c",durable="true",shard="0"} 3"#),
            "{text}"
        );
        assert!(text.contains("ringmq_amqp_connections_open{shard=\"0\"} 1"));
    }
}
