//! Admin and metadata APIs against the real broker: ListOffsets by timestamp
//! (librdkafka's offsets_for_times), DescribeConfigs / AlterConfigs /
//! IncrementalAlterConfigs enforced on running partitions, CreatePartitions,
//! DeleteRecords and DescribeCluster, each also across a restart where it
//! matters. rdkafka's AdminClient is used where it has the call; the raw
//! protocol (kafka-protocol's types over a TCP socket) where it does not
//! (IncrementalAlterConfigs, DescribeCluster).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::admin::{AdminOptions, AlterConfig, ConfigSource, NewPartitions, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

use common::*;

const KIB: usize = 1024;
/// Error codes checked in raw responses.
const INVALID_CONFIG: i16 = 40;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REQUEST: i16 = 42;
const OFFSET_OUT_OF_RANGE: i16 = 1;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// One request over a fresh connection; panics on any transport or decoding error.
fn call<R: Request>(addr: &str, version: i16, req: &R) -> R::Response {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(CLIENT_TIMEOUT)).expect("timeout");
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("ringmq-admin-test")))
        .encode(&mut buf, R::header_version(version))
        .expect("encode header");
    req.encode(&mut buf, version).expect("encode request");
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    s.write_all(&buf).expect("send");
    let mut size = [0u8; 4];
    s.read_exact(&mut size).expect("response size");
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut body).expect("response body");
    let mut b = Bytes::from(body);
    let header = ResponseHeader::decode(&mut b, R::Response::header_version(version)).expect("response header");
    assert_eq!(header.correlation_id, 7);
    let resp = R::Response::decode(&mut b, version).expect("decode response");
    assert_eq!(b.remaining(), 0, "bytes left after the response");
    resp
}

fn admin_opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))).request_timeout(Some(Duration::from_secs(30)))
}

/// IncrementalAlterConfigs v1 on one topic: (key, op, value); returns the error code.
fn incremental_alter(
    addr: &str,
    topic: &str,
    changes: &[(&str, i8, Option<&str>)],
    validate_only: bool,
) -> (i16, Option<String>) {
    use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::IncrementalAlterConfigsRequest;
    let configs = changes
        .iter()
        .map(|(k, op, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_config_operation(*op)
                .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
        })
        .collect();
    let req = IncrementalAlterConfigsRequest::default().with_validate_only(validate_only).with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(configs),
    ]);
    let resp = call(addr, 1, &req);
    assert_eq!(resp.responses.len(), 1);
    let r = &resp.responses[0];
    (r.error_code, r.error_message.as_ref().map(|m| m.to_string()))
}

/// AlterConfigs v0 (legacy) on one resource; returns the error code.
fn legacy_alter(addr: &str, resource_type: i8, name: &str, configs: &[(&str, &str)]) -> i16 {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    use kafka_protocol::messages::AlterConfigsRequest;
    let configs = configs
        .iter()
        .map(|(k, v)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(k.to_string()))
                .with_value(Some(StrBytes::from_string(v.to_string())))
        })
        .collect();
    let req = AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_configs(configs)]);
    let resp = call(addr, 0, &req);
    resp.responses[0].error_code
}

const SET: i8 = 0;
const DELETE: i8 = 1;

/// (value, source) of a topic config, through rdkafka's DescribeConfigs.
fn describe(addr: &str, topic: &str, key: &str) -> (Option<String>, ConfigSource) {
    let admin = admin(addr);
    let res = rt()
        .block_on(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &admin_opts()))
        .expect("describe_configs");
    let resource = res.into_iter().next().expect("one resource").unwrap_or_else(|e| panic!("describe {topic}: {e:?}"));
    let entry = resource
        .get(key)
        .unwrap_or_else(|| panic!("{key} missing from DescribeConfigs of {topic}: {:?}", resource.entries));
    (entry.value.clone(), source(&entry.source))
}

/// `ConfigSource` is not `Clone`: a copy of it.
fn source(s: &ConfigSource) -> ConfigSource {
    match s {
        ConfigSource::Unknown => ConfigSource::Unknown,
        ConfigSource::DynamicTopic => ConfigSource::DynamicTopic,
        ConfigSource::DynamicBroker => ConfigSource::DynamicBroker,
        ConfigSource::DynamicDefaultBroker => ConfigSource::DynamicDefaultBroker,
        ConfigSource::StaticBroker => ConfigSource::StaticBroker,
        ConfigSource::Default => ConfigSource::Default,
    }
}

