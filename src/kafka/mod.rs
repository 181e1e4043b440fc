//! Kafka protocol: the version table (what ringmq advertises is exactly what
//! it handles), request dispatch and response framing. One file per API.

pub mod alter_configs;
pub mod api_versions;
pub mod codes;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod errors;
pub mod fetch;
pub mod fetch_response;
pub mod groups;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
/// Where it lived first; tools, benches and tests name it here.
pub use crate::record_batch;

use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use crate::runtime::shard::Shard;

/// The broker's node id in Metadata; ringmq is a single-node cluster.
pub const NODE_ID: i32 = 0;
pub const CLUSTER_ID: &str = "ringmq";

/// (api, min version, max version) handled end to end.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 0, 7),
    (ApiKey::DeleteTopics, 0, 5),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeCluster, 0, 2),
    (ApiKey::InitProducerId, 0, 4),
    // Consumer groups (classic protocol), see groups.rs.
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 2),
];

pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, lo, hi)| (lo, hi))
}

/// What a request is answered with.
pub enum Reply {
    /// A whole response frame (size prefix included) as chunks to write in order.
    Frame(Vec<Bytes>),
    /// No response (produce with acks=0).
    Nothing,
    /// Close the connection (after writing earlier responses).
    Close(String),
}

/// The parts of a request header the handlers use.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("request of {0} bytes is too short for a header")]
    TooShort(usize),
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    #[error("unsupported version {version} of {api:?}")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("malformed {api:?} v{version} request: {message}")]
    Malformed { api: ApiKey, version: i16, message: String },
    #[error("cannot encode {api:?} v{version} response: {message}")]
    Encode { api: ApiKey, version: i16, message: String },
}

/// The API a request frame (size prefix removed) is for, read from its
/// first two bytes without parsing the rest of the header.
pub fn frame_api_key(frame: &[u8]) -> Option<ApiKey> {
    let key = frame.get(..2)?;
    ApiKey::try_from(i16::from_be_bytes([key[0], key[1]])).ok()
}

/// Parses the request header of a frame (size prefix already removed).
/// Returns the context and the offset at which the body starts.
pub fn parse_header(frame: &Bytes) -> Result<(RequestContext, usize), RequestError> {
    if frame.len() < 8 {
        return Err(RequestError::TooShort(frame.len()));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key).map_err(|_| RequestError::UnknownApi(key))?;
    let (lo, hi) = supported_range(api).ok_or(RequestError::UnknownApi(key))?;
    if version < lo || version > hi {
        // ApiVersions answers any version with its error and the table (KIP-511).
        if api == ApiKey::ApiVersions {
            return Ok((
                RequestContext { api_key: api, api_version: version, correlation_id, client_id: None },
                frame.len(),
            ));
        }
        return Err(RequestError::UnsupportedVersion { api, version });
    }
    let mut cursor = frame.clone();
    let header = RequestHeader::decode(&mut cursor, api.request_header_version(version))
        .map_err(|e| RequestError::Malformed { api, version, message: e.to_string() })?;
    let body_start = frame.len() - cursor.len();
    let client_id = header.client_id.as_ref().map(|s| s.to_string());
    Ok((
        RequestContext { api_key: api, api_version: version, correlation_id: header.correlation_id, client_id },
        body_start,
    ))
}

/// Decodes a request body, mapping errors to `RequestError::Malformed`.
pub fn decode_body<T: Decodable>(ctx: &RequestContext, body: Bytes) -> Result<T, RequestError> {
    let mut cursor = body;
    let req = T::decode(&mut cursor, ctx.api_version).map_err(|e| RequestError::Malformed {
        api: ctx.api_key,
        version: ctx.api_version,
        message: e.to_string(),
    })?;
    Ok(req)
}

/// Encodes a whole response frame: size prefix, header, body.
pub fn encode_response<T: Encodable + HeaderVersion>(ctx: &RequestContext, body: &T) -> Result<Reply, RequestError> {
    let err = |e: kafka_protocol_error::Error| RequestError::Encode {
        api: ctx.api_key,
        version: ctx.api_version,
        message: e.to_string(),
    };
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(ctx.correlation_id)
        .encode(&mut buf, T::header_version(ctx.api_version))
        .map_err(err)?;
    body.encode(&mut buf, ctx.api_version).map_err(err)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(Reply::Frame(vec![buf.freeze()]))
}

