//! A small blocking Kafka client for the admin commands: one
//! `std::net::TcpStream` opened with a connect timeout, size-prefixed frames
//! with correlation ids, a deadline on every request, and ApiVersions
//! negotiation so that each request goes out in the highest version both
//! this client and the broker speak. Requests go to the one broker given
//! (ringmq is a single-node cluster: it leads every partition and
//! coordinates every group).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, IncrementalAlterConfigsRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetFetchRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use super::error::AdminError;

pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3_000;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Largest response frame accepted; admin answers are small.
pub const MAX_RESPONSE_FRAME_BYTES: usize = 64 << 20;
/// Kafka's UNSUPPORTED_VERSION, which ApiVersions answers a too-new request with.
const UNSUPPORTED_VERSION: i16 = 35;

/// (api key, name, lowest and highest version this client speaks). Metadata
/// starts at v4, the first that can say "do not auto-create this topic".
const OURS: &[(i16, &str, i16, i16)] = &[
    (ApiVersionsRequest::KEY, "ApiVersions", 0, 3),
    (MetadataRequest::KEY, "Metadata", 4, 12),
    (CreateTopicsRequest::KEY, "CreateTopics", 1, 7),
    (DeleteTopicsRequest::KEY, "DeleteTopics", 1, 5),
    (ListOffsetsRequest::KEY, "ListOffsets", 1, 7),
    (DescribeConfigsRequest::KEY, "DescribeConfigs", 1, 4),
    (IncrementalAlterConfigsRequest::KEY, "IncrementalAlterConfigs", 0, 1),
    (ListGroupsRequest::KEY, "ListGroups", 0, 4),
    (DescribeGroupsRequest::KEY, "DescribeGroups", 0, 5),
    (OffsetFetchRequest::KEY, "OffsetFetch", 2, 8),
    (OffsetCommitRequest::KEY, "OffsetCommit", 2, 8),
    (DeleteGroupsRequest::KEY, "DeleteGroups", 0, 2),
];

/// Name of an API this client uses, for messages.
pub fn api_name(key: i16) -> &'static str {
    OURS.iter().find(|(k, ..)| *k == key).map_or("request", |(_, name, ..)| name)
}

fn our_range(key: i16) -> (i16, i16) {
    OURS.iter().find(|(k, ..)| *k == key).map_or((0, -1), |&(_, _, lo, hi)| (lo, hi))
}

/// How to reach the broker and how long to wait for it.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// How long one request may take, from sending it to its whole answer.
    pub request_timeout: Duration,
    pub client_id: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_millis(DEFAULT_CONNECT_TIMEOUT_MS),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            client_id: "ringmq-admin".to_string(),
        }
    }
}

/// One negotiated connection to a broker.
pub struct Client {
    stream: TcpStream,
    addr: String,
    opts: ClientOptions,
    next_correlation_id: i32,
    /// The broker's (lowest, highest) version per api key, from ApiVersions.
    theirs: HashMap<i16, (i16, i16)>,
}

impl Client {
    /// Connects to `addr` (`HOST:PORT`) and negotiates API versions.
    pub fn connect(addr: &str, opts: ClientOptions) -> Result<Client, AdminError> {
        let stream = open(addr, opts.connect_timeout)?;
        // Without nodelay a request could wait for the previous answer's ACK.
        stream.set_nodelay(true).map_err(|source| AdminError::Io { addr: addr.into(), api: "connect", source })?;
        let mut client =
            Client { stream, addr: addr.to_string(), opts, next_correlation_id: 1, theirs: HashMap::new() };
        client.negotiate()?;
        Ok(client)
    }

    /// The address this client was given.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The version `R` goes out in: the highest both sides speak.
    pub fn version<R: Request>(&self) -> Result<i16, AdminError> {
        let (lo, hi) = our_range(R::KEY);
        let unsupported = |theirs: String| AdminError::Unsupported {
            addr: self.addr.clone(),
            api: api_name(R::KEY),
            ours: format!("{lo}..={hi}"),
            theirs,
        };
        let Some(&(their_lo, their_hi)) = self.theirs.get(&R::KEY) else {
            return Err(unsupported("none".to_string()));
        };
        let v = hi.min(their_hi);
        if v < lo.max(their_lo) {
            return Err(unsupported(format!("{their_lo}..={their_hi}")));
        }
        Ok(v)
    }

    /// Builds a request for the negotiated version, sends it and waits for
    /// its answer; returns the answer and the version used.
    pub fn send<R: Request>(&mut self, build: impl FnOnce(i16) -> R) -> Result<(R::Response, i16), AdminError> {
        let version = self.version::<R>()?;
        let response = self.call(&build(version), version)?;
        Ok((response, version))
    }

    /// ApiVersions v3, or v0 when the broker answers v3 with UNSUPPORTED_VERSION.
    fn negotiate(&mut self) -> Result<(), AdminError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("ringmq-admin"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut response: ApiVersionsResponse = self.call(&request, 3).map_err(not_kafka)?;
        if response.error_code == UNSUPPORTED_VERSION {
            response = self.call(&ApiVersionsRequest::default(), 0).map_err(not_kafka)?;
        }
        if response.error_code != 0 {
            let code = response.error_code;
            let message = format!("{} refused ApiVersions: {}", self.addr, super::error::code_name(code));
            return Err(AdminError::Broker { api: "ApiVersions", code, message });
        }
        self.theirs = response.api_keys.iter().map(|k| (k.api_key, (k.min_version, k.max_version))).collect();
        Ok(())
    }