/// Sends one record and returns its delivery result.
fn try_produce(
    p: &rdkafka::producer::FutureProducer,
    topic: &str,
    partition: i32,
    payload: &[u8],
    timestamp_ms: Option<i64>,
) -> Result<i64, KafkaError> {
    let mut rec = FutureRecord::<[u8], [u8]>::to(topic).partition(partition).payload(payload);
    if let Some(ts) = timestamp_ms {
        rec = rec.timestamp(ts);
    }
    rt().block_on(p.send(rec, Duration::from_secs(30))).map(|(_, off)| off).map_err(|(e, _)| e)
}

fn offsets_for_times(addr: &str, topic: &str, timestamps: &[i64]) -> Vec<Offset> {
    let c = consumer(addr);
    timestamps
        .iter()
        .map(|&ts| {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, 0, Offset::Offset(ts)).expect("tpl");
            let out =
                c.offsets_for_times(tpl, CLIENT_TIMEOUT).unwrap_or_else(|e| panic!("offsets_for_times({ts}): {e}"));
            let elem = out.find_partition(topic, 0).expect("partition in answer");
            assert!(elem.error().is_ok(), "offsets_for_times({ts}): {:?}", elem.error());
            elem.offset()
        })
        .collect()
}

/// Bytes of data in a partition's segments.
fn data_bytes(broker: &Broker, topic: &str) -> u64 {
    segments(&partition_dir(broker.data_dir(), topic, 0)).iter().map(|(_, p)| segment_data_len(p)).sum()
}

// ---------------------------------------------------------------------------
// ListOffsets by timestamp
// ---------------------------------------------------------------------------

#[test]
fn offsets_for_times_finds_records_before_between_and_after_also_after_restart() {
    let mut broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("times");
    // 64 KiB segments: 60 records of 10 KiB fill several, so lookups go
    // through sealed segments' time indexes.
    create_topic(&addr, &topic, 1, &[("segment.bytes", "65536")]);
    let base_ts = 1_700_000_000_000i64;
    let n = 60i64;
    let p = producer(&addr, &[("linger.ms", "0")]);
    for i in 0..n {
        let off =
            try_produce(&p, &topic, 0, &random_bytes(i as u64, 10 * KIB), Some(base_ts + i * 1000)).expect("produce");
        assert_eq!(off, i);
    }
    assert!(segments(&partition_dir(broker.data_dir(), &topic, 0)).len() >= 5, "expected several segments");

    let queries = [
        base_ts - 1_000_000,
        base_ts,
        base_ts + 500,
        base_ts + 17_000,
        base_ts + 41_999,
        base_ts + 59_000,
        base_ts + 59_001,
        base_ts + 10_000_000,
    ];
    let expected = [
        Offset::Offset(0),
        Offset::Offset(0),
        Offset::Offset(1),
        Offset::Offset(17),
        Offset::Offset(42),
        Offset::Offset(59),
        Offset::End,
        Offset::End,
    ];
    assert_eq!(offsets_for_times(&addr, &topic, &queries), expected, "before restart");

    broker.kill9();
    broker.restart();
    assert_eq!(offsets_for_times(&addr, &topic, &queries), expected, "after kill -9 and restart");
}

/// Raw ListOffsets v7 of partition `partition` at `timestamp`: (error, offset, timestamp).
fn raw_list_offsets(addr: &str, topic: &str, partition: i32, timestamp: i64) -> (i16, i64, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
    let req =
        ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_timestamp(timestamp)])]);
    let resp = call(addr, 7, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset, p.timestamp)
}

