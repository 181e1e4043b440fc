//! The lean Kafka client: one blocking `std::net::TcpStream` per connection,
//! size-prefixed frames, request headers with correlation ids, and
//! ApiVersions negotiation, all on the `kafka-protocol` crate the broker uses.
//!
//! A `Connection` can be split into a `FrameWriter` and a `FrameReader` so that
//! one thread pipelines requests while another reads the responses, which a
//! Kafka broker returns in request order on each connection.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest,
    ProduceRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

use crate::error::ClientError;

/// Largest response frame accepted (a Fetch response is bounded by its max_bytes).
pub const MAX_RESPONSE_FRAME: usize = 256 << 20;

/// Kafka's UNSUPPORTED_VERSION error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// The API versions this client speaks (inclusive). Fetch stops at 12: v13+
/// names topics by id.
const OURS_PRODUCE: (i16, i16) = (3, 9);
const OURS_FETCH: (i16, i16) = (4, 12);
const OURS_METADATA: (i16, i16) = (1, 12);
const OURS_LIST_OFFSETS: (i16, i16) = (1, 7);
const OURS_CREATE_TOPICS: (i16, i16) = (0, 7);

/// The version used for each API on one connection, negotiated with ApiVersions.
#[derive(Clone, Copy, Debug, Default)]
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub metadata: i16,
    pub list_offsets: i16,
    pub create_topics: i16,
}

/// Human name of the APIs this client uses, for messages.
pub fn api_name(key: i16) -> &'static str {
    match key {
        0 => "Produce",
        1 => "Fetch",
        2 => "ListOffsets",
        3 => "Metadata",
        18 => "ApiVersions",
        19 => "CreateTopics",
        _ => "request",
    }
}

/// Options of every connection.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub client_id: String,
    /// Connect timeout, and how long one response may take.
    pub request_timeout: Duration,
}

/// A negotiated connection to one broker.
pub struct Connection {
    pub writer: FrameWriter,
    pub reader: FrameReader,
    pub versions: Versions,
}

/// The sending half: encodes requests and hands out correlation ids.
pub struct FrameWriter {
    stream: TcpStream,
    addr: String,
    client_id: StrBytes,
    next_correlation: i32,
    buf: BytesMut,
}

/// The receiving half: reads frames and decodes responses.
pub struct FrameReader {
    stream: TcpStream,
    addr: String,
    timeout: Duration,
}

impl Connection {
    /// Connects to `addr` (`HOST:PORT`) and negotiates API versions.
    pub fn connect(addr: &str, opts: &ConnectOptions) -> Result<Connection, ClientError> {
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| ClientError::Resolve { addr: addr.to_string(), detail: e.to_string() })?
            .collect();
        if addrs.is_empty() {
            return Err(ClientError::Resolve { addr: addr.to_string(), detail: "no addresses".to_string() });
        }
        let mut last_err = None;
        let mut stream = None;
        for a in &addrs {
            match TcpStream::connect_timeout(a, opts.request_timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let stream = match stream {
            Some(s) => s,
            None => {
                return Err(ClientError::Connect {
                    addr: addr.to_string(),
                    source: last_err.unwrap_or_else(|| io::Error::other("no address to connect to")),
                })
            }
        };
        let io_err = |what: &'static str| {
            let addr = addr.to_string();
            move |source| ClientError::Io { addr, what, source }
        };
        stream.set_nodelay(true).map_err(io_err("configuring the socket to"))?;
        stream.set_read_timeout(Some(opts.request_timeout)).map_err(io_err("configuring the socket to"))?;
        stream.set_write_timeout(Some(opts.request_timeout)).map_err(io_err("configuring the socket to"))?;
        let read_half = stream.try_clone().map_err(io_err("cloning the socket to"))?;
        let mut conn = Connection {
            writer: FrameWriter {
                stream,
                addr: addr.to_string(),
                client_id: StrBytes::from_string(opts.client_id.clone()),
                next_correlation: 1,
                buf: BytesMut::with_capacity(64 * 1024),
            },
            reader: FrameReader { stream: read_half, addr: addr.to_string(), timeout: opts.request_timeout },
            versions: Versions::default(),
        };
        conn.negotiate()?;
        Ok(conn)
    }

