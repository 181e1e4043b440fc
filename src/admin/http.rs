//! A tiny blocking HTTP/1.0 client for the queue commands, which talk to
//! the broker's HTTP API (its metrics address): one `std::net::TcpStream`
//! per request, opened with a connect timeout, `Connection: close`, one
//! deadline for writing the request and reading the whole answer, the
//! status line and `Content-Length` parsed (else the body runs to EOF), and
//! a bound on the answer's size.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::error::AdminError;

/// Largest answer head accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest answer body accepted (a list of the broker's 10,000 queues at
/// most is a few MiB).
pub const MAX_BODY_BYTES: usize = 32 << 20;

/// How to reach the API and how long to wait for it.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    pub connect_timeout: Duration,
    /// From sending the request to the answer's last byte.
    pub request_timeout: Duration,
}

/// A whole answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends `method target` to `addr` (`HOST:PORT`) and reads the answer;
/// `api` names the request in messages.
pub fn request(
    addr: &str,
    method: &str,
    target: &str,
    api: &'static str,
    opts: &HttpOptions,
) -> Result<Response, AdminError> {
    let mut conn = Conn {
        stream: super::client::open(addr, opts.connect_timeout)?,
        addr,
        api,
        deadline: Instant::now() + opts.request_timeout,
        timeout: opts.request_timeout,
    };
    let head = format!(
        "{method} {target} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: ringmq-admin/{}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    conn.write_all(head.as_bytes())?;
    conn.read_response()
}

struct Conn<'a> {
    stream: TcpStream,
    addr: &'a str,
    api: &'static str,
    deadline: Instant,
    timeout: Duration,
}

impl Conn<'_> {
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), AdminError> {
        let left = self.time_left()?;
        self.stream.set_write_timeout(Some(left)).map_err(|e| self.io_error(e))?;
        self.stream.write_all(bytes).map_err(|e| self.io_error(e))
    }

    /// Reads until the head is complete and then until `Content-Length`
    /// bytes of body (or EOF without one).
    fn read_response(&mut self) -> Result<Response, AdminError> {
        let mut buf = Vec::with_capacity(4096);
        let mut head: Option<Head> = None;
        loop {
            if head.is_none() {
                head = parse_head(&buf).map_err(|detail| self.protocol(detail))?;
            }
            if let Some(h) = &head {
                if h.content_length.is_some_and(|n| buf.len() >= h.head_bytes + n) {
                    break;
                }
                if buf.len() - h.head_bytes > MAX_BODY_BYTES {
                    return Err(self.protocol(format!("an answer over {MAX_BODY_BYTES} bytes")));
                }
            } else if buf.len() > MAX_HEAD_BYTES {
                return Err(self.protocol(format!("no end of the answer's head within {MAX_HEAD_BYTES} bytes")));
            }
            if self.read_some(&mut buf)? == 0 {
                break;
            }
        }
        let h = head.ok_or_else(|| {
            let detail =
                if buf.is_empty() { "it closed the connection without answering" } else { "a cut-short answer" };
            self.protocol(detail.to_string())
        })?;
        let mut body = buf.split_off(h.head_bytes);
        match h.content_length {
            Some(n) if body.len() < n => Err(self.protocol(format!("{} of {n} body bytes, then EOF", body.len()))),
            Some(n) => {
                body.truncate(n);
                Ok(Response { status: h.status, body })
            }
            None => Ok(Response { status: h.status, body }),
        }
    }

    /// One read onto the end of `buf`; 0 at EOF.
    fn read_some(&mut self, buf: &mut Vec<u8>) -> Result<usize, AdminError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let left = self.time_left()?;
            self.stream.set_read_timeout(Some(left)).map_err(|e| self.io_error(e))?;
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }

    fn time_left(&self) -> Result<Duration, AdminError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timeout_error());
        }
        Ok(left)
    }

    fn timeout_error(&self) -> AdminError {
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        AdminError::Timeout { addr: self.addr.to_string(), api: self.api, timeout_ms }
    }

    fn io_error(&self, source: io::Error) -> AdminError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => self.timeout_error(),
            _ => AdminError::Io { addr: self.addr.to_string(), api: self.api, source },
        }
    }

    fn protocol(&self, detail: String) -> AdminError {
        AdminError::Protocol {
            addr: self.addr.to_string(),
            api: self.api,
            detail: format!("not an HTTP answer: {detail}"),
        }
    }
}

/// What the head of an answer says.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: Option<usize>,
    /// Bytes of the head, the blank line included.
    head_bytes: usize,
}

/// The head at the start of `buf`, `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        // The status line can be judged before the rest arrives.
        if buf.len() >= 5 && !buf.starts_with(b"HTTP/") {
            return Err(format!("it starts with {:?}", String::from_utf8_lossy(&buf[..buf.len().min(16)])));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "a head that is not text".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .filter(|code| (100..600).contains(code))
        .ok_or_else(|| format!("status line {status_line:?}"))?;
    let mut content_length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                let n = value.trim().parse::<usize>().map_err(|_| format!("Content-Length {:?}", value.trim()))?;
                if n > MAX_BODY_BYTES {
                    return Err(format!("a body of {n} bytes (at most {MAX_BODY_BYTES} accepted)"));
                }
                content_length = Some(n);
            }
        }
    }
    Ok(Some(Head { status, content_length, head_bytes: end + 4 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_gives_its_status_and_content_length() {
        let h = parse_head(b"HTTP/1.0 404 Not Found\r\ncontent-length: 12\r\nConnection: close\r\n\r\n{}").unwrap();
        assert_eq!(h, Some(Head { status: 404, content_length: Some(12), head_bytes: 65 }));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").unwrap().map(|h| h.content_length), Some(None));
        assert_eq!(parse_head(b"HTTP/1.0 200 OK\r\nContent-").unwrap(), None);
    }

    #[test]
    fn what_is_not_http_is_told_early() {
        assert!(parse_head(b"\x00\x00\x00\x10garbage").is_err());
        assert!(parse_head(b"HTTP/1.0 abc\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.0 200 OK\r\nContent-Length: 99999999999\r\n\r\n").is_err());
    }

    #[test]
    fn the_body_is_read_to_content_length_or_eof() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for answer in
                [&b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n[]trailing"[..], b"HTTP/1.0 200 OK\r\n\r\nto eof"]
            {
                let (mut s, _) = listener.accept().unwrap();
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).unwrap();
                s.write_all(answer).unwrap();
            }
        });
        let opts = HttpOptions { connect_timeout: Duration::from_secs(3), request_timeout: Duration::from_secs(5) };
        let r = request(&addr, "GET", "/api/queues", "GET /api/queues", &opts).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"[]"[..]));
        let r = request(&addr, "GET", "/api/queues", "GET /api/queues", &opts).unwrap();
        assert_eq!(r.body, b"to eof");
        server.join().unwrap();
    }
}