#[test]
fn list_offsets_max_timestamp_answers_the_newest_record_not_the_last() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("maxts");
    create_topic(&addr, &topic, 1, &[]);
    assert_eq!(raw_list_offsets(&addr, &topic, 0, -3), (0, -1, -1), "empty partition");
    let p = producer(&addr, &[("linger.ms", "0")]);
    for (i, ts) in [5_000i64, 9_000, 7_000, 1_000].into_iter().enumerate() {
        assert_eq!(try_produce(&p, &topic, 0, b"v", Some(ts)).expect("produce"), i as i64);
    }
    assert_eq!(raw_list_offsets(&addr, &topic, 0, -3), (0, 1, 9_000));
    // Timestamp lookups: the first record at or after the time, in offset order.
    assert_eq!(raw_list_offsets(&addr, &topic, 0, 6_000), (0, 1, 9_000));
    assert_eq!(raw_list_offsets(&addr, &topic, 0, 500), (0, 0, 5_000));
    assert_eq!(raw_list_offsets(&addr, &topic, 0, 9_001), (0, -1, -1));
}

#[test]
fn timestamp_lookups_and_delete_records_reach_partitions_on_every_shard() {
    let broker = Broker::start(BrokerOpts::default().arg("--cores").arg("2"));
    let addr = broker.addr();
    // A name whose 4 partitions are spread over both shards.
    let topic = loop {
        let t = unique_topic("shardsadm");
        let owners: std::collections::BTreeSet<usize> =
            (0..4).map(|p| ringmq::runtime::shard::shard_of(&t, p, 2)).collect();
        if owners.len() == 2 {
            break t;
        }
    };
    create_topic(&addr, &topic, 4, &[]);
    let p = producer(&addr, &[("linger.ms", "0")]);
    for part in 0..4 {
        for i in 0..10i64 {
            try_produce(&p, &topic, part, b"v", Some(1_000_000 + i * 1000)).expect("produce");
        }
    }
    for part in 0..4 {
        assert_eq!(raw_list_offsets(&addr, &topic, part, 1_004_500), (0, 5, 1_005_000), "partition {part}");
    }
    let admin = admin(&addr);
    let mut tpl = TopicPartitionList::new();
    for part in 0..4 {
        tpl.add_partition_offset(&topic, part, Offset::Offset(i64::from(part) + 2)).expect("tpl");
    }
    let res = rt().block_on(admin.delete_records(&tpl, &admin_opts())).expect("delete_records");
    for part in 0..4 {
        let e = res.find_partition(&topic, part).expect("partition");
        assert!(e.error().is_ok(), "partition {part}: {:?}", e.error());
        assert_eq!(watermarks(&addr, &topic, part), (i64::from(part) + 2, 10), "partition {part}");
    }
}

// ---------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------

#[test]
fn incremental_alter_configs_is_described_enforced_and_survives_restart() {
    let mut broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("cfg");
    create_topic(&addr, &topic, 1, &[]);
    let (value, source) = describe(&addr, &topic, "max.message.bytes");
    assert_eq!((value.as_deref(), source), (Some("1048588"), ConfigSource::Default));
    assert_eq!(
        describe(&addr, &topic, "segment.bytes").1,
        ConfigSource::StaticBroker,
        "the harness sets --segment-bytes"
    );

    let p = producer(&addr, &[]);
    try_produce(&p, &topic, 0, &vec![1u8; 8 * KIB], None).expect("8 KiB accepted before the change");
    let (code, message) = incremental_alter(
        &addr,
        &topic,
        &[("max.message.bytes", SET, Some("4096")), ("retention.bytes", SET, Some("123456789"))],
        false,
    );
    assert_eq!(code, 0, "IncrementalAlterConfigs: {message:?}");
    for (key, want) in [("max.message.bytes", "4096"), ("retention.bytes", "123456789")] {
        let (value, source) = describe(&addr, &topic, key);
        assert_eq!((value.as_deref(), source), (Some(want), ConfigSource::DynamicTopic), "{key}");
    }
    let too_large = try_produce(&p, &topic, 0, &vec![1u8; 8 * KIB], None);
    assert!(
        matches!(too_large, Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))),
        "8 KiB batch with max.message.bytes=4096: {too_large:?}"
    );
    try_produce(&p, &topic, 0, &[2u8; 100], None).expect("small record still accepted");
    drop(p);

    broker.stop();
    broker.restart();
    for (key, want) in [("max.message.bytes", "4096"), ("retention.bytes", "123456789")] {
        let (value, source) = describe(&addr, &topic, key);
        assert_eq!((value.as_deref(), source), (Some(want), ConfigSource::DynamicTopic), "{key} after restart");
    }
    let p = producer(&addr, &[]);
    let too_large = try_produce(&p, &topic, 0, &vec![1u8; 8 * KIB], None);
    assert!(
        matches!(too_large, Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))),
        "after restart: {too_large:?}"
    );

    // DELETE goes back to the broker default, enforced at once.
    let (code, message) = incremental_alter(&addr, &topic, &[("max.message.bytes", DELETE, None)], false);
    assert_eq!(code, 0, "{message:?}");
    assert_eq!(describe(&addr, &topic, "max.message.bytes"), (Some("1048588".to_string()), ConfigSource::Default));
    try_produce(&p, &topic, 0, &vec![1u8; 8 * KIB], None).expect("8 KiB accepted again");
}