    /// Address this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.writer.addr
    }

    /// ApiVersions v3, falling back to v0 when the broker asks for it, then
    /// picks the highest version both sides speak for every API used.
    fn negotiate(&mut self) -> Result<(), ClientError> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("ringmq-loadgen"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut resp: ApiVersionsResponse = self.call(&req, 3)?;
        if resp.error_code == UNSUPPORTED_VERSION {
            resp = self.call(&ApiVersionsRequest::default(), 0)?;
        }
        if resp.error_code != 0 {
            return Err(ClientError::Broker {
                addr: self.addr().to_string(),
                api: "ApiVersions",
                code: resp.error_code,
                message: None,
            });
        }
        let pick = |key: i16, ours: (i16, i16)| -> Result<i16, ClientError> {
            let theirs = resp.api_keys.iter().find(|k| k.api_key == key);
            let unsupported = |theirs: String| ClientError::Unsupported {
                addr: self.writer.addr.clone(),
                api: api_name(key),
                ours: format!("{}..={}", ours.0, ours.1),
                theirs,
            };
            match theirs {
                None => Err(unsupported("none".to_string())),
                Some(k) => {
                    let v = ours.1.min(k.max_version);
                    if v < ours.0.max(k.min_version) {
                        Err(unsupported(format!("{}..={}", k.min_version, k.max_version)))
                    } else {
                        Ok(v)
                    }
                }
            }
        };
        self.versions = Versions {
            produce: pick(ProduceRequest::KEY, OURS_PRODUCE)?,
            fetch: pick(FetchRequest::KEY, OURS_FETCH)?,
            metadata: pick(MetadataRequest::KEY, OURS_METADATA)?,
            list_offsets: pick(ListOffsetsRequest::KEY, OURS_LIST_OFFSETS)?,
            // Only needed when the topic must be created; checked then.
            create_topics: pick(CreateTopicsRequest::KEY, OURS_CREATE_TOPICS).unwrap_or(-1),
        };
        Ok(())
    }

    /// Sends one request and waits for its response.
    pub fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, ClientError> {
        let corr = self.writer.send(req, version)?;
        self.reader.recv::<R>(version, corr)
    }

    /// Splits into the sending and the receiving half (same socket).
    pub fn split(self) -> (FrameWriter, FrameReader, Versions) {
        (self.writer, self.reader, self.versions)
    }
}

impl FrameWriter {
    /// Encodes and writes one request; returns its correlation id.
    pub fn send<R: Request>(&mut self, req: &R, version: i16) -> Result<i32, ClientError> {
        let corr = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(corr)
            .with_client_id(Some(self.client_id.clone()));
        let api = api_name(R::KEY);
        let encode_err = |e: anyhow::Error| ClientError::Encode { api, version, detail: e.to_string() };
        self.buf.clear();
        self.buf.put_i32(0);
        header.encode(&mut self.buf, R::header_version(version)).map_err(encode_err)?;
        req.encode(&mut self.buf, version).map_err(encode_err)?;
        let size = (self.buf.len() - 4) as i32;
        self.buf[0..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&self.buf).map_err(|source| match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                addr: self.addr.clone(),
                api,
                timeout: self.stream.write_timeout().ok().flatten().unwrap_or_default(),
            },
            _ => ClientError::Io { addr: self.addr.clone(), what: "sending a request to", source },
        })?;
        if self.buf.capacity() > 4 << 20 {
            // Do not keep a huge buffer around after one large request.
            self.buf = BytesMut::with_capacity(64 * 1024);
        }
        Ok(corr)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Another handle on the socket (to shut it down from elsewhere).
    pub fn socket(&self) -> io::Result<TcpStream> {
        self.stream.try_clone()
    }
}

