//! The vhost's graph: exchanges, queues and the bindings between them, with
//! the rules for changing it (declare equivalence, deletion conditions) and
//! routing a message through it (exchange-to-exchange bindings followed,
//! each exchange visited once).
//!
//! Owned by one shard (the definitions shard), which applies every change,
//! stores the durable part (`<data-dir>/amqp/definitions`, a checksummed
//! file replaced whole) and sends the change to every other shard, each of
//! which keeps a copy for routing publishes locally. Plain data: no I/O but
//! `load`/`store`, no async.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::codec::{AMQPValue, FieldTable};
use super::codes;
use super::routing::ExchangeKind;

/// The only virtual host.
pub const VHOST: &str = "/";
/// Exchanges that exist in every vhost and cannot be deleted or redeclared
/// with other properties.
pub const DEFAULT_EXCHANGES: &[(&str, ExchangeKind)] = &[
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];
/// Bounds on the graph, each refused with a clear error when reached.
pub const MAX_QUEUES: usize = 10_000;
pub const MAX_EXCHANGES: usize = 10_000;
pub const MAX_BINDINGS: usize = 100_000;

/// Who holds an exclusive queue: a connection, by shard and number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnectionId {
    pub shard: usize,
    pub number: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDef {
    pub durable: bool,
    pub auto_delete: bool,
    /// Set for exclusive queues: only this connection may use the queue, and
    /// it goes when the connection closes. Never stored.
    #[serde(skip)]
    pub exclusive_owner: Option<ConnectionId>,
    pub arguments: FieldTable,
}

/// Where a binding leads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Destination {
    Queue(String),
    Exchange(String),
}

impl Destination {
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(n) | Destination::Exchange(n) => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub source: String,
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

impl Binding {
    fn same(&self, other: &Binding) -> bool {
        self.source == other.source
            && self.destination == other.destination
            && self.routing_key == other.routing_key
            && self.arguments == other.arguments
    }
}

/// A refused change: the AMQP reply code and its text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} - {text}", codes::name(*.code))]
pub struct DefinitionError {
    pub code: u16,
    pub text: String,
}

fn refuse(code: u16, text: String) -> DefinitionError {
    DefinitionError { code, text }
}

/// One change to the graph, as the definitions shard applies it and sends
/// it to the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    DeclareExchange { name: String, exchange: Exchange },
    DeleteExchange { name: String },
    DeclareQueue { name: String, queue: QueueDefWire },
    DeleteQueue { name: String },
    Bind(Binding),
    Unbind(Binding),
}

/// `QueueDef` with its owner, for sending between shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueDefWire {
    pub def: QueueDef,
    pub exclusive_owner: Option<ConnectionId>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    pub exchanges: BTreeMap<String, Exchange>,
    pub queues: BTreeMap<String, QueueDef>,
    /// Bindings by source exchange.
    pub bindings: BTreeMap<String, Vec<Binding>>,
}

