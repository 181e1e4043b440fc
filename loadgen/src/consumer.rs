//! Consumer threads: each owns its partitions (assigned round-robin), one
//! connection per partition leader, and fetches from the latest offset taken
//! before the producers start. Every record of this run found in a fetch
//! response gives one end-to-end latency: response received − intended send
//! time stamped in the value. Only records due inside the measured window
//! count as consumed.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::cli::RunConfig;
use crate::client::{whole_batches, ConnectOptions, Connection};
use crate::cluster::{latest_offsets, PartitionInfo, TopicLayout};
use crate::error::{code_name, Error};
use crate::histo::Samples;
use crate::payload::Stamp;
use crate::shared::Shared;

/// Largest per-partition fetch size the consumer grows to for a batch
/// larger than its current limit.
const MAX_PARTITION_FETCH: i32 = 64 << 20;

struct Position {
    partition: i32,
    offset: i64,
    max_bytes: i32,
}

struct Link {
    conn: Connection,
    positions: Vec<Position>,
}

/// A connected consumer with its start offsets, ready to start.
pub struct Consumer {
    index: usize,
    cfg: Arc<RunConfig>,
    topic: String,
    shared: Arc<Shared>,
    links: Vec<Link>,
}

/// Partitions of consumer `index` of `consumers` (round-robin).
pub fn assignment(partitions: &[PartitionInfo], consumers: usize, index: usize) -> Vec<PartitionInfo> {
    partitions.iter().enumerate().filter(|(i, _)| i % consumers.max(1) == index).map(|(_, p)| p.clone()).collect()
}

impl Consumer {
    /// Connects to the leaders of its partitions and takes their latest offsets.
    pub fn connect(
        index: usize,
        cfg: Arc<RunConfig>,
        layout: &TopicLayout,
        shared: Arc<Shared>,
    ) -> Result<Consumer, Error> {
        let opts = ConnectOptions {
            client_id: format!("{}-consumer-{index}", cfg.client_id),
            request_timeout: cfg.request_timeout,
        };
        let mine = assignment(&layout.partitions, cfg.consumers, index);
        let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for p in &mine {
            by_leader.entry(p.leader_addr.clone()).or_default().push(p.index);
        }
        let start_max = (cfg.batch_max_bytes as i64 * 2).clamp(1 << 20, MAX_PARTITION_FETCH as i64) as i32;
        let mut links = Vec::new();
        for (addr, parts) in by_leader {
            let mut conn = Connection::connect(&addr, &opts)?;
            if let Ok(s) = conn.writer.socket() {
                shared.register_socket(s);
            }
            let offsets = latest_offsets(&mut conn, &layout.topic, &parts)?;
            let positions = offsets
                .into_iter()
                .map(|(partition, offset)| Position { partition, offset, max_bytes: start_max })
                .collect();
            links.push(Link { conn, positions });
        }
        Ok(Consumer { index, cfg, topic: layout.topic.clone(), shared, links })
    }

    pub fn spawn(self) -> Result<JoinHandle<()>, Error> {
        let shared = self.shared.clone();
        thread::Builder::new()
            .name(format!("consumer-{}", self.index))
            .spawn(move || {
                if let Err(e) = self.run() {
                    if !shared.stopped() {
                        shared.fail(e);
                    }
                }
            })
            .map_err(|e| Error::Panic { role: "consumer", detail: format!("cannot start thread: {e}") })
    }

    fn run(mut self) -> Result<(), Error> {
        if self.links.is_empty() {
            return Ok(()); // more consumers than partitions
        }
        let mut samples = Samples::default();
        while !self.shared.consumers_stop.load(Ordering::Relaxed) {
            for li in 0..self.links.len() {
                self.fetch_once(li, &mut samples)?;
                if self.shared.consumers_stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        Ok(())
    }

    fn fetch_once(&mut self, li: usize, samples: &mut Samples) -> Result<(), Error> {
        let shared = self.shared.clone();
        let link = &mut self.links[li];
        let version = link.conn.versions.fetch;
        let partitions = link
            .positions
            .iter()
            .map(|p| {
                FetchPartition::default()
                    .with_partition(p.partition)
                    .with_fetch_offset(p.offset)
                    .with_partition_max_bytes(p.max_bytes)
                    .with_current_leader_epoch(-1)
                    .with_last_fetched_epoch(-1)
                    .with_log_start_offset(-1)
            })
            .collect();
        let req = FetchRequest::default()
            .with_replica_id((-1).into())
            .with_max_wait_ms(self.cfg.fetch_max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(64 << 20)
            .with_isolation_level(0)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(self.topic.clone())))
                .with_partitions(partitions)]);
        let resp = link.conn.call(&req, version);
        let received = shared.clock.now_ns();
        let resp = resp?;
        if resp.error_code != 0 {
            return Err(Error::Fetch { topic: self.topic.clone(), partition: -1, detail: code_name(resp.error_code) });
        }
        samples.clear();
        for t in resp.responses {
            for pd in t.partitions {
                let Some(pos) = link.positions.iter_mut().find(|p| p.partition == pd.partition_index) else {
                    continue;
                };
                if pd.error_code != 0 {
                    return Err(Error::Fetch {
                        topic: self.topic.clone(),
                        partition: pd.partition_index,
                        detail: code_name(pd.error_code),
                    });
                }
                let Some(records) = pd.records else { continue };
                if records.is_empty() {
                    continue;
                }
                let (batches, next) = whole_batches(records);
                if batches.is_empty() {
                    // One batch larger than the limit: ask for more next time.
                    pos.max_bytes = pos.max_bytes.saturating_mul(2).min(MAX_PARTITION_FETCH);
                    continue;
                }
                for mut batch in batches {
                    let set = RecordBatchDecoder::decode(&mut batch).map_err(|e| Error::Fetch {
                        topic: self.topic.clone(),
                        partition: pd.partition_index,
                        detail: format!("undecodable record batch: {e}"),
                    })?;
                    for r in &set.records {
                        if r.offset < pos.offset {
                            continue; // a batch may start before the offset asked for
                        }
                        let Some(stamp) = r.value.as_deref().and_then(Stamp::read) else { continue };
                        if stamp.run_id != shared.run_id {
                            continue;
                        }
                        samples.push(
                            received.saturating_sub(stamp.intended_ns),
                            shared.window().contains(stamp.intended_ns),
                        );
                    }
                }
                if let Some(next) = next {
                    pos.offset = pos.offset.max(next);
                }
            }
        }
        shared.e2e.record(samples);
        Ok(())
    }
}
