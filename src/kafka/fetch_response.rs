//! Hand-written encoder for Fetch responses (API key 1, versions 4-16) that
//! never copies record bytes.
//!
//! A fetch response is mostly record batches that already live in memory as
//! `Bytes` slices of log segments. Instead of serialising them into one
//! response buffer, [`encode`] returns the frame as a list of chunks: the
//! framing and per-partition metadata are written into small buffers (all
//! split off one `BytesMut` allocation sized up front) and frozen, and each
//! partition's record chunks are pushed between them as-is, sharing memory
//! with the log. Writing the chunks in order (e.g. with a vectored write)
//! sends the whole frame:
//!
//! ```text
//! size:int32  correlation_id:int32  [header tags, v12+]  body
//! ```
//!
//! The body follows Kafka's `FetchResponse.json` schema field by field:
//!
//! | field                     | versions | encoding                                           |
//! |---------------------------|----------|----------------------------------------------------|
//! | throttle_time_ms          | 4+       | int32                                              |
//! | error_code, session_id    | 7+       | int16, int32                                       |
//! | responses                 | 4+       | array (compact from v12)                           |
//! | .. topic                  | 4-12     | string (compact at v12)                            |
//! | .. topic_id               | 13+      | uuid                                               |
//! | .. partitions             | 4+       | array (compact from v12)                           |
//! | .... partition_index, error_code, high_watermark, last_stable_offset | 4+ | int32, int16, int64, int64 |
//! | .... log_start_offset     | 5+       | int64                                              |
//! | .... aborted_transactions | 4+       | always null (see below)                            |
//! | .... preferred_read_replica | 11+    | int32, always -1                                   |
//! | .... records              | 4+       | bytes (compact from v12), never null               |
//!
//! From v12 (flexible versions) the response header and every struct end with
//! a tagged-field section. It is always written as a single `0x00` (no tagged
//! fields): the optional tagged fields of the schema (`DivergingEpoch`,
//! `CurrentLeader`, `SnapshotId`, `NodeEndpoints`) are never sent, not even
//! with their default values, because old librdkafka releases misread them.
//!
//! `aborted_transactions` is nullable in every version that has it (the
//! schema says `"versions": "4+", "nullableVersions": "4+"`; the generated
//! `kafka_protocol` type is `Option<Vec<AbortedTransaction>>`). ringmq keeps no
//! transaction index, which is the situation in which Kafka writes null: its
//! `KafkaApis` sets `abortedTransactions = data.abortedTransactions.orNull`,
//! and the log read only collects aborted transactions for `read_committed`
//! fetches. Null is an int32 `-1` before v12 and a compact length `0` from
//! v12. Clients treat null like an empty list (the Java consumer maps both to
//! "no aborted transactions"; librdkafka reads the count as -1 and loops zero
//! times).
//!
//! `records` is nullable too, but an empty record set is written as a
//! zero-length field, as Kafka does (`MemoryRecords.EMPTY`): librdkafka
//! rejects a negative message set size.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// One partition of a fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPartition {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    /// Sent from v5.
    pub log_start_offset: i64,
    /// Record batches back to back, as slices of the log; may be empty.
    /// Empty slices are skipped.
    pub records: Vec<Bytes>,
}

/// One topic of a fetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchTopic {
    /// Sent up to v12.
    pub name: String,
    /// Sent from v13.
    pub topic_id: uuid::Uuid,
    pub partitions: Vec<FetchPartition>,
}

/// A whole response frame: `chunks`, concatenated, are the size prefix, the
/// response header and the body.
#[derive(Debug, Clone)]
pub struct FetchResponseFrame {
    pub chunks: Vec<Bytes>,
    /// Length of the frame including the 4-byte size prefix.
    pub total_bytes: usize,
}

/// Oldest Fetch version [`encode`] writes.
pub const MIN_VERSION: i16 = 4;
/// Newest Fetch version [`encode`] writes.
pub const MAX_VERSION: i16 = 16;