/// kafka-protocol reports errors as `anyhow::Error`.
mod kafka_protocol_error {
    pub type Error = anyhow::Error;
}

/// Decodes a whole request frame (header and body) without handling it: the
/// parsing half of `handle`, for fuzzing and tools.
pub fn decode_request(frame: &Bytes) -> Result<RequestContext, RequestError> {
    use kafka_protocol::messages::*;
    let (ctx, start) = parse_header(frame)?;
    let body = frame.slice(start..);
    match ctx.api_key {
        ApiKey::ApiVersions
            if supported_range(ApiKey::ApiVersions).is_some_and(|(lo, hi)| (lo..=hi).contains(&ctx.api_version)) =>
        {
            decode_body::<ApiVersionsRequest>(&ctx, body).map(drop)
        }
        ApiKey::ApiVersions => Ok(()),
        ApiKey::Metadata => decode_body::<MetadataRequest>(&ctx, body).map(drop),
        ApiKey::Produce => decode_body::<ProduceRequest>(&ctx, body).map(drop),
        ApiKey::Fetch => decode_body::<FetchRequest>(&ctx, body).map(drop),
        ApiKey::ListOffsets => decode_body::<ListOffsetsRequest>(&ctx, body).map(drop),
        ApiKey::CreateTopics => decode_body::<CreateTopicsRequest>(&ctx, body).map(drop),
        ApiKey::DeleteTopics => decode_body::<DeleteTopicsRequest>(&ctx, body).map(drop),
        ApiKey::DescribeConfigs => decode_body::<DescribeConfigsRequest>(&ctx, body).map(drop),
        ApiKey::AlterConfigs => decode_body::<AlterConfigsRequest>(&ctx, body).map(drop),
        ApiKey::IncrementalAlterConfigs => decode_body::<IncrementalAlterConfigsRequest>(&ctx, body).map(drop),
        ApiKey::CreatePartitions => decode_body::<CreatePartitionsRequest>(&ctx, body).map(drop),
        ApiKey::DeleteRecords => decode_body::<DeleteRecordsRequest>(&ctx, body).map(drop),
        ApiKey::DescribeCluster => decode_body::<DescribeClusterRequest>(&ctx, body).map(drop),
        ApiKey::InitProducerId => decode_body::<InitProducerIdRequest>(&ctx, body).map(drop),
        ApiKey::FindCoordinator => decode_body::<FindCoordinatorRequest>(&ctx, body).map(drop),
        ApiKey::JoinGroup => decode_body::<JoinGroupRequest>(&ctx, body).map(drop),
        ApiKey::SyncGroup => decode_body::<SyncGroupRequest>(&ctx, body).map(drop),
        ApiKey::Heartbeat => decode_body::<HeartbeatRequest>(&ctx, body).map(drop),
        ApiKey::LeaveGroup => decode_body::<LeaveGroupRequest>(&ctx, body).map(drop),
        ApiKey::OffsetCommit => decode_body::<OffsetCommitRequest>(&ctx, body).map(drop),
        ApiKey::OffsetFetch => decode_body::<OffsetFetchRequest>(&ctx, body).map(drop),
        ApiKey::DescribeGroups => decode_body::<DescribeGroupsRequest>(&ctx, body).map(drop),
        ApiKey::ListGroups => decode_body::<ListGroupsRequest>(&ctx, body).map(drop),
        ApiKey::DeleteGroups => decode_body::<DeleteGroupsRequest>(&ctx, body).map(drop),
        other => Err(RequestError::UnknownApi(other as i16)),
    }?;
    Ok(ctx)
}

