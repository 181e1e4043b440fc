//! How exchanges match bindings: direct (routing key equals the binding
//! key), fanout (every binding), topic (`*` one word, `#` zero or more,
//! words split at `.`) and headers (`x-match` all or any, and RabbitMQ's
//! `all-with-x` / `any-with-x`, over the message's headers table).
//!
//! Pure functions over names and tables; the graph of exchanges, queues and
//! bindings that uses them is `definitions`.

use super::codec::{AMQPValue, FieldTable};

/// The exchange types ringmq routes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<ExchangeKind> {
        match s {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }

    /// Whether a binding with `binding_key` and `arguments` takes a message
    /// with `routing_key` and `headers`.
    pub fn matches(
        self,
        binding_key: &str,
        arguments: &FieldTable,
        routing_key: &str,
        headers: Option<&FieldTable>,
    ) -> bool {
        match self {
            ExchangeKind::Direct => binding_key == routing_key,
            ExchangeKind::Fanout => true,
            ExchangeKind::Topic => topic_matches(binding_key, routing_key),
            ExchangeKind::Headers => headers_match(arguments, headers),
        }
    }
}

/// Topic matching: `pattern` and `key` are words separated by `.`; `*`
/// matches exactly one word, `#` zero or more. Iterative, with one
/// backtracking point per `#` (the classic wildcard algorithm: at most
/// `pattern words × key words` steps).
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    // The empty string is zero words.
    fn words(s: &str) -> Vec<&str> {
        if s.is_empty() {
            Vec::new()
        } else {
            s.split('.').collect()
        }
    }
    let (p, k) = (words(pattern), words(key));
    let (mut pi, mut ki) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ki < k.len() {
        if pi < p.len() && p[pi] == "#" {
            star = Some((pi, ki));
            pi += 1;
        } else if pi < p.len() && (p[pi] == "*" || p[pi] == k[ki]) {
            pi += 1;
            ki += 1;
        } else if let Some((sp, sk)) = star {
            // Let the last `#` take one more word and retry.
            pi = sp + 1;
            ki = sk + 1;
            star = Some((sp, sk + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == "#" {
        pi += 1;
    }
    pi == p.len()
}

/// Headers matching as RabbitMQ does it: the binding's arguments other than
/// those starting with `x-` are compared with the message's headers (with
/// `all-with-x` / `any-with-x`, the `x-` ones too). A binding value of type
/// void matches the key's presence alone. `x-match` defaults to `all`.
pub fn headers_match(binding: &FieldTable, headers: Option<&FieldTable>) -> bool {
    let mode = match binding.inner().get("x-match") {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(s)) => s.as_str().to_string(),
        _ => "all".to_string(),
    };
    let (any, with_x) = match mode.as_str() {
        "any" => (true, false),
        "any-with-x" => (true, true),
        "all-with-x" => (false, true),
        _ => (false, false),
    };
    let empty = FieldTable::default();
    let headers = headers.unwrap_or(&empty).inner();
    for (key, expected) in binding.inner() {
        if key.as_str() == "x-match" || (!with_x && key.as_str().starts_with("x-")) {
            continue;
        }
        let hit = match (expected, headers.get(key)) {
            (_, None) => false,
            (AMQPValue::Void, Some(_)) => true,
            (e, Some(v)) => values_equal(e, v),
        };
        if any && hit {
            return true;
        }
        if !any && !hit {
            return false;
        }
    }
    // Every key matched (all), or none did (any; also any over no keys).
    !any
}

/// Value equality as RabbitMQ's headers exchange has it (Erlang `==` over
/// the decoded values): integers of every width, timestamps and floats by
/// numeric value (`1 == 1.0`), long and short strings and byte arrays by
/// their bytes; anything else (booleans, decimals, tables, arrays) only with
/// a value of its own kind.
fn values_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    match (number(a), number(b)) {
        (Some(x), Some(y)) => return x.equals(y),
        (Some(_), None) | (None, Some(_)) => return false,
        (None, None) => {}
    }
    match (bytes_of(a), bytes_of(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[derive(Debug, Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

impl Number {
    fn equals(self, other: Number) -> bool {
        match (self, other) {
            (Number::Int(x), Number::Int(y)) => x == y,
            (Number::Float(x), Number::Float(y)) => x == y,
            // A float equals an integer only when it is that integer exactly
            // (NaN and infinities have no zero fraction).
            (Number::Int(i), Number::Float(f)) | (Number::Float(f), Number::Int(i)) => {
                f.fract() == 0.0 && f as i128 == i
            }
        }
    }
}

fn number(v: &AMQPValue) -> Option<Number> {
    let int = |x: i128| Some(Number::Int(x));
    match v {
        AMQPValue::ShortShortInt(x) => int(i128::from(*x)),
        AMQPValue::ShortShortUInt(x) => int(i128::from(*x)),
        AMQPValue::ShortInt(x) => int(i128::from(*x)),
        AMQPValue::ShortUInt(x) => int(i128::from(*x)),
        AMQPValue::LongInt(x) => int(i128::from(*x)),
        AMQPValue::LongUInt(x) => int(i128::from(*x)),
        AMQPValue::LongLongInt(x) => int(i128::from(*x)),
        AMQPValue::Timestamp(x) => int(i128::from(*x)),
        AMQPValue::Float(x) => Some(Number::Float(f64::from(*x))),
        AMQPValue::Double(x) => Some(Number::Float(*x)),
        _ => None,
    }
}

fn bytes_of(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        AMQPValue::ByteArray(b) => Some(b.as_slice()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amqp::codec::LongString;

    #[test]
    fn topic_patterns_match_as_the_tutorial_table_says() {
        // RabbitMQ tutorial 5: "*.orange.*", "*.*.rabbit", "lazy.#".
        let q1 = "*.orange.*";
        let q2 = ["*.*.rabbit", "lazy.#"];
        let m2 = |k: &str| q2.iter().any(|p| topic_matches(p, k));
        assert!(topic_matches(q1, "quick.orange.rabbit") && m2("quick.orange.rabbit"));
        assert!(topic_matches(q1, "lazy.orange.elephant") && m2("lazy.orange.elephant"));
        assert!(topic_matches(q1, "quick.orange.fox") && !m2("quick.orange.fox"));
        assert!(!topic_matches(q1, "lazy.brown.fox") && m2("lazy.brown.fox"));
        assert!(!topic_matches(q1, "lazy.pink.rabbit") && m2("lazy.pink.rabbit"));
        assert!(!topic_matches(q1, "quick.brown.fox") && !m2("quick.brown.fox"));
        assert!(!topic_matches(q1, "orange") && !m2("orange"));
        assert!(!topic_matches(q1, "quick.orange.new.rabbit") && !m2("quick.orange.new.rabbit"));
        assert!(!topic_matches(q1, "lazy.orange.new.rabbit") && m2("lazy.orange.new.rabbit"));
    }

    #[test]
    fn hash_matches_zero_or_more_words_anywhere() {
        assert!(topic_matches("#", ""));
        assert!(topic_matches("#", "a.b.c"));
        assert!(topic_matches("a.#", "a"));
        assert!(topic_matches("a.#.c", "a.c"));
        assert!(topic_matches("a.#.c", "a.b.b.c"));
        assert!(!topic_matches("a.#.c", "a.b.b.d"));
        assert!(topic_matches("#.c", "c"));
        assert!(topic_matches("#.#.c", "x.c"));
        assert!(!topic_matches("*", ""));
        assert!(topic_matches("", ""));
        assert!(!topic_matches("a", ""));
        assert!(topic_matches("*.#", "a"));
        assert!(!topic_matches("*.*", "a"));
    }

    fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in entries {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    fn ls(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s))
    }

    #[test]
    fn headers_all_needs_every_key_and_any_needs_one() {
        let msg = table(&[("format", ls("pdf")), ("type", ls("report"))]);
        let all = table(&[("x-match", ls("all")), ("format", ls("pdf")), ("type", ls("log"))]);
        let any = table(&[("x-match", ls("any")), ("format", ls("pdf")), ("type", ls("log"))]);
        assert!(!headers_match(&all, Some(&msg)));
        assert!(headers_match(&any, Some(&msg)));
        let all_ok = table(&[("format", ls("pdf"))]);
        assert!(headers_match(&all_ok, Some(&msg)), "x-match defaults to all");
        assert!(!headers_match(&all_ok, None));
    }

    #[test]
    fn headers_ignore_x_keys_unless_asked_and_void_means_present() {
        let msg = table(&[("x-tag", ls("1")), ("k", AMQPValue::LongLongInt(3))]);
        let plain = table(&[("x-tag", ls("2"))]);
        assert!(headers_match(&plain, Some(&msg)), "x- keys are not compared with all");
        let with_x = table(&[("x-match", ls("all-with-x")), ("x-tag", ls("2"))]);
        assert!(!headers_match(&with_x, Some(&msg)));
        let present = table(&[("k", AMQPValue::Void)]);
        assert!(headers_match(&present, Some(&msg)));
        let any_empty = table(&[("x-match", ls("any"))]);
        assert!(!headers_match(&any_empty, Some(&msg)));
    }

    #[test]
    fn headers_values_compare_as_rabbitmq_numbers_by_value_and_strings_by_bytes() {
        let bound = table(&[("n", AMQPValue::LongInt(1))]);
        let with = |v: AMQPValue| table(&[("n", v)]);
        for v in
            [AMQPValue::LongLongInt(1), AMQPValue::ShortShortUInt(1), AMQPValue::Double(1.0), AMQPValue::Timestamp(1)]
        {
            assert!(headers_match(&bound, Some(&with(v.clone()))), "{v:?} equals 1");
        }
        for v in [
            ls("1"),
            AMQPValue::Boolean(true),
            AMQPValue::Double(1.5),
            AMQPValue::DecimalValue(amq_protocol::types::DecimalValue { scale: 0, value: 1 }),
        ] {
            assert!(!headers_match(&bound, Some(&with(v.clone()))), "{v:?} does not equal 1");
        }
        let bytes = AMQPValue::ByteArray(b"abc".to_vec().into());
        assert!(headers_match(&table(&[("s", ls("abc"))]), Some(&table(&[("s", bytes)]))));
    }
}