const FIRST_LOG_START_OFFSET_VERSION: i16 = 5;
const FIRST_SESSION_VERSION: i16 = 7;
const FIRST_PREFERRED_READ_REPLICA_VERSION: i16 = 11;
/// Compact encodings, tagged fields and response header v1.
const FIRST_FLEXIBLE_VERSION: i16 = 12;
const FIRST_TOPIC_ID_VERSION: i16 = 13;

const NO_PREFERRED_READ_REPLICA: i32 = -1;
/// Kafka refuses to serialise strings longer than this.
const MAX_STRING_LEN: usize = i16::MAX as usize;
/// Largest length or count a Kafka reader accepts: an int32, or for compact
/// encodings an unsigned varint holding length + 1 read into a Java int.
const MAX_LEN: usize = i32::MAX as usize - 1;

/// Why a response could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEncodeError {
    /// The version is outside `MIN_VERSION..=MAX_VERSION`.
    UnsupportedVersion(i16),
    /// A non-zero session id before v7, which has no field for it (the
    /// schema marks `SessionId` as not ignorable).
    SessionIdNotInVersion { version: i16, session_id: i32 },
    /// A topic name longer than `i16::MAX` bytes.
    TopicNameTooLong { topic_index: usize, len: usize },
    /// More topics or partitions than an array length can hold.
    TooManyElements { what: &'static str, count: usize },
    /// A partition's records are longer than a bytes field can hold.
    RecordsTooLarge { topic_index: usize, partition_index: i32, len: usize },
    /// The frame is longer than its int32 size prefix can say.
    FrameTooLarge { len: usize },
}

impl fmt::Display for FetchEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedVersion(v) => {
                write!(f, "Fetch v{v} is not supported (v{MIN_VERSION}-v{MAX_VERSION} are)")
            }
            Self::SessionIdNotInVersion { version, session_id } => {
                write!(f, "Fetch v{version} has no session id field, cannot send session id {session_id}")
            }
            Self::TopicNameTooLong { topic_index, len } => {
                write!(f, "topic #{topic_index} has a {len}-byte name, longer than {MAX_STRING_LEN}")
            }
            Self::TooManyElements { what, count } => write!(f, "{count} {what} do not fit in one response"),
            Self::RecordsTooLarge { topic_index, partition_index, len } => {
                write!(f, "{len} bytes of records for topic #{topic_index} partition {partition_index} do not fit in one field")
            }
            Self::FrameTooLarge { len } => write!(f, "a {len}-byte frame is too large for its size prefix"),
        }
    }
}

impl std::error::Error for FetchEncodeError {}

/// Encodes a whole Fetch response frame (size prefix, header, body) for
/// `version`, without copying the partitions' record chunks.
///
/// `error_code` and `session_id` exist from v7; before that `error_code` is
/// dropped (the schema marks it ignorable) and `session_id` must be 0.
///
/// # Errors
///
/// A [`FetchEncodeError`] when `version` is outside
/// `MIN_VERSION..=MAX_VERSION`, when a value cannot be represented in it (a
/// session id before v7, a topic name over `i16::MAX` bytes, lengths or
/// counts over `i32::MAX - 1`), or when the frame exceeds `i32::MAX` bytes.
pub fn encode(
    version: i16,
    correlation_id: i32,
    throttle_time_ms: i32,
    error_code: i16,
    session_id: i32,
    topics: &[FetchTopic],
) -> Result<FetchResponseFrame, FetchEncodeError> {
    if !(MIN_VERSION..=MAX_VERSION).contains(&version) {
        return Err(FetchEncodeError::UnsupportedVersion(version));
    }
    if version < FIRST_SESSION_VERSION && session_id != 0 {
        return Err(FetchEncodeError::SessionIdNotInVersion { version, session_id });
    }
    let mut w = FrameWriter::new(version >= FIRST_FLEXIBLE_VERSION, topics);

    // Size prefix (patched in `finish`) and response header.
    w.meta.put_i32(0);
    w.meta.put_i32(correlation_id);
    w.tagged_fields();

    w.meta.put_i32(throttle_time_ms);
    if version >= FIRST_SESSION_VERSION {
        w.meta.put_i16(error_code);
        w.meta.put_i32(session_id);
    }
    w.array_len(topics.len(), "topics")?;
    for (topic_index, topic) in topics.iter().enumerate() {
        if version < FIRST_TOPIC_ID_VERSION {
            w.string(&topic.name).map_err(|len| FetchEncodeError::TopicNameTooLong { topic_index, len })?;
        } else {
            w.meta.put_slice(topic.topic_id.as_bytes());
        }
        w.array_len(topic.partitions.len(), "partitions")?;
        for p in &topic.partitions {
            w.meta.put_i32(p.partition_index);
            w.meta.put_i16(p.error_code);
            w.meta.put_i64(p.high_watermark);
            w.meta.put_i64(p.last_stable_offset);
            if version >= FIRST_LOG_START_OFFSET_VERSION {
                w.meta.put_i64(p.log_start_offset);
            }
            w.null_array(); // aborted_transactions
            if version >= FIRST_PREFERRED_READ_REPLICA_VERSION {
                w.meta.put_i32(NO_PREFERRED_READ_REPLICA);
            }
            let len = p.records.iter().map(Bytes::len).sum();
            w.bytes_len(len).map_err(|len| FetchEncodeError::RecordsTooLarge {
                topic_index,
                partition_index: p.partition_index,
                len,
            })?;
            for chunk in &p.records {
                w.shared(chunk);
            }
            w.tagged_fields(); // partition
        }
        w.tagged_fields(); // topic
    }
    w.tagged_fields(); // response
    w.finish()
}