/// Handles one request frame.
pub async fn handle(shard: &Rc<Shard>, frame: Bytes) -> Reply {
    let (ctx, body_start) = match parse_header(&frame) {
        Ok(parsed) => parsed,
        Err(e) => return Reply::Close(e.to_string()),
    };
    crate::runtime::shard::bump(&shard.counters.requests, 1);
    let result = match ctx.api_key {
        ApiKey::ApiVersions => api_versions::handle(&ctx, frame.slice(body_start..)),
        ApiKey::Metadata => metadata::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::Produce => produce::handle(shard, &ctx, frame, body_start).await,
        ApiKey::Fetch => fetch::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::ListOffsets => list_offsets::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::CreateTopics => create_topics::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::DeleteTopics => delete_topics::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::DescribeConfigs => describe_configs::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::AlterConfigs => alter_configs::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::IncrementalAlterConfigs => {
            incremental_alter_configs::handle(shard, &ctx, frame.slice(body_start..)).await
        }
        ApiKey::CreatePartitions => create_partitions::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::DeleteRecords => delete_records::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::DescribeCluster => describe_cluster::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::InitProducerId => init_producer_id::handle(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::FindCoordinator => groups::find_coordinator(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::JoinGroup => groups::join_group(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::SyncGroup => groups::sync_group(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::Heartbeat => groups::heartbeat(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::LeaveGroup => groups::leave_group(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::OffsetCommit => groups::offset_commit(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::OffsetFetch => groups::offset_fetch(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::DescribeGroups => groups::describe_groups(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::ListGroups => groups::list_groups(shard, &ctx, frame.slice(body_start..)).await,
        ApiKey::DeleteGroups => groups::delete_groups(shard, &ctx, frame.slice(body_start..)).await,
        other => Err(RequestError::UnknownApi(other as i16)),
    };
    match result {
        Ok(reply) => reply,
        Err(e) => Reply::Close(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest};

    fn frame(api: i16, version: i16, body: &[u8], flexible_header: bool) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(api);
        b.put_i16(version);
        b.put_i32(42);
        b.put_i16(-1); // null client id
        if flexible_header {
            b.put_u8(0);
        }
        b.put_slice(body);
        b.freeze()
    }

    #[test]
    fn header_of_supported_request_is_parsed() {
        let f = frame(3, 1, &[0xff, 0xff, 0xff, 0xff], false);
        let (ctx, body_start) = parse_header(&f).expect("header");
        assert_eq!((ctx.api_key, ctx.api_version, ctx.correlation_id), (ApiKey::Metadata, 1, 42));
        assert_eq!(body_start, 10);
    }

    #[test]
    fn unknown_api_key_is_an_error() {
        assert!(matches!(parse_header(&frame(999, 0, &[], false)), Err(RequestError::UnknownApi(999))));
    }

    #[test]
    fn unsupported_version_is_an_error_except_for_api_versions() {
        assert!(matches!(parse_header(&frame(0, 1, &[], false)), Err(RequestError::UnsupportedVersion { .. })));
        assert!(parse_header(&frame(18, 99, &[], false)).is_ok());
    }

    #[test]
    fn forged_array_count_in_non_flexible_request_fails_without_reserving_it() {
        // Metadata v1: topics array claiming i32::MAX entries in 4 bytes.
        let f = frame(3, 1, &0x7fff_ffffi32.to_be_bytes(), false);
        let (ctx, start) = parse_header(&f).expect("header");
        assert!(decode_body::<MetadataRequest>(&ctx, f.slice(start..)).is_err());
        // Produce v3: no transactional id, acks, timeout, topics count i32::MAX.
        let mut body = BytesMut::new();
        body.put_i16(-1);
        body.put_i16(-1);
        body.put_i32(1000);
        body.put_i32(i32::MAX);
        let f = frame(0, 3, &body, false);
        let (ctx, start) = parse_header(&f).expect("header");
        assert!(decode_body::<ProduceRequest>(&ctx, f.slice(start..)).is_err());
    }

    #[test]
    fn forged_array_count_in_flexible_request_fails_without_reserving_it() {
        // Metadata v9: compact topics array with count 2^31 as an unsigned varint.
        let f = frame(3, 9, &[0x80, 0x80, 0x80, 0x80, 0x08], true);
        let (ctx, start) = parse_header(&f).expect("header");
        assert!(decode_body::<MetadataRequest>(&ctx, f.slice(start..)).is_err());
    }
}