    /// Sends one request in `version` and decodes its answer.
    fn call<R: Request>(&mut self, request: &R, version: i16) -> Result<R::Response, AdminError> {
        let api = api_name(R::KEY);
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1).max(1);
        let frame = encode_request(request, version, correlation_id, &self.opts.client_id).map_err(|e| {
            AdminError::Protocol { addr: self.addr.clone(), api, detail: format!("cannot encode v{version}: {e}") }
        })?;
        let deadline = Instant::now() + self.opts.request_timeout;
        self.write_all(&frame, deadline, api)?;
        let mut body = self.read_frame(deadline, api)?;
        let unreadable = |e: anyhow::Error| AdminError::Protocol {
            addr: self.addr.clone(),
            api,
            detail: format!("v{version}: {e}"),
        };
        let header = ResponseHeader::decode(&mut body, R::Response::header_version(version)).map_err(unreadable)?;
        if header.correlation_id != correlation_id {
            return Err(AdminError::Protocol {
                addr: self.addr.clone(),
                api,
                detail: format!("correlation id {} where {correlation_id} was due", header.correlation_id),
            });
        }
        R::Response::decode(&mut body, version).map_err(unreadable)
    }

    fn write_all(&mut self, frame: &[u8], deadline: Instant, api: &'static str) -> Result<(), AdminError> {
        let left = self.time_left(deadline, api)?;
        self.stream.set_write_timeout(Some(left)).map_err(|e| self.io_error(api, e))?;
        self.stream.write_all(frame).map_err(|e| self.io_error(api, e))
    }

    /// Reads one size-prefixed frame and returns it without the prefix.
    fn read_frame(&mut self, deadline: Instant, api: &'static str) -> Result<Bytes, AdminError> {
        let mut size = [0u8; 4];
        self.read_exact(&mut size, deadline, api)?;
        if &size == b"HTTP" {
            let detail = "it answers in HTTP (a metrics or web port?)".to_string();
            return Err(AdminError::Protocol { addr: self.addr.clone(), api, detail });
        }
        let size = i32::from_be_bytes(size);
        let len =
            usize::try_from(size).ok().filter(|&n| (4..=MAX_RESPONSE_FRAME_BYTES).contains(&n)).ok_or_else(|| {
                AdminError::Protocol {
                    addr: self.addr.clone(),
                    api,
                    detail: format!("frame of {size} bytes (allowed: 4 to {MAX_RESPONSE_FRAME_BYTES})"),
                }
            })?;
        let mut body = BytesMut::zeroed(len);
        self.read_exact(&mut body, deadline, api)?;
        Ok(body.freeze())
    }

    /// `read_exact` that gives up at `deadline` rather than per read call.
    fn read_exact(&mut self, mut buf: &mut [u8], deadline: Instant, api: &'static str) -> Result<(), AdminError> {
        while !buf.is_empty() {
            let left = self.time_left(deadline, api)?;
            self.stream.set_read_timeout(Some(left)).map_err(|e| self.io_error(api, e))?;
            match self.stream.read(buf) {
                Ok(0) => return Err(self.io_error(api, io::ErrorKind::UnexpectedEof.into())),
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(api, e)),
            }
        }
        Ok(())
    }

    fn time_left(&self, deadline: Instant, api: &'static str) -> Result<Duration, AdminError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timeout(api));
        }
        Ok(left)
    }

    fn timeout(&self, api: &'static str) -> AdminError {
        AdminError::Timeout { addr: self.addr.clone(), api, timeout_ms: millis(self.opts.request_timeout) }
    }

    fn io_error(&self, api: &'static str, source: io::Error) -> AdminError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timeout(api),
            _ => AdminError::Io { addr: self.addr.clone(), api, source },
        }
    }
}

/// An unreadable answer to the first request means the address is not a Kafka broker's.
fn not_kafka(e: AdminError) -> AdminError {
    match e {
        AdminError::Protocol { addr, detail, .. } => AdminError::NotKafka { addr, detail },
        other => other,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Resolves `addr` and connects to the first address that answers.
pub(super) fn open(addr: &str, timeout: Duration) -> Result<TcpStream, AdminError> {
    let resolved: Vec<SocketAddr> =
        addr.to_socket_addrs().map_err(|source| AdminError::Resolve { addr: addr.to_string(), source })?.collect();
    let mut last = None;
    for a in &resolved {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
            AdminError::ConnectTimeout { addr: addr.to_string(), timeout_ms: millis(timeout) }
        }
        Some(source) => AdminError::Connect { addr: addr.to_string(), source },
        None => AdminError::Resolve { addr: addr.to_string(), source: io::Error::other("no address found") },
    })
}

/// A whole request frame: size prefix, header, body.
fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())))
        .encode(&mut buf, R::header_version(version))?;
    request.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_used_has_a_name_and_a_range() {
        for &(key, name, lo, hi) in OURS {
            assert_eq!(api_name(key), name);
            assert!(lo <= hi, "{name}");
        }
    }

    #[test]
    fn a_closed_port_is_a_connect_error_naming_the_address() {
        // Bind then drop: the port is free and nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let addr = format!("127.0.0.1:{}", port.expect("ephemeral port"));
        let err = Client::connect(&addr, ClientOptions::default()).err().expect("no broker there");
        assert!(matches!(err, AdminError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr), "{err}");
        assert_eq!(err.exit_code(), super::super::error::EXIT_UNREACHABLE);
    }
}
