//! ApiVersions v0-3: the version table. Any version is accepted; an
//! unsupported one gets UNSUPPORTED_VERSION with the table in the v0 layout,
//! so the client can retry with a version both sides know (KIP-511).

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::{codes, decode_body, encode_response, supported_range, Reply, RequestContext, RequestError, SUPPORTED};

pub fn handle(ctx: &RequestContext, body: Bytes) -> Result<Reply, RequestError> {
    let table: Vec<ApiVersion> = SUPPORTED
        .iter()
        .map(|&(key, lo, hi)| ApiVersion::default().with_api_key(key as i16).with_min_version(lo).with_max_version(hi))
        .collect();
    let (lo, hi) = supported_range(ApiKey::ApiVersions).unwrap_or((0, 0));
    if ctx.api_version < lo || ctx.api_version > hi {
        let reply_ctx = RequestContext { api_version: 0, ..ctx.clone() };
        let resp = ApiVersionsResponse::default().with_error_code(codes::UNSUPPORTED_VERSION).with_api_keys(table);
        return encode_response(&reply_ctx, &resp);
    }
    // v3 carries client software name/version; nothing in it changes the answer.
    let _req: ApiVersionsRequest = decode_body(ctx, body)?;
    let resp = ApiVersionsResponse::default().with_error_code(codes::NONE).with_api_keys(table);
    encode_response(ctx, &resp)
}