/// Accumulates the frame: metadata goes into `meta`, which is split off into
/// a chunk whenever a record chunk has to follow it.
struct FrameWriter {
    flexible: bool,
    meta: BytesMut,
    /// The first metadata piece (from the size prefix on), kept mutable
    /// until the size is known.
    head: BytesMut,
    head_cut: bool,
    /// `chunks[0]` is a placeholder for `head`.
    chunks: Vec<Bytes>,
    total: usize,
}

impl FrameWriter {
    fn new(flexible: bool, topics: &[FetchTopic]) -> Self {
        // Upper bounds: header and top-level fields 9 + 15 + 1 bytes, a topic
        // 5 + 16 + 5 + 1 bytes plus its name, a partition 4 + 2 + 3 * 8 + 5 +
        // 4 + 5 + 1 bytes; record chunks are not copied.
        let mut meta_capacity = 32;
        let mut chunk_capacity = 1;
        for t in topics {
            meta_capacity += 32 + t.name.len();
            for p in &t.partitions {
                meta_capacity += 48;
                chunk_capacity += 1 + p.records.len();
            }
        }
        let mut chunks = Vec::with_capacity(chunk_capacity);
        chunks.push(Bytes::new());
        FrameWriter {
            flexible,
            meta: BytesMut::with_capacity(meta_capacity),
            head: BytesMut::new(),
            head_cut: false,
            chunks,
            total: 0,
        }
    }