impl FrameReader {
    /// Reads the next response frame, which must carry `corr`, and decodes it.
    pub fn recv<R: Request>(&mut self, version: i16, corr: i32) -> Result<R::Response, ClientError> {
        let api = api_name(R::KEY);
        let mut frame = self.read_frame(api)?;
        let decode_err =
            |e: anyhow::Error| ClientError::Decode { addr: self.addr.clone(), api, version, detail: e.to_string() };
        let header = ResponseHeader::decode(&mut frame, <R::Response as HeaderVersion>::header_version(version))
            .map_err(decode_err)?;
        if header.correlation_id != corr {
            return Err(ClientError::Correlation {
                addr: self.addr.clone(),
                expected: corr,
                got: header.correlation_id,
            });
        }
        let resp = <R::Response as Decodable>::decode(&mut frame, version).map_err(decode_err)?;
        Ok(resp)
    }

    fn read_frame(&mut self, api: &'static str) -> Result<Bytes, ClientError> {
        let mut size = [0u8; 4];
        self.read_exact(&mut size, api, "waiting for a response")?;
        let size = i32::from_be_bytes(size) as i64;
        if size < 4 || size as usize > MAX_RESPONSE_FRAME {
            return Err(ClientError::FrameSize { addr: self.addr.clone(), size, limit: MAX_RESPONSE_FRAME });
        }
        let mut body = BytesMut::zeroed(size as usize);
        self.read_exact(&mut body, api, "reading a response")?;
        Ok(body.freeze())
    }

    fn read_exact(&mut self, buf: &mut [u8], api: &'static str, what: &'static str) -> Result<(), ClientError> {
        self.stream.read_exact(buf).map_err(|source| match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                ClientError::Timeout { addr: self.addr.clone(), api, timeout: self.timeout }
            }
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                ClientError::Closed { addr: self.addr.clone(), what }
            }
            _ => ClientError::Io { addr: self.addr.clone(), what: "reading from", source },
        })
    }
}

/// Splits a Fetch response's `records` into whole RecordBatches, dropping a
/// partial batch at the end (a broker may cut the last one at max_bytes).
/// Returns the batches and the offset after the last whole one, if any.
pub fn whole_batches(mut records: Bytes) -> (Vec<Bytes>, Option<i64>) {
    let mut batches = Vec::new();
    let mut next_offset = None;
    while records.len() >= 61 {
        let base_offset = (&records[0..8]).get_i64();
        let length = (&records[8..12]).get_i32();
        if length < 49 {
            break;
        }
        let total = 12 + length as usize;
        if total > records.len() {
            break;
        }
        let last_offset_delta = (&records[23..27]).get_i32();
        next_offset = Some(base_offset + last_offset_delta as i64 + 1);
        batches.push(records.split_to(total));
    }
    (batches, next_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_batches_drops_a_truncated_trailing_batch() {
        let entries: Vec<(Option<Bytes>, Bytes)> = (0..3).map(|i| (None, Bytes::from(vec![i as u8; 10]))).collect();
        let one = ringmq::kafka::record_batch::encode_batch(&entries, 0).expect("encode");
        let mut two = BytesMut::new();
        two.extend_from_slice(&one);
        // Second batch at base offset 3 (patch the base offset).
        let mut second = one.clone();
        second[0..8].copy_from_slice(&3i64.to_be_bytes());
        two.extend_from_slice(&second);
        let truncated = two.len() - 5;
        let (batches, next) = whole_batches(Bytes::copy_from_slice(&two[..truncated]));
        assert_eq!(batches.len(), 1);
        assert_eq!(next, Some(3));
        let (batches, next) = whole_batches(two.freeze());
        assert_eq!(batches.len(), 2);
        assert_eq!(next, Some(6));
    }
}