#[test]
fn unknown_or_invalid_config_is_refused_and_changes_nothing() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("badcfg");
    create_topic(&addr, &topic, 1, &[]);
    // One bad key fails the whole resource: the good change is not applied.
    let (code, message) = incremental_alter(
        &addr,
        &topic,
        &[("retention.ms", SET, Some("1000")), ("no.such.config", SET, Some("1"))],
        false,
    );
    assert_eq!(code, INVALID_CONFIG, "{message:?}");
    assert!(message.unwrap_or_default().contains("no.such.config"));
    let (code, _) = incremental_alter(&addr, &topic, &[("cleanup.policy", SET, Some("compact"))], false);
    assert_eq!(code, INVALID_CONFIG, "cleanup.policy=compact");
    assert_eq!(describe(&addr, &topic, "retention.ms").1, ConfigSource::Default);

    // Legacy AlterConfigs: same refusal (raw: rdkafka 0.37's alter_configs
    // drops per-resource errors and always reports success).
    assert_eq!(legacy_alter(&addr, 2, &topic, &[("no.such.config", "1")]), INVALID_CONFIG);
}

#[test]
fn validate_only_checks_a_config_change_without_applying_it() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("validate");
    create_topic(&addr, &topic, 1, &[]);
    let (code, message) = incremental_alter(&addr, &topic, &[("retention.ms", SET, Some("1000"))], true);
    assert_eq!(code, 0, "{message:?}");
    assert_eq!(describe(&addr, &topic, "retention.ms").1, ConfigSource::Default, "validate_only applied the change");
    let (code, _) = incremental_alter(&addr, &topic, &[("retention.ms", SET, Some("soon"))], true);
    assert_eq!(code, INVALID_CONFIG);
}

#[test]
fn legacy_alter_configs_from_rdkafka_replaces_overrides() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("legacy");
    create_topic(&addr, &topic, 1, &[("retention.ms", "86400000")]);
    let admin = admin(&addr);
    let res = rt()
        .block_on(admin.alter_configs(
            &[AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("max.message.bytes", "2048")],
            &admin_opts(),
        ))
        .expect("alter_configs");
    assert!(res[0].is_ok(), "{res:?}");
    assert_eq!(describe(&addr, &topic, "max.message.bytes"), (Some("2048".to_string()), ConfigSource::DynamicTopic));
    // AlterConfigs sets the whole override set: retention.ms went back to the default.
    assert_eq!(describe(&addr, &topic, "retention.ms").1, ConfigSource::Default);
    let p = producer(&addr, &[]);
    let r = try_produce(&p, &topic, 0, &vec![0u8; 4 * KIB], None);
    assert!(matches!(r, Err(KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge))), "{r:?}");
}