    fn uvarint(&mut self, mut v: u32) {
        while v >= 0x80 {
            self.meta.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.meta.put_u8(v as u8);
    }

    /// A compact length or count: `n + 1` as an unsigned varint (0 is null).
    fn compact_len(&mut self, n: usize) {
        // Callers check n <= MAX_LEN, so n + 1 fits in u32.
        self.uvarint(n as u32 + 1);
    }

    /// Array length; `Err` carries the count when it does not fit.
    fn array_len(&mut self, n: usize, what: &'static str) -> Result<(), FetchEncodeError> {
        if n > MAX_LEN {
            return Err(FetchEncodeError::TooManyElements { what, count: n });
        }
        if self.flexible {
            self.compact_len(n);
        } else {
            self.meta.put_i32(n as i32);
        }
        Ok(())
    }

    fn null_array(&mut self) {
        if self.flexible {
            self.meta.put_u8(0);
        } else {
            self.meta.put_i32(-1);
        }
    }

    /// Non-null string; `Err` carries its length when too long.
    fn string(&mut self, s: &str) -> Result<(), usize> {
        if s.len() > MAX_STRING_LEN {
            return Err(s.len());
        }
        if self.flexible {
            self.compact_len(s.len());
        } else {
            self.meta.put_i16(s.len() as i16);
        }
        self.meta.put_slice(s.as_bytes());
        Ok(())
    }

    /// Length of a non-null bytes field; `Err` carries it when too long.
    fn bytes_len(&mut self, len: usize) -> Result<(), usize> {
        if len > MAX_LEN {
            return Err(len);
        }
        if self.flexible {
            self.compact_len(len);
        } else {
            self.meta.put_i32(len as i32);
        }
        Ok(())
    }

    /// An empty tagged-field section, in flexible versions only.
    fn tagged_fields(&mut self) {
        if self.flexible {
            self.meta.put_u8(0);
        }
    }

    /// Appends `chunk` by reference, after the metadata written so far.
    fn shared(&mut self, chunk: &Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.cut();
        self.total += chunk.len();
        self.chunks.push(chunk.clone());
    }

    /// Moves the metadata written so far into its own piece.
    fn cut(&mut self) {
        let piece = self.meta.split();
        self.total += piece.len();
        if !self.head_cut {
            self.head = piece;
            self.head_cut = true;
        } else if !piece.is_empty() {
            self.chunks.push(piece.freeze());
        }
    }

    fn finish(mut self) -> Result<FetchResponseFrame, FetchEncodeError> {
        self.cut();
        let total = self.total;
        let size = i32::try_from(total - 4).map_err(|_| FetchEncodeError::FrameTooLarge { len: total })?;
        let mut head = std::mem::take(&mut self.head);
        if let Some(prefix) = head.get_mut(..4) {
            prefix.copy_from_slice(&size.to_be_bytes());
        }
        self.chunks[0] = head.freeze();
        Ok(FetchResponseFrame { chunks: self.chunks, total_bytes: total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::{FetchResponse, ResponseHeader, TopicName};
    use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
    use uuid::Uuid;

    const CORRELATION_ID: i32 = 0x1234_5678;
    const THROTTLE_TIME_MS: i32 = 25;
    const ERROR_CODE: i16 = 70; // FETCH_SESSION_ID_NOT_FOUND; any value does
    const SESSION_ID: i32 = 0x0bad_cafe;

    /// Session ids can only be sent from v7.
    fn session_id(version: i16) -> i32 {
        if version >= 7 {
            SESSION_ID
        } else {
            0
        }
    }

    /// `len` distinct-looking bytes starting at `seed`.
    fn chunk(seed: u8, len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| seed.wrapping_add(i as u8)).collect::<Vec<u8>>())
    }

    fn partition(partition_index: i32, error_code: i16, records: Vec<Bytes>) -> FetchPartition {
        let i = partition_index as i64;
        FetchPartition {
            partition_index,
            error_code,
            high_watermark: 1000 + i,
            last_stable_offset: 900 + i,
            log_start_offset: 10 + i,
            records,
        }
    }

    /// Two topics with two partitions each: one chunk, no records, several
    /// chunks (266 bytes: a two-byte compact length), and chunks with empty
    /// slices among them.
    fn sample_topics() -> Vec<FetchTopic> {
        vec![
            FetchTopic {
                name: "orders".into(),
                topic_id: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
                partitions: vec![partition(0, 0, vec![chunk(1, 70)]), partition(3, 1, vec![])],
            },
            FetchTopic {
                name: "payments.eu".into(),
                topic_id: Uuid::from_u128(0xfedc_ba98_7654_3210_0123_4567_89ab_cdef),
                partitions: vec![
                    partition(1, 0, vec![chunk(2, 61), chunk(3, 200), chunk(4, 5)]),
                    partition(2, 0, vec![Bytes::new(), chunk(5, 130), Bytes::new()]),
                ],
            },
        ]
    }

    fn versions() -> impl Iterator<Item = i16> {
        MIN_VERSION..=MAX_VERSION
    }

    fn encode_sample(version: i16, topics: &[FetchTopic]) -> FetchResponseFrame {
        encode(version, CORRELATION_ID, THROTTLE_TIME_MS, ERROR_CODE, session_id(version), topics)
            .unwrap_or_else(|e| panic!("v{version}: {e}"))
    }

    fn concat(chunks: &[Bytes]) -> Bytes {
        chunks.iter().flat_map(|c| c.iter().copied()).collect::<Vec<u8>>().into()
    }

    struct Decoded {
        size_prefix: i32,
        header: ResponseHeader,
        body: FetchResponse,
        trailing_bytes: usize,
    }

    fn decode_frame(version: i16, frame: &FetchResponseFrame) -> Decoded {
        let mut buf = concat(&frame.chunks);
        let size_prefix = i32::from_be_bytes(buf[..4].try_into().expect("4 bytes"));
        let mut buf = buf.split_off(4);
        let header = ResponseHeader::decode(&mut buf, FetchResponse::header_version(version))
            .unwrap_or_else(|e| panic!("v{version} header: {e}"));
        let body = FetchResponse::decode(&mut buf, version).unwrap_or_else(|e| panic!("v{version} body: {e}"));
        Decoded { size_prefix, header, body, trailing_bytes: buf.len() }
    }

    fn decode_sample(version: i16) -> Decoded {
        decode_frame(version, &encode_sample(version, &sample_topics()))
    }

    /// Pairs of (given, decoded) partitions, checking the shape matches.
    fn partition_pairs(
        version: i16,
        topics: &[FetchTopic],
        body: &FetchResponse,
    ) -> Vec<(FetchPartition, PartitionData)> {
        assert_eq!(body.responses.len(), topics.len(), "v{version}");
        let mut pairs = Vec::new();
        for (t, r) in topics.iter().zip(&body.responses) {
            assert_eq!(r.partitions.len(), t.partitions.len(), "v{version}");
            pairs.extend(t.partitions.iter().cloned().zip(r.partitions.iter().cloned()));
        }
        pairs
    }

    #[test]
    fn size_prefix_counts_every_byte_after_itself() {
        for v in versions() {
            let frame = encode_sample(v, &sample_topics());
            assert_eq!(concat(&frame.chunks).len(), frame.total_bytes, "v{v}");
            assert_eq!(decode_sample(v).size_prefix as usize, frame.total_bytes - 4, "v{v}");
        }
    }

    #[test]
    fn frame_decodes_with_no_bytes_left_over() {
        for v in versions() {
            assert_eq!(decode_sample(v).trailing_bytes, 0, "v{v}");
        }
    }

    #[test]
    fn header_carries_the_correlation_id_in_the_header_version_of_the_fetch_version() {
        for v in versions() {
            let header = decode_sample(v).header;
            assert_eq!(header.correlation_id, CORRELATION_ID, "v{v}");
            assert!(header.unknown_tagged_fields.is_empty(), "v{v}");
        }
    }

    #[test]
    fn top_level_fields_are_sent_in_the_versions_that_have_them() {
        for v in versions() {
            let body = decode_sample(v).body;
            assert_eq!(body.throttle_time_ms, THROTTLE_TIME_MS, "v{v}");
            let (error_code, session_id) = if v >= 7 { (ERROR_CODE, SESSION_ID) } else { (0, 0) };
            assert_eq!(body.error_code, error_code, "v{v}");
            assert_eq!(body.session_id, session_id, "v{v}");
            assert!(body.node_endpoints.is_empty(), "v{v}");
            assert!(body.unknown_tagged_fields.is_empty(), "v{v}");
        }
    }

    #[test]
    fn topics_are_named_up_to_v12_and_identified_by_id_from_v13() {
        let topics = sample_topics();
        for v in versions() {
            let body = decode_sample(v).body;
            assert_eq!(body.responses.len(), topics.len(), "v{v}");
            for (t, r) in topics.iter().zip(&body.responses) {
                if v <= 12 {
                    assert_eq!(r.topic.0.as_str(), t.name, "v{v}");
                    assert_eq!(r.topic_id, Uuid::nil(), "v{v}");
                } else {
                    assert_eq!(r.topic.0.as_str(), "", "v{v}");
                    assert_eq!(r.topic_id, t.topic_id, "v{v}");
                }
                assert!(r.unknown_tagged_fields.is_empty(), "v{v}");
            }
        }
    }

    #[test]
    fn partition_fields_are_sent_in_the_versions_that_have_them() {
        let topics = sample_topics();
        for v in versions() {
            let body = decode_sample(v).body;
            for (given, got) in partition_pairs(v, &topics, &body) {
                assert_eq!(got.partition_index, given.partition_index, "v{v}");
                assert_eq!(got.error_code, given.error_code, "v{v}");
                assert_eq!(got.high_watermark, given.high_watermark, "v{v}");
                assert_eq!(got.last_stable_offset, given.last_stable_offset, "v{v}");
                let log_start_offset = if v >= 5 { given.log_start_offset } else { -1 };
                assert_eq!(got.log_start_offset, log_start_offset, "v{v}");
            }
        }
    }

    #[test]
    fn preferred_read_replica_is_none() {
        let topics = sample_topics();
        for v in versions() {
            let body = decode_sample(v).body;
            for (_, got) in partition_pairs(v, &topics, &body) {
                assert_eq!(got.preferred_read_replica.0, -1, "v{v}");
            }
        }
    }

    #[test]
    fn aborted_transactions_are_null_in_every_version() {
        let topics = sample_topics();
        for v in versions() {
            let body = decode_sample(v).body;
            for (_, got) in partition_pairs(v, &topics, &body) {
                assert_eq!(got.aborted_transactions, None, "v{v}");
            }
        }
    }

    #[test]
    fn partitions_carry_no_tagged_fields() {
        let topics = sample_topics();
        for v in versions() {
            let body = decode_sample(v).body;
            for (_, got) in partition_pairs(v, &topics, &body) {
                assert_eq!(got.diverging_epoch, Default::default(), "v{v}");
                assert_eq!(got.current_leader, Default::default(), "v{v}");
                assert_eq!(got.snapshot_id, Default::default(), "v{v}");
                assert!(got.unknown_tagged_fields.is_empty(), "v{v}");
            }
        }
    }

    #[test]
    fn records_are_the_concatenation_of_the_partitions_chunks() {
        let topics = sample_topics();
        for v in versions() {
            let body = decode_sample(v).body;
            for (given, got) in partition_pairs(v, &topics, &body) {
                assert_eq!(got.records, Some(concat(&given.records)), "v{v} partition {}", given.partition_index);
            }
        }
    }

    #[test]
    fn partition_without_records_gets_empty_not_null_records() {
        let topics = vec![FetchTopic {
            name: "t".into(),
            topic_id: Uuid::from_u128(7),
            partitions: vec![partition(0, 0, vec![])],
        }];
        for v in versions() {
            let body = decode_frame(v, &encode_sample(v, &topics)).body;
            assert_eq!(body.responses[0].partitions[0].records, Some(Bytes::new()), "v{v}");
        }
    }

    #[test]
    fn frame_is_byte_identical_to_kafka_protocol_encoding() {
        let topics = sample_topics();
        for v in versions() {
            let expected_body = FetchResponse::default()
                .with_throttle_time_ms(THROTTLE_TIME_MS)
                .with_error_code(ERROR_CODE)
                .with_session_id(session_id(v))
                .with_responses(
                    topics
                        .iter()
                        .map(|t| {
                            FetchableTopicResponse::default()
                                .with_topic(if v <= 12 {
                                    TopicName(StrBytes::from_string(t.name.clone()))
                                } else {
                                    TopicName::default()
                                })
                                .with_topic_id(if v >= 13 { t.topic_id } else { Uuid::nil() })
                                .with_partitions(
                                    t.partitions
                                        .iter()
                                        .map(|p| {
                                            PartitionData::default()
                                                .with_partition_index(p.partition_index)
                                                .with_error_code(p.error_code)
                                                .with_high_watermark(p.high_watermark)
                                                .with_last_stable_offset(p.last_stable_offset)
                                                .with_log_start_offset(p.log_start_offset)
                                                .with_aborted_transactions(None)
                                                .with_records(Some(concat(&p.records)))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                );
            let mut expected = BytesMut::new();
            expected.put_i32(0);
            ResponseHeader::default()
                .with_correlation_id(CORRELATION_ID)
                .encode(&mut expected, FetchResponse::header_version(v))
                .expect("header");
            expected_body.encode(&mut expected, v).expect("body");
            let size = (expected.len() - 4) as i32;
            expected[..4].copy_from_slice(&size.to_be_bytes());

            assert_eq!(concat(&encode_sample(v, &topics).chunks), expected.freeze(), "v{v}");
        }
    }

    /// v11 (last non-flexible version), one topic "t", one partition without records.
    #[test]
    fn v11_frame_is_laid_out_field_by_field() {
        let topics = vec![FetchTopic {
            name: "t".into(),
            topic_id: Uuid::from_u128(7),
            partitions: vec![partition(0, 0, vec![])],
        }];
        let mut body = BytesMut::new();
        body.put_i32(CORRELATION_ID); // header v0
        body.put_i32(THROTTLE_TIME_MS);
        body.put_i16(ERROR_CODE);
        body.put_i32(SESSION_ID);
        body.put_i32(1); // topics
        body.put_i16(1); // name length
        body.put_slice(b"t");
        body.put_i32(1); // partitions
        body.put_i32(0); // partition_index
        body.put_i16(0); // error_code
        body.put_i64(1000); // high_watermark
        body.put_i64(900); // last_stable_offset
        body.put_i64(10); // log_start_offset
        body.put_i32(-1); // aborted_transactions: null
        body.put_i32(-1); // preferred_read_replica
        body.put_i32(0); // records: empty
        let mut expected = BytesMut::new();
        expected.put_i32(body.len() as i32);
        expected.put_slice(&body);

        assert_eq!(concat(&encode_sample(11, &topics).chunks), expected.freeze());
    }

    /// v12 (first flexible version), one topic "t", one partition without records.
    #[test]
    fn v12_frame_is_laid_out_field_by_field() {
        let topics = vec![FetchTopic {
            name: "t".into(),
            topic_id: Uuid::from_u128(7),
            partitions: vec![partition(0, 0, vec![])],
        }];
        let mut body = BytesMut::new();
        body.put_i32(CORRELATION_ID); // header v1
        body.put_u8(0); // header tagged fields
        body.put_i32(THROTTLE_TIME_MS);
        body.put_i16(ERROR_CODE);
        body.put_i32(SESSION_ID);
        body.put_u8(2); // topics: 1 + 1
        body.put_u8(2); // name length: 1 + 1
        body.put_slice(b"t");
        body.put_u8(2); // partitions: 1 + 1
        body.put_i32(0); // partition_index
        body.put_i16(0); // error_code
        body.put_i64(1000); // high_watermark
        body.put_i64(900); // last_stable_offset
        body.put_i64(10); // log_start_offset
        body.put_u8(0); // aborted_transactions: null
        body.put_i32(-1); // preferred_read_replica
        body.put_u8(1); // records: empty (0 + 1)
        body.put_u8(0); // partition tagged fields
        body.put_u8(0); // topic tagged fields
        body.put_u8(0); // response tagged fields
        let mut expected = BytesMut::new();
        expected.put_i32(body.len() as i32);
        expected.put_slice(&body);

        assert_eq!(concat(&encode_sample(12, &topics).chunks), expected.freeze());
    }

    /// v13, one topic, one partition without records: the topic id replaces the name.
    #[test]
    fn v13_frame_is_laid_out_field_by_field() {
        let topic_id = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let topics = vec![FetchTopic { name: "t".into(), topic_id, partitions: vec![partition(0, 0, vec![])] }];
        let mut body = BytesMut::new();
        body.put_i32(CORRELATION_ID);
        body.put_u8(0);
        body.put_i32(THROTTLE_TIME_MS);
        body.put_i16(ERROR_CODE);
        body.put_i32(SESSION_ID);
        body.put_u8(2);
        body.put_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]); // topic_id
        body.put_u8(2);
        body.put_i32(0);
        body.put_i16(0);
        body.put_i64(1000);
        body.put_i64(900);
        body.put_i64(10);
        body.put_u8(0);
        body.put_i32(-1);
        body.put_u8(1);
        body.put_u8(0);
        body.put_u8(0);
        body.put_u8(0);
        let mut expected = BytesMut::new();
        expected.put_i32(body.len() as i32);
        expected.put_slice(&body);

        assert_eq!(concat(&encode_sample(13, &topics).chunks), expected.freeze());
    }

    #[test]
    fn record_chunks_are_shared_not_copied() {
        let topics = sample_topics();
        let given: Vec<&Bytes> =
            topics.iter().flat_map(|t| &t.partitions).flat_map(|p| &p.records).filter(|c| !c.is_empty()).collect();
        for v in versions() {
            let frame = encode_sample(v, &topics);
            let shared: Vec<&Bytes> = frame
                .chunks
                .iter()
                .filter(|c| given.iter().any(|g| g.as_ptr() == c.as_ptr() && g.len() == c.len()))
                .collect();
            assert_eq!(shared.len(), given.len(), "v{v}: every record chunk is in the frame as is");
            for (s, g) in shared.iter().zip(&given) {
                assert_eq!((s.as_ptr(), s.len()), (g.as_ptr(), g.len()), "v{v}: in order");
            }
        }
    }

    #[test]
    fn frame_has_no_empty_chunks() {
        for v in versions() {
            let frame = encode_sample(v, &sample_topics());
            assert!(frame.chunks.iter().all(|c| !c.is_empty()), "v{v}");
        }
    }

    #[test]
    fn metadata_between_record_chunks_is_one_chunk() {
        // head, 70, meta, 61, 200, 5, meta, 130, then the tagged-field
        // sections that end partition, topic and response in flexible versions.
        for v in versions() {
            let lens: Vec<usize> = encode_sample(v, &sample_topics()).chunks.iter().map(Bytes::len).collect();
            let expected_chunks = if v >= 12 { 9 } else { 8 };
            assert_eq!(lens.len(), expected_chunks, "v{v}: {lens:?}");
            assert_eq!([lens[1], lens[3], lens[4], lens[5], lens[7]], [70, 61, 200, 5, 130], "v{v}");
            if v >= 12 {
                assert_eq!(lens[8], 3, "v{v}");
            }
        }
    }

    #[test]
    fn metadata_chunks_are_consecutive_pieces_of_one_allocation() {
        let topics = sample_topics();
        let is_record = |c: &Bytes| {
            topics.iter().flat_map(|t| &t.partitions).flat_map(|p| &p.records).any(|r| r.as_ptr() == c.as_ptr())
        };
        for v in versions() {
            let frame = encode_sample(v, &topics);
            let metadata: Vec<&Bytes> = frame.chunks.iter().filter(|c| !is_record(c)).collect();
            for pair in metadata.windows(2) {
                assert_eq!(pair[0].as_ptr().wrapping_add(pair[0].len()), pair[1].as_ptr(), "v{v}");
            }
        }
    }

    #[test]
    fn response_without_topics_is_one_chunk() {
        for v in versions() {
            let frame = encode_sample(v, &[]);
            assert_eq!(frame.chunks.len(), 1, "v{v}");
            assert!(decode_frame(v, &frame).body.responses.is_empty(), "v{v}");
        }
    }

    #[test]
    fn versions_outside_4_to_16_are_rejected() {
        for v in [i16::MIN, -1, 0, 3, 17, 18, i16::MAX] {
            assert_eq!(encode(v, 1, 0, 0, 0, &sample_topics()).err(), Some(FetchEncodeError::UnsupportedVersion(v)));
        }
    }

    #[test]
    fn session_id_before_v7_is_rejected() {
        for v in 4..7 {
            assert_eq!(
                encode(v, 1, 0, 0, 5, &[]).err(),
                Some(FetchEncodeError::SessionIdNotInVersion { version: v, session_id: 5 })
            );
        }
    }

    #[test]
    fn topic_name_longer_than_i16_max_is_rejected_where_names_are_sent() {
        let topics = vec![FetchTopic { name: "x".repeat(32_768), topic_id: Uuid::from_u128(7), partitions: vec![] }];
        for v in versions() {
            let result = encode(v, 1, 0, 0, 0, &topics);
            if v <= 12 {
                assert_eq!(
                    result.err(),
                    Some(FetchEncodeError::TopicNameTooLong { topic_index: 0, len: 32_768 }),
                    "v{v}"
                );
            } else {
                assert!(result.is_ok(), "v{v}");
            }
        }
    }
}
