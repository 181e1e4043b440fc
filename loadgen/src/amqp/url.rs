//! `amqp://USER:PASS@HOST:PORT/VHOST`, as RabbitMQ's URI spec writes it:
//! user, password and vhost percent-encoded, port 5672 and `guest`/`guest`
//! when left out, an empty path or `/` meaning the vhost `/`. `amqps://`
//! and query parameters are refused rather than ignored.

/// A parsed AMQP URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmqpUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub vhost: String,
}

pub const DEFAULT_PORT: u16 = 5672;

impl AmqpUrl {
    /// Parses `s`; the error says what is wrong with it.
    pub fn parse(s: &str) -> Result<AmqpUrl, String> {
        if s.starts_with("amqps://") {
            return Err("TLS (amqps://) is not supported by this load generator; use amqp://".to_string());
        }
        let rest = s.strip_prefix("amqp://").ok_or("it must start with amqp://")?;
        if rest.contains('?') || rest.contains('#') {
            return Err("query parameters and fragments are not supported".to_string());
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => ("guest".to_string(), "guest".to_string()),
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (decode(user, "user")?, decode(pass, "password")?),
                None => (decode(u, "user")?, String::new()),
            },
        };
        let (host, port) = split_host_port(hostport)?;
        if path.contains('/') {
            return Err(format!("the vhost '{path}' must be one path segment (write '/' inside it as %2F)"));
        }
        let vhost = if path.is_empty() { "/".to_string() } else { decode(path, "vhost")? };
        Ok(AmqpUrl { host, port, user, password, vhost })
    }

    /// `HOST:PORT` to connect to (an IPv6 host in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without its password, for summaries and messages.
    pub fn redacted(&self) -> String {
        let vhost = if self.vhost == "/" { String::new() } else { encode(&self.vhost) };
        format!("amqp://{}:***@{}/{}", encode(&self.user), self.addr(), vhost)
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let close = v6.find(']').ok_or("an IPv6 host needs its closing ']'")?;
        let after = &v6[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("unexpected '{after}' after the IPv6 host")),
        };
        (v6[..close].to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err("the host is missing".to_string());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("the port '{p}' is not a number in 1..=65535")),
        },
    };
    Ok((host, port))
}

/// Percent-decoding of one URL part (UTF-8 after decoding).
fn decode(s: &str, part: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| format!("the {part} ends in an incomplete %-escape"))?;
            let v = u8::from_str_radix(hex, 16).map_err(|_| format!("the {part} has a bad %-escape '%{hex}'"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("the {part} is not UTF-8 once decoded"))
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_url_gives_every_part_decoded() {
        let u = AmqpUrl::parse("amqp://us%40er:p%3Ass@broker.example:5673/my%2Fvhost").expect("parse");
        assert_eq!(
            u,
            AmqpUrl {
                host: "broker.example".into(),
                port: 5673,
                user: "us@er".into(),
                password: "p:ss".into(),
                vhost: "my/vhost".into()
            }
        );
        assert_eq!(u.redacted(), "amqp://us%40er:***@broker.example:5673/my%2Fvhost");
    }

    #[test]
    fn left_out_parts_take_rabbitmqs_defaults() {
        for s in ["amqp://localhost", "amqp://localhost/", "amqp://guest:guest@localhost:5672/%2F"] {
            let u = AmqpUrl::parse(s).expect(s);
            assert_eq!((u.port, u.user.as_str(), u.password.as_str(), u.vhost.as_str()), (5672, "guest", "guest", "/"));
        }
        let u = AmqpUrl::parse("amqp://[::1]:1234/").expect("ipv6");
        assert_eq!((u.host.as_str(), u.addr()), ("::1", "[::1]:1234".to_string()));
    }

    #[test]
    fn malformed_urls_are_refused_with_the_reason() {
        for (s, why) in [
            ("http://localhost/", "amqp://"),
            ("amqps://localhost/", "TLS"),
            ("amqp://localhost:99999/", "port"),
            ("amqp://localhost:x/", "port"),
            ("amqp://:5672/", "host"),
            ("amqp://localhost/a/b", "one path segment"),
            ("amqp://localhost/?heartbeat=10", "query"),
            ("amqp://u%zz:p@localhost/", "%-escape"),
        ] {
            let e = AmqpUrl::parse(s).expect_err(s);
            assert!(e.contains(why), "{s}: {e}");
        }
    }
}