#[test]
fn retention_bytes_altered_on_a_running_topic_deletes_old_segments() {
    let broker = Broker::start(BrokerOpts::default().arg("--retention-check-ms").arg("200"));
    let addr = broker.addr();
    let topic = unique_topic("shrink");
    create_topic(&addr, &topic, 1, &[("segment.bytes", "65536")]);
    let p = producer(&addr, &[("linger.ms", "0")]);
    for i in 0..60u64 {
        try_produce(&p, &topic, 0, &random_bytes(i, 10 * KIB), None).expect("produce");
    }
    assert_eq!(watermarks(&addr, &topic, 0), (0, 60), "nothing deleted before the change");
    let (code, message) = incremental_alter(&addr, &topic, &[("retention.bytes", SET, Some("150000"))], false);
    assert_eq!(code, 0, "{message:?}");
    // Retention moves the log start first, then deletes the files below it.
    let dir = partition_dir(broker.data_dir(), &topic, 0);
    let low = wait_for("retention.bytes to move the log start and delete the segment files below it", || {
        let (low, high) = watermarks(&addr, &topic, 0);
        assert_eq!(high, 60);
        (low > 0 && segment_bases(&dir).iter().all(|&base| base as i64 >= low)).then_some(low)
    });
    let kept = data_bytes(&broker, &topic);
    eprintln!("log start {low}, {kept} bytes kept");
    assert!(kept <= 150_000 + 65_536, "{kept} bytes kept with retention.bytes=150000 and 64 KiB segments");
}

#[test]
fn segment_bytes_altered_on_a_running_topic_sizes_the_next_segments() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("resegment");
    create_topic(&addr, &topic, 1, &[]);
    let p = producer(&addr, &[("linger.ms", "0")]);
    try_produce(&p, &topic, 0, &[0u8; 100], None).expect("produce");
    let (code, message) = incremental_alter(&addr, &topic, &[("segment.bytes", SET, Some("65536"))], false);
    assert_eq!(code, 0, "{message:?}");
    for i in 0..40u64 {
        try_produce(&p, &topic, 0, &random_bytes(i, 10 * KIB), None).expect("produce");
    }
    let segs: Vec<u64> = segments(&partition_dir(broker.data_dir(), &topic, 0))
        .iter()
        .map(|(_, p)| segment_data_len(p))
        .filter(|&n| n > 0)
        .collect();
    assert!(segs.len() >= 5, "400 KiB with segment.bytes=65536 should make several segments: {segs:?}");
    assert!(segs.iter().all(|&n| n <= 65_536), "{segs:?}");
    assert_eq!(read_all(&addr, &topic, 0, Duration::from_secs(60)).len(), 41);
}

// ---------------------------------------------------------------------------
// CreatePartitions
// ---------------------------------------------------------------------------

fn create_partitions(addr: &str, topic: &str, count: usize) -> Result<(), RDKafkaErrorCode> {
    let admin = admin(addr);
    let res = rt()
        .block_on(admin.create_partitions(&[NewPartitions::new(topic, count)], &admin_opts()))
        .expect("create_partitions");
    match &res[0] {
        Ok(_) => Ok(()),
        Err((_, code)) => Err(*code),
    }
}

fn partitions_grow_from_4_to_6(cores: Option<&str>) {
    let mut opts = BrokerOpts::default();
    if let Some(n) = cores {
        opts = opts.arg("--cores").arg(n);
    }
    let mut broker = Broker::start(opts);
    let addr = broker.addr();
    // With 2 shards, a name whose partitions 4 and 5 live on different shards.
    let topic = loop {
        let t = unique_topic("grow");
        let shards = cores.map_or(1, |n| n.parse().expect("cores"));
        if shards == 1
            || ringmq::runtime::shard::shard_of(&t, 4, shards) != ringmq::runtime::shard::shard_of(&t, 5, shards)
        {
            break t;
        }
    };
    create_topic(&addr, &topic, 4, &[]);
    create_partitions(&addr, &topic, 6).expect("CreatePartitions 4 -> 6");
    assert_eq!(partition_count(&addr, &topic), 6);
    let p = producer(&addr, &[]);
    for part in [4, 5] {
        assert_eq!(
            produce_one(&p, &topic, part, None, format!("p{part}").as_bytes()),
            0,
            "first record of partition {part}"
        );
    }
    assert_eq!(create_partitions(&addr, &topic, 5), Err(RDKafkaErrorCode::InvalidPartitions), "shrinking");
    assert_eq!(create_partitions(&addr, &topic, 6), Err(RDKafkaErrorCode::InvalidPartitions), "same count");
    drop(p);

    broker.stop();
    broker.restart();
    assert_eq!(partition_count(&addr, &topic), 6, "after restart");
    let p = producer(&addr, &[]);
    for part in [4, 5] {
        assert_eq!(produce_one(&p, &topic, part, None, b"again"), 1, "partition {part} after restart");
        let recs = read_all(&addr, &topic, part, Duration::from_secs(60));
        assert_eq!(
            recs.iter().map(|r| r.payload.clone().unwrap_or_default()).collect::<Vec<_>>(),
            vec![format!("p{part}").into_bytes(), b"again".to_vec()]
        );
    }
}