impl Definitions {
    /// The definitions of a fresh vhost: the default exchanges only.
    pub fn with_defaults() -> Definitions {
        let mut d = Definitions::default();
        for (name, kind) in DEFAULT_EXCHANGES {
            d.exchanges.insert(
                (*name).to_string(),
                Exchange {
                    kind: *kind,
                    durable: true,
                    auto_delete: false,
                    internal: false,
                    arguments: FieldTable::default(),
                },
            );
        }
        d
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// Checks a change against the graph without applying it. `Ok(false)`
    /// when it changes nothing (an equivalent redeclare, a missing binding
    /// removed).
    pub fn check(&self, change: &Change) -> Result<bool, DefinitionError> {
        match change {
            Change::DeclareExchange { name, exchange } => self.check_declare_exchange(name, exchange),
            Change::DeleteExchange { name } => {
                if is_default_exchange(name) {
                    return Err(refuse(
                        codes::ACCESS_REFUSED,
                        format!("operation not permitted on the default exchange '{name}'"),
                    ));
                }
                Ok(self.exchanges.contains_key(name))
            }
            Change::DeclareQueue { name, queue } => self.check_declare_queue(name, queue),
            Change::DeleteQueue { name } => Ok(self.queues.contains_key(name)),
            Change::Bind(b) => self.check_bind(b),
            Change::Unbind(b) => {
                check_not_default_exchange(b)?;
                self.check_ends(b)?;
                Ok(self.bindings.get(&b.source).is_some_and(|v| v.iter().any(|x| x.same(b))))
            }
        }
    }

    fn check_declare_exchange(&self, name: &str, exchange: &Exchange) -> Result<bool, DefinitionError> {
        if let Some(old) = self.exchanges.get(name) {
            // Each field in RabbitMQ's order, the first that differs named.
            for (what, received, current) in [
                ("type", exchange.kind.as_str().to_string(), old.kind.as_str().to_string()),
                ("durable", exchange.durable.to_string(), old.durable.to_string()),
                ("auto_delete", exchange.auto_delete.to_string(), old.auto_delete.to_string()),
                ("internal", exchange.internal.to_string(), old.internal.to_string()),
            ] {
                if received != current {
                    return Err(refuse(
                        codes::PRECONDITION_FAILED,
                        format!("inequivalent arg '{what}' for exchange '{name}' in vhost '{VHOST}': received '{received}' but current is '{current}'"),
                    ));
                }
            }
            return Ok(false);
        }
        if name.starts_with("amq.") {
            return Err(refuse(
                codes::ACCESS_REFUSED,
                format!("exchange name '{name}' contains reserved prefix 'amq.*'"),
            ));
        }
        if self.exchanges.len() >= MAX_EXCHANGES {
            return Err(refuse(codes::RESOURCE_ERROR, format!("exchange limit of {MAX_EXCHANGES} reached")));
        }
        Ok(true)
    }

    fn check_declare_queue(&self, name: &str, queue: &QueueDefWire) -> Result<bool, DefinitionError> {
        if let Some(old) = self.queues.get(name) {
            // Exclusivity first, and strictly (as RabbitMQ): the same owner,
            // or no owner on both sides; a shared queue redeclared exclusive
            // is locked too.
            if old.exclusive_owner != queue.exclusive_owner {
                return Err(refuse(
                    codes::RESOURCE_LOCKED,
                    format!("cannot obtain exclusive access to locked queue '{name}' in vhost '{VHOST}'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."),
                ));
            }
            for (what, current, received) in
                [("durable", old.durable, queue.def.durable), ("auto_delete", old.auto_delete, queue.def.auto_delete)]
            {
                if current != received {
                    return Err(refuse(
                        codes::PRECONDITION_FAILED,
                        format!("inequivalent arg '{what}' for queue '{name}' in vhost '{VHOST}': received '{received}' but current is '{current}'"),
                    ));
                }
            }
            for key in [
                "x-queue-type",
                "x-max-priority",
                "x-message-ttl",
                "x-expires",
                "x-max-length",
                "x-max-length-bytes",
                "x-overflow",
                "x-dead-letter-exchange",
                "x-dead-letter-routing-key",
                "x-queue-mode",
                "x-queue-version",
                "x-queue-master-locator",
            ] {
                let a = old.arguments.inner().get(key);
                let b = queue.def.arguments.inner().get(key);
                let equivalent = a == b || (key == "x-queue-type" && is_classic(a) && is_classic(b));
                if !equivalent {
                    return Err(refuse(
                        codes::PRECONDITION_FAILED,
                        format!("inequivalent arg '{key}' for queue '{name}' in vhost '{VHOST}'"),
                    ));
                }
            }
            return Ok(false);
        }
        if self.queues.len() >= MAX_QUEUES {
            return Err(refuse(codes::RESOURCE_ERROR, format!("queue limit of {MAX_QUEUES} reached")));
        }
        Ok(true)
    }

    fn check_ends(&self, b: &Binding) -> Result<(), DefinitionError> {
        if !self.exchanges.contains_key(&b.source) {
            return Err(refuse(codes::NOT_FOUND, format!("no exchange '{}' in vhost '{VHOST}'", b.source)));
        }
        match &b.destination {
            Destination::Queue(q) if !self.queues.contains_key(q) => {
                Err(refuse(codes::NOT_FOUND, format!("no queue '{q}' in vhost '{VHOST}'")))
            }
            Destination::Exchange(x) if !self.exchanges.contains_key(x) => {
                Err(refuse(codes::NOT_FOUND, format!("no exchange '{x}' in vhost '{VHOST}'")))
            }
            _ => Ok(()),
        }
    }

    fn check_bind(&self, b: &Binding) -> Result<bool, DefinitionError> {
        check_not_default_exchange(b)?;
        self.check_ends(b)?;
        if self.bindings.get(&b.source).is_some_and(|v| v.iter().any(|x| x.same(b))) {
            return Ok(false);
        }
        if self.binding_count() >= MAX_BINDINGS {
            return Err(refuse(codes::RESOURCE_ERROR, format!("binding limit of {MAX_BINDINGS} reached")));
        }
        Ok(true)
    }

    /// Applies a change that `check` accepted. Deleting a queue or an
    /// exchange removes the bindings to and from it.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::DeclareExchange { name, exchange } => {
                self.exchanges.entry(name.clone()).or_insert_with(|| exchange.clone());
            }
            Change::DeleteExchange { name } => {
                self.exchanges.remove(name);
                self.bindings.remove(name);
                let gone = Destination::Exchange(name.clone());
                self.bindings.values_mut().for_each(|v| v.retain(|b| b.destination != gone));
                self.bindings.retain(|_, v| !v.is_empty());
            }
            Change::DeclareQueue { name, queue } => {
                self.queues.entry(name.clone()).or_insert_with(|| {
                    let mut def = queue.def.clone();
                    def.exclusive_owner = queue.exclusive_owner;
                    def
                });
            }
            Change::DeleteQueue { name } => {
                self.queues.remove(name);
                let gone = Destination::Queue(name.clone());
                self.bindings.values_mut().for_each(|v| v.retain(|b| b.destination != gone));
                self.bindings.retain(|_, v| !v.is_empty());
            }
            Change::Bind(b) => {
                let v = self.bindings.entry(b.source.clone()).or_default();
                if !v.iter().any(|x| x.same(b)) {
                    v.push(b.clone());
                }
            }
            Change::Unbind(b) => {
                if let Some(v) = self.bindings.get_mut(&b.source) {
                    v.retain(|x| !x.same(b));
                    if v.is_empty() {
                        self.bindings.remove(&b.source);
                    }
                }
            }
        }
    }

    /// Exchanges marked auto-delete that lost their last binding as source
    /// (after an unbind or a deletion): RabbitMQ deletes them then.
    pub fn orphaned_auto_delete_exchanges(&self) -> Vec<String> {
        self.exchanges
            .iter()
            .filter(|(n, x)| x.auto_delete && !self.bindings.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The queues a message published to `exchange` with `routing_key` and
    /// `headers` reaches, each once. `None` when the exchange does not exist.
    /// The default exchange routes to the queue named by the routing key.
    pub fn route(&self, exchange: &str, routing_key: &str, headers: Option<&FieldTable>) -> Option<BTreeSet<String>> {
        self.exchanges.get(exchange)?;
        let mut queues = BTreeSet::new();
        if exchange.is_empty() {
            if self.queues.contains_key(routing_key) {
                queues.insert(routing_key.to_string());
            }
            return Some(queues);
        }
        let mut visited = BTreeSet::new();
        let mut pending = vec![exchange.to_string()];
        while let Some(x) = pending.pop() {
            if !visited.insert(x.clone()) {
                continue;
            }
            let Some(kind) = self.exchanges.get(&x).map(|e| e.kind) else { continue };
            for b in self.bindings.get(&x).map(Vec::as_slice).unwrap_or_default() {
                if !kind.matches(&b.routing_key, &b.arguments, routing_key, headers) {
                    continue;
                }
                match &b.destination {
                    Destination::Queue(q) => {
                        queues.insert(q.clone());
                    }
                    Destination::Exchange(e) => pending.push(e.clone()),
                }
            }
        }
        Some(queues)
    }

    /// Bindings whose destination is `queue` (for queue.delete's reply and
    /// cleanup).
    pub fn bindings_to_queue(&self, queue: &str) -> usize {
        self.bindings
            .values()
            .flatten()
            .filter(|b| matches!(&b.destination, Destination::Queue(q) if q == queue))
            .count()
    }

    /// Whether `exchange` is the source of a binding or the destination of
    /// an exchange-to-exchange binding (exchange.delete if-unused).
    pub fn exchange_in_use(&self, exchange: &str) -> bool {
        self.bindings.contains_key(exchange)
            || self
                .bindings
                .values()
                .flatten()
                .any(|b| matches!(&b.destination, Destination::Exchange(x) if x == exchange))
    }

    /// The durable part, as stored.
    fn durable(&self) -> Definitions {
        let exchanges: BTreeMap<String, Exchange> = self
            .exchanges
            .iter()
            .filter(|(n, x)| x.durable && !is_default_exchange(n))
            .map(|(n, x)| (n.clone(), x.clone()))
            .collect();
        let queues: BTreeMap<String, QueueDef> = self
            .queues
            .iter()
            .filter(|(_, q)| q.durable && q.exclusive_owner.is_none())
            .map(|(n, q)| (n.clone(), q.clone()))
            .collect();
        let kept = |b: &Binding| {
            (exchanges.contains_key(&b.source) || is_default_exchange(&b.source))
                && match &b.destination {
                    Destination::Queue(q) => queues.contains_key(q),
                    Destination::Exchange(x) => exchanges.contains_key(x) || is_default_exchange(x),
                }
        };
        let bindings = self
            .bindings
            .iter()
            .map(|(s, v)| (s.clone(), v.iter().filter(|b| kept(b)).cloned().collect::<Vec<_>>()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        Definitions { exchanges, queues, bindings }
    }

    /// Whether a change alters what is stored.
    pub fn touches_durable(&self, change: &Change) -> bool {
        match change {
            Change::DeclareExchange { exchange, .. } => exchange.durable,
            Change::DeleteExchange { name } => self.exchanges.get(name).is_some_and(|x| x.durable),
            Change::DeclareQueue { queue, .. } => queue.def.durable && queue.exclusive_owner.is_none(),
            Change::DeleteQueue { name } => {
                self.queues.get(name).is_some_and(|q| q.durable && q.exclusive_owner.is_none())
            }
            Change::Bind(b) | Change::Unbind(b) => {
                let durable_x = |n: &str| is_default_exchange(n) || self.exchanges.get(n).is_some_and(|x| x.durable);
                durable_x(&b.source)
                    && match &b.destination {
                        Destination::Queue(q) => {
                            self.queues.get(q).is_some_and(|q| q.durable && q.exclusive_owner.is_none())
                        }
                        Destination::Exchange(x) => durable_x(x),
                    }
            }
        }
    }

    /// Loads the stored definitions (blocking), with the default exchanges.
    pub fn load(path: &Path) -> Result<Definitions, crate::durable_file::DurableFileError> {
        let mut d = Definitions::with_defaults();
        if let Some(body) = crate::durable_file::load(path)? {
            let stored: Definitions = serde_json::from_str(&body).map_err(|e| {
                crate::durable_file::DurableFileError::Corrupt { path: path.to_path_buf(), reason: e.to_string() }
            })?;
            d.exchanges.extend(stored.exchanges);
            d.queues.extend(stored.queues);
            d.bindings = stored.bindings;
        }
        Ok(d)
    }

    /// Stores the durable part (blocking).
    pub fn store(&self, path: &Path) -> Result<(), crate::durable_file::DurableFileError> {
        let body =
            serde_json::to_string_pretty(&self.durable()).map_err(|e| crate::durable_file::DurableFileError::Io {
                context: "encode AMQP definitions".into(),
                source: std::io::Error::other(e),
            })?;
        crate::durable_file::store(path, &body)
    }
}

/// Bindings from or to the default exchange (the empty name) are neither
/// made nor removed: it routes by queue name alone.
fn check_not_default_exchange(b: &Binding) -> Result<(), DefinitionError> {
    if b.source.is_empty() || matches!(&b.destination, Destination::Exchange(x) if x.is_empty()) {
        return Err(refuse(codes::ACCESS_REFUSED, "operation not permitted on the default exchange".into()));
    }
    Ok(())
}

pub fn is_default_exchange(name: &str) -> bool {
    DEFAULT_EXCHANGES.iter().any(|(n, _)| *n == name)
}

fn is_classic(v: Option<&AMQPValue>) -> bool {
    match v {
        None => true,
        Some(AMQPValue::LongString(s)) => s.as_bytes() == b"classic",
        Some(AMQPValue::ShortString(s)) => s.as_str() == "classic",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(durable: bool) -> QueueDefWire {
        QueueDefWire {
            def: QueueDef { durable, auto_delete: false, exclusive_owner: None, arguments: FieldTable::default() },
            exclusive_owner: None,
        }
    }

    fn exchange(kind: ExchangeKind, durable: bool) -> Exchange {
        Exchange { kind, durable, auto_delete: false, internal: false, arguments: FieldTable::default() }
    }

    fn bind(source: &str, dest: Destination, key: &str) -> Change {
        Change::Bind(Binding {
            source: source.into(),
            destination: dest,
            routing_key: key.into(),
            arguments: FieldTable::default(),
        })
    }

    fn apply(d: &mut Definitions, c: Change) {
        d.check(&c).expect("accepted");
        d.apply(&c);
    }

    #[test]
    fn the_default_exchange_routes_by_queue_name() {
        let mut d = Definitions::with_defaults();
        apply(&mut d, Change::DeclareQueue { name: "hello".into(), queue: queue(false) });
        assert_eq!(d.route("", "hello", None).unwrap(), BTreeSet::from(["hello".to_string()]));
        assert!(d.route("", "other", None).unwrap().is_empty());
        assert!(d.route("nope", "hello", None).is_none());
    }

    #[test]
    fn exchange_to_exchange_bindings_are_followed_once_even_in_a_cycle() {
        let mut d = Definitions::with_defaults();
        apply(&mut d, Change::DeclareExchange { name: "a".into(), exchange: exchange(ExchangeKind::Fanout, false) });
        apply(&mut d, Change::DeclareExchange { name: "b".into(), exchange: exchange(ExchangeKind::Direct, false) });
        apply(&mut d, Change::DeclareQueue { name: "q".into(), queue: queue(false) });
        apply(&mut d, bind("a", Destination::Exchange("b".into()), ""));
        apply(&mut d, bind("b", Destination::Exchange("a".into()), "k"));
        apply(&mut d, bind("b", Destination::Queue("q".into()), "k"));
        assert_eq!(d.route("a", "k", None).unwrap(), BTreeSet::from(["q".to_string()]));
        assert!(d.route("a", "x", None).unwrap().is_empty());
    }

    #[test]
    fn redeclaring_with_other_flags_is_precondition_failed() {
        let mut d = Definitions::with_defaults();
        apply(&mut d, Change::DeclareQueue { name: "q".into(), queue: queue(true) });
        assert_eq!(d.check(&Change::DeclareQueue { name: "q".into(), queue: queue(true) }), Ok(false));
        let e = d.check(&Change::DeclareQueue { name: "q".into(), queue: queue(false) }).unwrap_err();
        assert_eq!(e.code, codes::PRECONDITION_FAILED);
        let e = d
            .check(&Change::DeclareExchange {
                name: "amq.topic".into(),
                exchange: exchange(ExchangeKind::Direct, true),
            })
            .unwrap_err();
        assert_eq!(e.code, codes::PRECONDITION_FAILED);
    }

    #[test]
    fn an_inequivalent_exchange_redeclare_names_the_field_that_differs() {
        let mut d = Definitions::with_defaults();
        apply(&mut d, Change::DeclareExchange { name: "x".into(), exchange: exchange(ExchangeKind::Direct, false) });
        let e = d
            .check(&Change::DeclareExchange { name: "x".into(), exchange: exchange(ExchangeKind::Direct, true) })
            .unwrap_err();
        assert_eq!(
            e.text,
            "inequivalent arg 'durable' for exchange 'x' in vhost '/': received 'true' but current is 'false'"
        );
        let e = d
            .check(&Change::DeclareExchange { name: "x".into(), exchange: exchange(ExchangeKind::Fanout, true) })
            .unwrap_err();
        assert_eq!(
            e.text,
            "inequivalent arg 'type' for exchange 'x' in vhost '/': received 'fanout' but current is 'direct'"
        );
    }

    #[test]
    fn redeclaring_with_the_other_exclusive_flag_is_resource_locked_either_way() {
        let owner = ConnectionId { shard: 0, number: 1 };
        let exclusive = |owner: Option<ConnectionId>| QueueDefWire { exclusive_owner: owner, ..queue(false) };
        let mut d = Definitions::with_defaults();
        apply(&mut d, Change::DeclareQueue { name: "shared".into(), queue: exclusive(None) });
        apply(&mut d, Change::DeclareQueue { name: "own".into(), queue: exclusive(Some(owner)) });
        let e = d.check(&Change::DeclareQueue { name: "shared".into(), queue: exclusive(Some(owner)) }).unwrap_err();
        assert_eq!(e.code, codes::RESOURCE_LOCKED);
        let e = d.check(&Change::DeclareQueue { name: "own".into(), queue: exclusive(None) }).unwrap_err();
        assert_eq!(e.code, codes::RESOURCE_LOCKED);
        assert_eq!(d.check(&Change::DeclareQueue { name: "own".into(), queue: exclusive(Some(owner)) }), Ok(false));
    }

    #[test]
    fn redeclaring_with_another_queue_mode_is_precondition_failed() {
        let mut lazy = queue(false);
        lazy.def.arguments.insert("x-queue-mode".into(), AMQPValue::LongString("lazy".into()));
        let mut d = Definitions::with_defaults();
        apply(&mut d, Change::DeclareQueue { name: "q".into(), queue: lazy.clone() });
        assert_eq!(d.check(&Change::DeclareQueue { name: "q".into(), queue: lazy }), Ok(false));
        let e = d.check(&Change::DeclareQueue { name: "q".into(), queue: queue(false) }).unwrap_err();
        assert_eq!(e.code, codes::PRECONDITION_FAILED);
        assert!(e.text.contains("'x-queue-mode'"), "{}", e.text);
    }

    #[test]
    fn reserved_names_and_the_default_exchange_are_refused() {
        let d = Definitions::with_defaults();
        let e = d
            .check(&Change::DeclareExchange {
                name: "amq.mine".into(),
                exchange: exchange(ExchangeKind::Direct, false),
            })
            .unwrap_err();
        assert_eq!(e.code, codes::ACCESS_REFUSED);
        assert_eq!(
            d.check(&Change::DeleteExchange { name: "amq.direct".into() }).unwrap_err().code,
            codes::ACCESS_REFUSED
        );
    }

    #[test]
    fn unbinding_from_the_default_exchange_is_refused_like_binding_to_it() {
        let mut d = Definitions::with_defaults();
        apply(&mut d, Change::DeclareQueue { name: "q".into(), queue: queue(false) });
        for change in
            [bind("", Destination::Queue("q".into()), "q"), bind("amq.fanout", Destination::Exchange("".into()), "")]
        {
            let Change::Bind(b) = change else { unreachable!("bind() makes a Bind") };
            assert_eq!(d.check(&Change::Bind(b.clone())).unwrap_err().code, codes::ACCESS_REFUSED);
            assert_eq!(d.check(&Change::Unbind(b)).unwrap_err().code, codes::ACCESS_REFUSED);
        }
    }

    #[test]
    fn deleting_a_queue_removes_its_bindings() {
        let mut d = Definitions::with_defaults();
        apply(&mut d, Change::DeclareQueue { name: "q".into(), queue: queue(false) });
        apply(&mut d, bind("amq.direct", Destination::Queue("q".into()), "k"));
        assert_eq!(d.bindings_to_queue("q"), 1);
        apply(&mut d, Change::DeleteQueue { name: "q".into() });
        assert_eq!(d.binding_count(), 0);
    }

    #[test]
    fn only_the_durable_part_is_stored_and_it_loads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("definitions");
        let mut d = Definitions::with_defaults();
        apply(&mut d, Change::DeclareQueue { name: "keep".into(), queue: queue(true) });
        apply(&mut d, Change::DeclareQueue { name: "drop".into(), queue: queue(false) });
        apply(&mut d, bind("amq.direct", Destination::Queue("keep".into()), "k"));
        apply(&mut d, bind("amq.direct", Destination::Queue("drop".into()), "k"));
        d.store(&path).expect("store");
        let back = Definitions::load(&path).expect("load");
        assert!(back.queues.contains_key("keep") && !back.queues.contains_key("drop"));
        assert_eq!(back.binding_count(), 1);
        assert!(back.exchanges.contains_key("amq.fanout"));
    }
}