#[test]
fn create_partitions_4_to_6_takes_writes_at_once_and_survives_restart() {
    partitions_grow_from_4_to_6(None);
}

#[test]
fn create_partitions_4_to_6_with_two_shards() {
    partitions_grow_from_4_to_6(Some("2"));
}

#[test]
fn create_partitions_raw_decrease_is_invalid_partitions() {
    use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use kafka_protocol::messages::{CreatePartitionsRequest, TopicName};
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("shrinkp");
    create_topic(&addr, &topic, 4, &[]);
    let req =
        CreatePartitionsRequest::default().with_timeout_ms(10_000).with_topics(vec![CreatePartitionsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.clone())))
            .with_count(2)]);
    let resp = call(&addr, 3, &req);
    assert_eq!(resp.results[0].error_code, INVALID_PARTITIONS);
    assert!(resp.results[0].error_message.is_some());
    assert_eq!(partition_count(&addr, &topic), 4);
}

// ---------------------------------------------------------------------------
// DeleteRecords
// ---------------------------------------------------------------------------

/// Consumes from `offset` with auto.offset.reset=error: the first record's
/// offset, or the error.
fn first_fetch(addr: &str, topic: &str, offset: i64) -> Result<i64, KafkaError> {
    let c = consumer(addr);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset)).expect("tpl");
    c.assign(&tpl).expect("assign");
    wait_for("a record or an error", || {
        c.poll(Duration::from_millis(200)).map(|r| r.map(|m| rdkafka::Message::offset(&m)))
    })
}

/// Error code of a raw Fetch v4 of partition 0 at `offset`.
fn raw_fetch_error(addr: &str, topic: &str, offset: i64) -> i16 {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = call(addr, 4, &req);
    resp.responses[0].partitions[0].error_code
}

/// A fetch below the log start: OFFSET_OUT_OF_RANGE on the wire, and
/// librdkafka (auto.offset.reset=error) reports that it cannot reset.
fn assert_out_of_range(addr: &str, topic: &str, offset: i64) {
    assert_eq!(raw_fetch_error(addr, topic, offset), OFFSET_OUT_OF_RANGE, "raw fetch at {offset}");
    match first_fetch(addr, topic, offset) {
        Err(KafkaError::MessageConsumption(code)) => {
            assert!(
                matches!(code, RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange),
                "consumer at {offset}: {code:?}"
            )
        }
        other => panic!("consumer at {offset} below the log start: {other:?}"),
    }
}

#[test]
fn delete_records_moves_the_log_start_durably() {
    let mut broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("delrec");
    create_topic(&addr, &topic, 1, &[("segment.bytes", "65536")]);
    let p = producer(&addr, &[("linger.ms", "0")]);
    for i in 0..60u64 {
        try_produce(&p, &topic, 0, &random_bytes(i, 10 * KIB), None).expect("produce");
    }
    let dir = partition_dir(broker.data_dir(), &topic, 0);
    let before = segments(&dir);
    let cut = 33i64;

    let admin = admin(&addr);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(cut)).expect("tpl");
    let res = rt().block_on(admin.delete_records(&tpl, &admin_opts())).expect("delete_records");
    let elem = res.find_partition(&topic, 0).expect("partition");
    assert!(elem.error().is_ok(), "{:?}", elem.error());
    assert_eq!(elem.offset(), Offset::Offset(cut), "low watermark answered");

    assert_eq!(watermarks(&addr, &topic, 0), (cut, 60));
    let after = segments(&dir);
    assert!(after.len() < before.len(), "no segment deleted: {before:?} -> {after:?}");
    assert!(after[0].0 as i64 <= cut, "the segment holding {cut} is kept: {after:?}");
    assert!(after.get(1).is_none_or(|s| s.0 as i64 > cut), "segments wholly below {cut} are gone: {after:?}");
    assert_out_of_range(&addr, &topic, cut - 1);
    assert_eq!(first_fetch(&addr, &topic, cut).expect("fetch at the start"), cut);
    let earliest = offsets_for_times(&addr, &topic, &[0]);
    assert_eq!(earliest, vec![Offset::Offset(cut)], "timestamp lookups skip deleted records");

    broker.kill9();
    broker.restart();
    assert_eq!(watermarks(&addr, &topic, 0), (cut, 60), "after kill -9 and restart");
    assert_out_of_range(&addr, &topic, cut - 1);
    assert_eq!(first_fetch(&addr, &topic, cut).expect("fetch at the start after restart"), cut);
}

#[test]
fn delete_records_past_the_high_watermark_is_refused() {
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("delpast");
    create_topic(&addr, &topic, 1, &[]);
    let p = producer(&addr, &[]);
    produce_one(&p, &topic, 0, None, b"x");
    let admin = admin(&addr);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(5)).expect("tpl");
    let res = rt().block_on(admin.delete_records(&tpl, &admin_opts()));
    let refused = match res {
        Err(_) => true,
        Ok(list) => list.find_partition(&topic, 0).is_some_and(|e| e.error().is_err()),
    };
    assert!(refused, "DeleteRecords past the high watermark was accepted");
    assert_eq!(watermarks(&addr, &topic, 0), (0, 1));
}

// ---------------------------------------------------------------------------
// DescribeCluster, DescribeConfigs of the broker, Metadata fields
// ---------------------------------------------------------------------------

#[test]
fn describe_cluster_answers_this_node_and_the_cluster_id() {
    use kafka_protocol::messages::DescribeClusterRequest;
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    for version in [0, 1, 2] {
        let resp = call(
            &addr,
            version,
            &DescribeClusterRequest::default().with_endpoint_type(1).with_include_cluster_authorized_operations(true),
        );
        assert_eq!(resp.error_code, 0, "v{version}");
        assert_eq!(resp.cluster_id.as_str(), "ringmq");
        assert_eq!(resp.controller_id.0, 0);
        assert_eq!(resp.brokers.len(), 1);
        let b = &resp.brokers[0];
        assert_eq!((b.broker_id.0, format!("{}:{}", b.host.as_str(), b.port)), (0, addr.clone()), "v{version}");
    }
}

#[test]
fn broker_configs_are_described_read_only() {
    let broker = Broker::start(BrokerOpts::default().default_partitions(3));
    let addr = broker.addr();
    let admin = admin(&addr);
    let res = rt()
        .block_on(admin.describe_configs(&[ResourceSpecifier::Broker(0)], &admin_opts()))
        .expect("describe_configs");
    let resource = res.into_iter().next().expect("one").expect("broker 0 described");
    let partitions = resource.get("num.partitions").expect("num.partitions");
    assert_eq!(
        (partitions.value.as_deref(), partitions.is_read_only, source(&partitions.source)),
        (Some("3"), true, ConfigSource::StaticBroker)
    );
    assert_eq!(resource.get("log.segment.bytes").and_then(|e| e.value.as_deref()), Some("16777216"));
    assert_eq!(
        legacy_alter(&addr, 4, "0", &[("num.partitions", "5")]),
        INVALID_REQUEST,
        "altering a read-only broker config"
    );
}

#[test]
fn metadata_v12_marks_topics_not_internal_with_authorized_operations() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    let broker = Broker::start(BrokerOpts::default());
    let addr = broker.addr();
    let topic = unique_topic("md");
    create_topic(&addr, &topic, 2, &[]);
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_string(topic.clone()))))
        ]))
        .with_include_topic_authorized_operations(true);
    let resp = call(&addr, 12, &req);
    let t = &resp.topics[0];
    assert_eq!(t.error_code, 0);
    assert!(!t.is_internal);
    assert!(!t.topic_id.is_nil());
    assert!(t.topic_authorized_operations > 0, "authorized operations {}", t.topic_authorized_operations);
    assert_eq!(t.partitions.len(), 2);
}
