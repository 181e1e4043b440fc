"""The scenarios: one behaviour each, run the same way against both brokers.

A scenario drives pika and lets the recorder see what comes back; it notes
the outcome of each step it wants compared (ok, or the close it caused).
Names are the scenario's own (`ctx.n`), so scenarios do not see each other.
Where a scenario is not about publish visibility, it publishes in confirm
mode and waits for the confirms (`Publisher.sync`) before looking at queues.
"""

import copy
import datetime
import decimal
import struct
import time

import pika.exceptions
import pika.spec

from context import BasicProperties
from recorder import Raw

SCENARIOS = []


def scenario(sid: str, what: str):
    def register(fn):
        assert all(s[0] != sid for s in SCENARIOS), f"scenario {sid} twice"
        SCENARIOS.append((sid, what, fn))
        return fn

    return register


class Publisher:
    """A channel in confirm mode whose confirms are compared as a set."""

    def __init__(self, ctx, conn):
        self.ctx, self.conn = ctx, conn
        self.ch = conn.channel()
        ctx.confirm_select(self.ch)
        ctx.canonical_confirms(conn, self.ch)
        self.sent = 0

    def send(self, exchange, key, body, props=None, mandatory=False):
        self.ch.basic_publish(exchange, key, body, props, mandatory)
        self.sent += 1

    def sync(self):
        self.ctx.pump(lambda: self.ctx.confirmed(self.conn, self.ch) >= self.sent, quiet=0)


def publisher(ctx, conn) -> Publisher:
    """The connection's publisher (one per connection, made on first use)."""
    pubs = ctx.__dict__.setdefault("_publishers", {})
    if conn._diff_label not in pubs:
        pubs[conn._diff_label] = Publisher(ctx, conn)
    return pubs[conn._diff_label]


def declare(ctx, ch, q, **kw):
    return ctx.step(f"declare {q}", lambda: ch.queue_declare(q, **kw), show=declare_ok)


def declare_ok(r):
    m = r.method
    return f"declare-ok {m.message_count} ready {m.consumer_count} consumers"


def counts(ctx, ch, q, label=None):
    """queue.declare passive: the counts as the broker reports them."""
    return ctx.step(label or f"counts {q}", lambda: ch.queue_declare(q, passive=True), show=declare_ok)


def drain(ctx, ch, q, limit=40):
    """basic.get (no-ack) until get-empty; the messages are in the stream."""

    def run():
        n = 0
        while n < limit:
            method, _, _ = ch.basic_get(q, auto_ack=True)
            if method is None:
                return n
            n += 1
        return n

    ctx.step(f"drain {q}", run, show=lambda n: f"{n} messages")


def sync(ctx, ch, label):
    """A round trip on `ch`: shows whether an earlier asynchronous method
    (publish, ack) closed it."""
    ctx.step(label, lambda: ch.exchange_declare("amq.direct", "direct", passive=True))


def tags(deliveries):
    return [d["delivery_tag"] for d in deliveries]


# ---------------------------------------------------------------- handshake


@scenario("handshake", "connection.start and connection.tune as offered to a client")
def _(ctx):
    ctx.connect(keep_handshake=True)


@scenario("channel-flow", "channel.flow: active=true is answered flow-ok, active=false")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    ctx.step("flow active=true", lambda: ch.flow(True), show=lambda a: f"flow-ok active={a}")
    ctx.step("flow active=false", lambda: ch.flow(False), show=lambda a: f"flow-ok active={a}")


# ---------------------------------------------------------------- exchange types


def bind_queues(ctx, ch, exchange, bindings):
    """Declares each queue once and binds it as listed: [(queue, key, args)]."""
    declared = set()
    for q, key, args in bindings:
        if q not in declared:
            declare(ctx, ch, q)
            declared.add(q)
        ctx.step(f"bind {q} '{key}' {args or ''}", lambda: ch.queue_bind(q, exchange, key, args))
    return sorted(declared)


@scenario("direct-routes-by-key", "a direct exchange routes a message to the queues bound with its key")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    x = ctx.n("x")
    ctx.step("declare x", lambda: ch.exchange_declare(x, "direct"))
    qs = bind_queues(ctx, ch, x, [(ctx.n("a"), "a", None), (ctx.n("b"), "b", None), (ctx.n("ab"), "a", None)])
    ctx.step(f"bind {ctx.n('ab')} 'b'", lambda: ch.queue_bind(ctx.n("ab"), x, "b"))
    pub = publisher(ctx, c)
    for key in ("a", "b", "c", "a"):
        pub.send(x, key, f"key {key}")
    pub.sync()
    for q in qs:
        drain(ctx, ch, q)


@scenario("fanout-copies-to-all", "a fanout exchange copies every message to every bound queue, keys ignored")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    x = ctx.n("x")
    ctx.step("declare x", lambda: ch.exchange_declare(x, "fanout"))
    qs = bind_queues(ctx, ch, x, [(ctx.n("1"), "", None), (ctx.n("2"), "any.key", None), (ctx.n("3"), "#", None)])
    pub = publisher(ctx, c)
    pub.send(x, "", "first")
    pub.send(x, "some.key", "second")
    pub.sync()
    for q in qs:
        drain(ctx, ch, q)


@scenario("topic-wildcards", "topic bindings: * is one word, # zero or more, words split at dots")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    x = ctx.n("x")
    ctx.step("declare x", lambda: ch.exchange_declare(x, "topic"))
    patterns = ["*.orange.*", "*.*.rabbit", "lazy.#", "#", "a.#.z", "*", "#.end", "exact.key", ""]
    bindings = [(ctx.n(f"q{i}"), p, None) for i, p in enumerate(patterns)]
    qs = bind_queues(ctx, ch, x, bindings)
    keys = [
        "quick.orange.rabbit",
        "lazy.orange.elephant",
        "quick.orange.fox",
        "lazy.brown.fox",
        "lazy",
        "quick.orange.new.rabbit",
        "a.z",
        "a.b.c.z",
        "word",
        "",
        "the.end",
        "end",
        "exact.key",
        "a..z",
    ]
    pub = publisher(ctx, c)
    for k in keys:
        pub.send(x, k, f"key '{k}'")
    pub.sync()
    for q in qs:
        drain(ctx, ch, q)


def headers_case(ctx, binding_args, messages):
    """Binds one queue per binding table to a headers exchange, publishes
    each (name, headers) and drains the queues."""
    c = ctx.connect()
    ch = ctx.channel(c)
    x = ctx.n("x")
    ctx.step("declare x", lambda: ch.exchange_declare(x, "headers"))
    qs = bind_queues(ctx, ch, x, [(ctx.n(f"q{i}"), "", a) for i, a in enumerate(binding_args)])
    pub = publisher(ctx, c)
    for name, headers in messages:
        pub.send(x, "ignored", name, BasicProperties(headers=headers))
    pub.sync()
    for q in qs:
        drain(ctx, ch, q)


@scenario("headers-match-all", "headers x-match=all needs every bound key with an equal value")
def _(ctx):
    headers_case(
        ctx,
        [{"x-match": "all", "format": "pdf", "type": "report"}],
        [
            ("both", {"format": "pdf", "type": "report"}),
            ("one", {"format": "pdf"}),
            ("both and more", {"format": "pdf", "type": "report", "extra": 1}),
            ("wrong value", {"format": "pdf", "type": "log"}),
            ("none", None),
        ],
    )


@scenario("headers-match-any", "headers x-match=any needs one bound key with an equal value")
def _(ctx):
    headers_case(
        ctx,
        [{"x-match": "any", "format": "pdf", "type": "report"}],
        [
            ("format only", {"format": "pdf"}),
            ("type only", {"type": "report"}),
            ("wrong values", {"format": "zip", "type": "log"}),
            ("none", None),
        ],
    )


@scenario("headers-x-keys", "headers bindings ignore x- keys, except with all-with-x / any-with-x")
def _(ctx):
    headers_case(
        ctx,
        [
            {"x-match": "all", "x-custom": "1", "k": "v"},
            {"x-match": "all-with-x", "x-custom": "1"},
            {"x-match": "any-with-x", "x-custom": "1", "k": "other"},
        ],
        [
            ("k only", {"k": "v"}),
            ("x-custom only", {"x-custom": "1"}),
            ("both", {"k": "v", "x-custom": "1"}),
        ],
    )


@scenario("headers-empty-binding", "a headers binding without keys: all matches everything, any nothing")
def _(ctx):
    headers_case(
        ctx,
        [{}, {"x-match": "any"}],
        [("with headers", {"a": 1}), ("without headers", None)],
    )


@scenario("headers-value-types", "headers values of different field types: which are equal")
def _(ctx):
    headers_case(
        ctx,
        [{"x-match": "any", "n": 1}, {"x-match": "any", "s": "abc"}, {"x-match": "any", "v": None}],
        [
            ("n as I", {"n": Raw("I", struct.pack(">i", 1))}),
            ("n as l", {"n": Raw("l", struct.pack(">q", 1))}),
            ("n as b", {"n": Raw("b", struct.pack(">b", 1))}),
            ("n as d", {"n": Raw("d", struct.pack(">d", 1.0))}),
            ("n as S", {"n": "1"}),
            ("n as T", {"n": Raw("T", struct.pack(">Q", 1))}),
            ("n as D", {"n": Raw("D", struct.pack(">Bi", 0, 1))}),
            ("n as t", {"n": True}),
            ("n as d 1.5", {"n": Raw("d", struct.pack(">d", 1.5))}),
            ("s as x", {"s": Raw("x", struct.pack(">I", 3) + b"abc")}),
            ("s as S", {"s": "abc"}),
            ("v as S", {"v": "anything"}),
        ],
    )


@scenario("e2e-binding-chain", "exchange-to-exchange bindings carry messages on, each exchange by its own rules")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    x1, x2 = ctx.n("x1"), ctx.n("x2")
    ctx.step("declare x1 fanout", lambda: ch.exchange_declare(x1, "fanout"))
    ctx.step("declare x2 topic", lambda: ch.exchange_declare(x2, "topic"))
    ctx.step("bind x2 to x1", lambda: ch.exchange_bind(x2, x1, "ignored"))
    qs = bind_queues(ctx, ch, x2, [(ctx.n("q"), "a.#", None)])
    pub = publisher(ctx, c)
    pub.send(x1, "a.b", "a.b via x1")
    pub.send(x1, "b.c", "b.c via x1")
    pub.send(x2, "a", "a via x2")
    pub.sync()
    drain(ctx, ch, qs[0])
    ctx.step("unbind x2 from x1", lambda: ch.exchange_unbind(x2, x1, "ignored"))
    pub.send(x1, "a.c", "a.c after unbind")
    pub.sync()
    drain(ctx, ch, qs[0])


@scenario("e2e-cycle-delivers-once", "a cycle of exchange bindings delivers a message once per queue")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    x1, x2 = ctx.n("x1"), ctx.n("x2")
    ctx.step("declare x1", lambda: ch.exchange_declare(x1, "fanout"))
    ctx.step("declare x2", lambda: ch.exchange_declare(x2, "fanout"))
    ctx.step("bind x2 to x1", lambda: ch.exchange_bind(x2, x1, ""))
    ctx.step("bind x1 to x2", lambda: ch.exchange_bind(x1, x2, ""))
    q = ctx.n("q")
    bind_queues(ctx, ch, x1, [(q, "", None)])
    ctx.step("bind q to x2", lambda: ch.queue_bind(q, x2, ""))
    pub = publisher(ctx, c)
    pub.send(x1, "", "once")
    pub.sync()
    drain(ctx, ch, q)


@scenario("exchange-bind-missing-ends", "exchange.bind with a missing source or destination is 404")
def _(ctx):
    c = ctx.connect()
    x = ctx.n("x")
    ch = ctx.channel(c)
    ctx.step("declare x", lambda: ch.exchange_declare(x, "fanout"))
    ctx.step("bind missing destination", lambda: ch.exchange_bind(ctx.n("nope"), x, ""))
    ch = ctx.channel(c)
    ctx.step("bind missing source", lambda: ch.exchange_bind(x, ctx.n("nope"), ""))


# ---------------------------------------------------------------- default exchange and names


@scenario("default-exchange-routes-by-name", "the default exchange routes to the queue named by the key")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    pub = publisher(ctx, c)
    pub.send("", q, "by name")
    pub.send("", ctx.n("missing"), "to a missing queue", mandatory=True)
    pub.sync()
    drain(ctx, ch, q)


@scenario("default-exchange-bind-refused", "binding to or unbinding from the default exchange is refused")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    ctx.step("bind q to ''", lambda: ch.queue_bind(q, "", "k"))
    ch = ctx.channel(c)
    ctx.step("unbind q from ''", lambda: ch.queue_unbind(q, "", q))
    ch = ctx.channel(c)
    ctx.step("bind exchange '' to amq.fanout", lambda: ch.exchange_bind("", "amq.fanout", ""))
    ch = ctx.channel(c)
    ctx.step("unbind exchange '' from amq.fanout", lambda: ch.exchange_unbind("", "amq.fanout", ""))
    ch = ctx.channel(c)
    ctx.step("unbind amq.fanout from ''", lambda: ch.exchange_unbind("amq.fanout", "", ""))


@scenario("declare-reserved-names", "declaring exchange '', or a new exchange or queue named amq.*, is refused")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    ctx.step("declare exchange amq.custom", lambda: ch.exchange_declare("amq.custom", "direct"))
    ch = ctx.channel(c)
    ctx.step("declare exchange ''", lambda: ch.exchange_declare("", "direct"))
    ch = ctx.channel(c)
    ctx.step("declare queue amq.custom", lambda: ch.queue_declare("amq.custom"))


@scenario("exchange-delete-reserved", "deleting the default exchange or amq.direct is refused")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    ctx.step("delete amq.direct", lambda: ch.exchange_delete("amq.direct"))
    ch = ctx.channel(c)
    ctx.step("delete ''", lambda: ch.exchange_delete(""))
    ch = ctx.channel(c)
    ctx.step("amq.direct still there", lambda: ch.exchange_declare("amq.direct", "direct", passive=True))


@scenario("exchange-redeclare-amq-direct", "amq.direct redeclared as it is succeeds, with other flags fails")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    ctx.step("declare amq.direct durable", lambda: ch.exchange_declare("amq.direct", "direct", durable=True))
    ctx.step("declare amq.direct transient", lambda: ch.exchange_declare("amq.direct", "direct", durable=False))


@scenario("queue-server-named", "queue '' gets an amq.gen- name, and '' then means the last declared queue")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    r = ctx.step("declare ''", lambda: ch.queue_declare(""), show=declare_ok)
    if r is None:
        return
    name = r.method.queue
    pub = publisher(ctx, c)
    pub.send("", name, "to the server-named queue")
    pub.sync()
    ctx.step("get ''", lambda: ch.basic_get("", auto_ack=True), show=lambda g: "message" if g[0] else "empty")
    other = ctx.channel(c)
    ctx.step("redeclare it by name", lambda: other.queue_declare(name), show=declare_ok)
    ctx.step("passive declare by name", lambda: ch.queue_declare(name, passive=True), show=declare_ok)
    ctx.step("purge ''", lambda: ch.queue_purge(""), show=lambda p: f"purge-ok {p.method.message_count}")
    ctx.step("delete ''", lambda: ch.queue_delete(""), show=lambda d: f"delete-ok {d.method.message_count}")


# ---------------------------------------------------------------- exchange declare rules


@scenario("exchange-redeclare-other-type", "redeclaring an exchange with another type is 406")
def _(ctx):
    ch = ctx.channel(ctx.connect())
    x = ctx.n("x")
    ctx.step("declare direct", lambda: ch.exchange_declare(x, "direct"))
    ctx.step("declare direct again", lambda: ch.exchange_declare(x, "direct"))
    ctx.step("declare fanout", lambda: ch.exchange_declare(x, "fanout"))


@scenario("exchange-redeclare-other-flags", "redeclaring an exchange with another durable or auto-delete flag is 406")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    x = ctx.n("x")
    ctx.step("declare", lambda: ch.exchange_declare(x, "direct"))
    ctx.step("declare durable", lambda: ch.exchange_declare(x, "direct", durable=True))
    ch = ctx.channel(c)
    ctx.step("declare auto-delete", lambda: ch.exchange_declare(x, "direct", auto_delete=True))


@scenario("exchange-unknown-type", "exchange.declare with an unknown type")
def _(ctx):
    ch = ctx.channel(ctx.connect())
    ctx.step("declare type nosuch", lambda: ch.exchange_declare(ctx.n("x"), "nosuch"))


@scenario("exchange-delete-if-unused", "exchange.delete if-unused refuses an exchange with bindings")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    x, q = ctx.n("x"), ctx.n("q")
    ctx.step("declare x", lambda: ch.exchange_declare(x, "direct"))
    bind_queues(ctx, ch, x, [(q, "k", None)])
    ctx.step("delete if-unused", lambda: ch.exchange_delete(x, if_unused=True))
    ch = ctx.channel(c)
    ctx.step("unbind", lambda: ch.queue_unbind(q, x, "k"))
    ctx.step("delete if-unused again", lambda: ch.exchange_delete(x, if_unused=True))
    ctx.step("passive declare", lambda: ch.exchange_declare(x, "direct", passive=True))


@scenario("exchange-delete-missing", "exchange.delete of a missing exchange")
def _(ctx):
    ch = ctx.channel(ctx.connect())
    ctx.step("delete missing", lambda: ch.exchange_delete(ctx.n("x")))


@scenario("exchange-auto-delete", "an auto-delete exchange goes when its last binding goes, not before")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    x, q = ctx.n("x"), ctx.n("q")
    ctx.step("declare x auto-delete", lambda: ch.exchange_declare(x, "direct", auto_delete=True))
    ctx.step("exists unbound", lambda: ch.exchange_declare(x, "direct", passive=True))
    bind_queues(ctx, ch, x, [(q, "k1", None), (q, "k2", None)])
    ctx.step("unbind k1", lambda: ch.queue_unbind(q, x, "k1"))
    ctx.step("exists with one binding", lambda: ch.exchange_declare(x, "direct", passive=True))
    ctx.step("unbind k2", lambda: ch.queue_unbind(q, x, "k2"))
    ctx.step("exists after last unbind", lambda: ch.exchange_declare(x, "direct", passive=True))


@scenario("exchange-internal-publish", "publishing to an internal exchange is refused; e2e routing through it works")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    xi, xo, q = ctx.n("internal"), ctx.n("outer"), ctx.n("q")
    ctx.step("declare internal", lambda: ch.exchange_declare(xi, "fanout", internal=True))
    ctx.step("declare outer", lambda: ch.exchange_declare(xo, "fanout"))
    ctx.step("bind internal to outer", lambda: ch.exchange_bind(xi, xo, ""))
    bind_queues(ctx, ch, xi, [(q, "", None)])
    pub = publisher(ctx, c)
    pub.send(xo, "", "through outer")
    pub.sync()
    drain(ctx, ch, q)
    ch.basic_publish(xi, "", "straight to internal")
    sync(ctx, ch, "after publishing to internal")


# ---------------------------------------------------------------- queue declare rules


@scenario("queue-declare-counts", "queue.declare-ok reports ready messages and consumers")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    pub = publisher(ctx, c)
    for i in range(3):
        pub.send("", q, f"m{i}")
    pub.sync()
    declare(ctx, ch, q)
    c2 = ctx.connect()
    cons = ctx.channel(c2)
    cons.basic_qos(prefetch_count=1)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t"))
    ctx.wait_deliveries(c2, cons, 1)
    declare(ctx, ch, q)


@scenario("queue-redeclare-other-flags", "redeclaring a queue with another durable or auto-delete flag is 406")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    declare(ctx, ch, q)
    declare(ctx, ch, q, durable=True)
    ch = ctx.channel(c)
    declare(ctx, ch, q, auto_delete=True)


@scenario("queue-redeclare-exclusivity", "redeclaring with the other exclusive flag, on the owning connection, is 405")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    shared, own = ctx.n("shared"), ctx.n("own")
    declare(ctx, ch, shared)
    declare(ctx, ch, shared, exclusive=True)
    ch = ctx.channel(c)
    declare(ctx, ch, own, exclusive=True)
    declare(ctx, ch, own, exclusive=True)
    declare(ctx, ch, own, exclusive=False)


@scenario("queue-redeclare-other-arguments", "redeclaring a queue with other x-queue-mode is 406")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q, arguments={"x-queue-mode": "lazy"})
    declare(ctx, ch, q, arguments={"x-queue-mode": "lazy"})
    declare(ctx, ch, q)
    ch = ctx.channel(c)
    declare(ctx, ch, q, arguments={"x-queue-mode": "default"})


@scenario("queue-argument-of-other-type", "a classic queue refuses arguments of quorum queues and streams")
def _(ctx):
    c = ctx.connect()
    for key, value in (("x-max-age", "1D"), ("x-quorum-initial-group-size", 3), ("x-queue-leader-locator", "balanced")):
        ch = ctx.channel(c)
        declare(ctx, ch, ctx.n(key), arguments={key: value})


@scenario("queue-redeclare-other-type", "redeclaring a classic queue as quorum is 406")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q, durable=True)
    declare(ctx, ch, q, durable=True, arguments={"x-queue-type": "classic"})
    declare(ctx, ch, q, durable=True, arguments={"x-queue-type": "quorum"})
    ch = ctx.channel(c)
    ctx.step("delete", lambda: ch.queue_delete(q))


@scenario("queue-unsupported-argument", "a queue with x-message-ttl is declared")
def _(ctx):
    ch = ctx.channel(ctx.connect())
    declare(ctx, ch, ctx.n("q"), arguments={"x-message-ttl": 60000})


@scenario("passive-declare-missing", "a passive declare of a missing queue or exchange is 404")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    counts(ctx, ch, ctx.n("q"), "passive queue.declare")
    ch = ctx.channel(c)
    ctx.step("passive exchange.declare", lambda: ch.exchange_declare(ctx.n("x"), "direct", passive=True))


# ---------------------------------------------------------------- exclusive queues


@scenario("queue-exclusive-other-connection", "another connection cannot use an exclusive queue (405)")
def _(ctx):
    c1 = ctx.connect()
    ch = ctx.channel(c1)
    q = ctx.n("q")
    declare(ctx, ch, q, exclusive=True)
    c2 = ctx.connect()
    attempts = [
        ("passive declare", lambda o: o.queue_declare(q, passive=True)),
        ("declare", lambda o: o.queue_declare(q)),
        ("declare exclusive", lambda o: o.queue_declare(q, exclusive=True)),
        ("consume", lambda o: o.basic_consume(q, lambda *a: None)),
        ("get", lambda o: o.basic_get(q)),
        ("purge", lambda o: o.queue_purge(q)),
        ("bind", lambda o: o.queue_bind(q, "amq.direct", "k")),
        ("delete", lambda o: o.queue_delete(q)),
    ]
    for label, fn in attempts:
        other = ctx.channel(c2)
        ctx.step(label, lambda: fn(other))
    counts(ctx, ch, q, "owner still sees it")


@scenario("queue-exclusive-gone-with-owner", "an exclusive queue is deleted when its connection closes")
def _(ctx):
    c1 = ctx.connect()
    ch = ctx.channel(c1)
    q = ctx.n("q")
    declare(ctx, ch, q, exclusive=True)
    ctx.step("close owner", c1.close)
    c2 = ctx.connect()
    gone = poll_gone(ctx, q)
    ctx.note("gone within 5s", gone)
    counts(ctx, ctx.channel(c2), q, "passive declare")


def poll_gone(ctx, q) -> bool:
    """Whether `q` disappears within the wait (checked unrecorded)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        ch = ctx.probe().channel()
        try:
            ch.queue_declare(q, passive=True)
            ch.close()
        except pika.exceptions.ChannelClosedByBroker:
            return True
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------- queue delete and purge


@scenario("queue-delete-if-unused", "queue.delete if-unused refuses a queue with a consumer")
def _(ctx):
    c1 = ctx.connect()
    ch = ctx.channel(c1)
    q = ctx.n("q")
    declare(ctx, ch, q)
    c2 = ctx.connect()
    cons = ctx.channel(c2)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t"))
    ctx.step("delete if-unused", lambda: ch.queue_delete(q, if_unused=True))
    ch = ctx.channel(c1)
    ctx.step("cancel", lambda: cons.basic_cancel("t"))
    ctx.step("delete if-unused again", lambda: ch.queue_delete(q, if_unused=True), show=lambda r: "delete-ok")


@scenario("queue-delete-if-empty", "queue.delete if-empty refuses a queue holding messages")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    pub = publisher(ctx, c)
    pub.send("", q, "keep me")
    pub.sync()
    ctx.step("delete if-empty", lambda: ch.queue_delete(q, if_empty=True))
    ch = ctx.channel(c)
    drain(ctx, ch, q)
    ctx.step("delete if-empty again", lambda: ch.queue_delete(q, if_empty=True), show=lambda r: "delete-ok")


@scenario("queue-delete-counts", "queue.delete-ok counts the messages; deleting a missing queue")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    pub = publisher(ctx, c)
    pub.send("", q, "one")
    pub.send("", q, "two")
    pub.sync()
    ctx.step("delete", lambda: ch.queue_delete(q), show=lambda r: f"delete-ok {r.method.message_count}")
    ctx.step("delete again", lambda: ch.queue_delete(q), show=lambda r: f"delete-ok {r.method.message_count}")


@scenario("queue-purge-counts", "queue.purge removes ready messages only and counts them")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    pub = publisher(ctx, c)
    for i in range(5):
        pub.send("", q, f"m{i}")
    pub.sync()
    held = ctx.step("get one, unacked", lambda: ch.basic_get(q), show=lambda g: "message" if g[0] else "empty")
    ctx.step("purge", lambda: ch.queue_purge(q), show=lambda p: f"purge-ok {p.method.message_count}")
    counts(ctx, ch, q)
    if held and held[0]:
        ch.basic_reject(held[0].delivery_tag, requeue=True)
    ctx.wait_ready(q, 1)
    counts(ctx, ch, q)
    drain(ctx, ch, q)


@scenario("queue-bind-missing-ends", "queue.bind to a missing exchange or of a missing queue is 404")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    ctx.step("bind to missing exchange", lambda: ch.queue_bind(q, ctx.n("nope"), "k"))
    ch = ctx.channel(c)
    ctx.step("bind missing queue", lambda: ch.queue_bind(ctx.n("nope"), "amq.direct", "k"))


@scenario("queue-unbind-missing-binding", "queue.unbind of a binding that does not exist")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    ctx.step("unbind", lambda: ch.queue_unbind(q, "amq.direct", "never-bound"))


@scenario("queue-delete-cancels-consumer", "deleting a queue sends basic.cancel to its consumers")
def _(ctx):
    c1 = ctx.connect()
    ch = ctx.channel(c1)
    q = ctx.n("q")
    declare(ctx, ch, q)
    c2 = ctx.connect()
    cons = ctx.channel(c2)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="watcher"))
    ctx.step("delete", lambda: ch.queue_delete(q), show=lambda r: f"delete-ok {r.method.message_count}")
    ctx.pump(lambda: ctx.count(c2, cons, "Basic.Cancel") >= 1)


@scenario("queue-auto-delete-after-cancel", "an auto-delete queue goes when its last consumer cancels")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q, auto_delete=True)
    cons = ctx.channel(c)
    ctx.step("consume a", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="a"))
    ctx.step("consume b", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="b"))
    ctx.step("cancel a", lambda: cons.basic_cancel("a"))
    counts(ctx, ch, q, "after one cancel")
    ctx.step("cancel b", lambda: cons.basic_cancel("b"))
    ctx.note("gone within 5s", poll_gone(ctx, q))


@scenario("queue-auto-delete-unused-stays", "an auto-delete queue that never had a consumer stays")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q, auto_delete=True)
    ctx.pump(quiet=0.5)
    counts(ctx, ch, q)


# ---------------------------------------------------------------- publishing


@scenario("publish-then-get-same-channel", "a message published on a channel is there for its next basic.get")
def _(ctx):
    ch = ctx.channel(ctx.connect())
    q = ctx.n("q")
    declare(ctx, ch, q)
    ch.basic_publish("", q, "just published")
    ctx.step("get", lambda: ch.basic_get(q, auto_ack=True), show=lambda g: "message" if g[0] else "empty")


@scenario("mandatory-unroutable-returned", "an unroutable mandatory message comes back as basic.return, then its ack")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    ctx.confirm_select(ch)
    ch.basic_publish("amq.direct", "nowhere", "lost", BasicProperties(message_id="m1"), mandatory=True)
    ctx.pump(lambda: ctx.confirmed(c, ch) >= 1)


@scenario("unroutable-not-mandatory-acked", "an unroutable message without mandatory is acked and dropped")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    ctx.confirm_select(ch)
    ch.basic_publish("amq.direct", "nowhere", "dropped")
    ctx.pump(lambda: ctx.confirmed(c, ch) >= 1)


@scenario("confirms-cover-every-publish", "in confirm mode every publish is acked once, in order")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    pub = publisher(ctx, c)
    for i in range(50):
        pub.send("", q, f"m{i}")
    pub.send("amq.direct", "nowhere", "unroutable", mandatory=True)
    for i in range(50, 60):
        pub.send("", q, f"m{i}")
    pub.sync()
    counts(ctx, ch, q)


@scenario("publish-missing-exchange", "publishing to a missing exchange closes the channel with 404")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    ch.basic_publish(ctx.n("nope"), "k", "lost")
    sync(ctx, ch, "after publish")


@scenario("confirm-and-tx-exclusive", "a channel is in confirm mode or tx mode, never both")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    ctx.step("confirm.select", ch.confirm_delivery)
    ctx.step("tx.select after confirm", ch.tx_select)
    ch = ctx.channel(c)
    ctx.step("tx.select", ch.tx_select)
    ctx.step("confirm.select after tx", ch.confirm_delivery)


@scenario("publish-user-id", "user-id must be the connection's user")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q)
    pub = publisher(ctx, c)
    pub.send("", q, "as guest", BasicProperties(user_id="guest"))
    pub.sync()
    drain(ctx, ch, q)
    ch.basic_publish("", q, "as mallory", BasicProperties(user_id="mallory"))
    sync(ctx, ch, "after publishing as mallory")
    counts(ctx, ctx.channel(c), q)


# ---------------------------------------------------------------- consuming


def filled_queue(ctx, c, n, prefix="m", exchange="", key=None, **declare_kw):
    """A queue of this scenario holding `n` confirmed messages m0..m{n-1}."""
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q, **declare_kw)
    if exchange:
        ctx.step("bind", lambda: ch.queue_bind(q, exchange, key))
    if n:
        pub = publisher(ctx, c)
        for i in range(n):
            pub.send(exchange, key or q, f"{prefix}{i}")
        pub.sync()
    return q, ch


@scenario("consume-delivery-fields", "deliveries carry tag, redelivered, exchange and routing key, in order")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 3, exchange="amq.direct", key=ctx.n("key"))
    cons = ctx.channel(c)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t1"))
    got = ctx.wait_deliveries(c, cons, 3)
    for t in tags(got):
        cons.basic_ack(t)


@scenario("consume-server-named-tag", "consume with an empty tag gets an amq.ctag- tag")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 1)
    cons = ctx.channel(c)
    ctx.send(cons, pika.spec.Basic.Consume(queue=q, consumer_tag="", no_ack=True))
    ctx.pump(lambda: ctx.count(c, cons, "Basic.Deliver") >= 1)


@scenario("consume-tag-reuse", "reusing a consumer tag on a channel closes the connection (530)")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 0)
    cons = ctx.channel(c)
    ctx.step("consume dup", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="dup"))
    ctx.send(cons, pika.spec.Basic.Consume(queue=q, consumer_tag="dup"))
    ctx.pump(lambda: not c.is_open)


@scenario("consume-exclusive-conflicts", "an exclusive consumer excludes others and needs the queue to itself")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 0)
    ch1 = ctx.channel(c)
    ctx.step("consume exclusive", lambda: ch1.basic_consume(q, lambda *a: None, consumer_tag="x", exclusive=True))
    ch2 = ctx.channel(c)
    ctx.step("consume beside exclusive", lambda: ch2.basic_consume(q, lambda *a: None, consumer_tag="y"))
    ctx.step("cancel exclusive", lambda: ch1.basic_cancel("x"))
    ctx.step("consume plain", lambda: ch1.basic_consume(q, lambda *a: None, consumer_tag="p"))
    ch3 = ctx.channel(c)
    ctx.step("consume exclusive beside plain", lambda: ch3.basic_consume(q, lambda *a: None, exclusive=True))


@scenario("cancel", "after basic.cancel no more deliveries; cancelling an unknown tag is answered cancel-ok")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 1)
    cons = ctx.channel(c)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t", auto_ack=True))
    ctx.wait_deliveries(c, cons, 1)
    ctx.step("cancel", lambda: cons.basic_cancel("t"))
    pub = publisher(ctx, c)
    pub.send("", q, "after cancel")
    pub.sync()
    counts(ctx, ch, q)
    ctx.send(cons, pika.spec.Basic.Cancel(consumer_tag="never-consumed"))
    ctx.pump(lambda: ctx.count(c, cons, "Basic.CancelOk") >= 2)


@scenario("consume-no-ack", "a no-ack consumer's messages are gone at once and not redelivered")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 3)
    cons = ctx.channel(c)
    ctx.step("consume no-ack", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t", auto_ack=True))
    ctx.wait_deliveries(c, cons, 3)
    counts(ctx, ch, q)
    ctx.step("close consumer channel", cons.close)
    counts(ctx, ch, q)


@scenario("nack-requeue-multiple", "nack multiple with requeue redelivers in the original order, redelivered set")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 3)
    cons = ctx.channel(c)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t"))
    got = ctx.wait_deliveries(c, cons, 3)
    cons.basic_nack(tags(got)[-1], multiple=True, requeue=True)
    got = ctx.wait_deliveries(c, cons, 6)
    cons.basic_ack(0, multiple=True)
    sync(ctx, cons, "after ack all")


@scenario("discard-without-requeue", "nack (multiple) and reject without requeue drop the messages")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 3)
    cons = ctx.channel(c)
    cons.basic_qos(prefetch_count=2)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t"))
    got = ctx.wait_deliveries(c, cons, 2)
    cons.basic_nack(tags(got)[-1], multiple=True, requeue=False)
    got = ctx.wait_deliveries(c, cons, 3)
    cons.basic_reject(tags(got)[-1], requeue=False)
    sync(ctx, cons, "after nack and reject")
    ctx.step("cancel", lambda: cons.basic_cancel("t"))
    counts(ctx, ch, q)


@scenario("reject-requeue-goes-first", "a rejected-with-requeue message is redelivered before later ones")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 4)
    cons = ctx.channel(c)
    cons.basic_qos(prefetch_count=2)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t"))
    got = ctx.wait_deliveries(c, cons, 2)
    cons.basic_reject(tags(got)[0], requeue=True)
    got = ctx.wait_deliveries(c, cons, 3)
    acked = 0
    while len(got) < 5 and acked < len(got):
        for t in tags(got)[acked:]:
            if t != tags(got)[0]:
                cons.basic_ack(t)
        acked = len(got)
        got = ctx.wait_deliveries(c, cons, min(5, len(got) + 2))


@scenario("ack-multiple", "ack multiple settles every tag up to it; the rest come back on close")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 4)
    cons = ctx.channel(c)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t"))
    got = ctx.wait_deliveries(c, cons, 4)
    cons.basic_ack(tags(got)[2], multiple=True)
    sync(ctx, cons, "after ack multiple")
    ctx.step("close consumer channel", cons.close)
    ctx.wait_ready(q, 1)
    counts(ctx, ch, q)
    drain(ctx, ch, q)


@scenario("ack-unknown-tag", "acking a tag never delivered, or one already acked, closes the channel with 406")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    ch.basic_ack(99)
    sync(ctx, ch, "after ack 99")
    q, ch = filled_queue(ctx, c, 1)
    got = ctx.step("get", lambda: ch.basic_get(q), show=lambda g: "message" if g[0] else "empty")
    if got and got[0]:
        ch.basic_ack(got[0].delivery_tag)
        sync(ctx, ch, "after first ack")
        ch.basic_ack(got[0].delivery_tag)
        sync(ctx, ch, "after second ack")


@scenario("prefetch-1-two-consumers", "prefetch 1: two consumers take turns, one unacked message each")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 0)
    chans = []
    for tag in ("a", "b"):
        cons = ctx.channel(c)
        cons.basic_qos(prefetch_count=1)
        ctx.step(f"consume {tag}", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag=tag))
        chans.append(cons)
    pub = publisher(ctx, c)
    for i in range(6):
        pub.send("", q, f"m{i}")
    pub.sync()
    total = lambda: sum(len(ctx.deliveries(c, x)) for x in chans)  # noqa: E731
    ctx.pump(lambda: total() >= 2)
    ctx.note("delivered before any ack", total())
    for round_no in range(2):
        for cons in chans:
            last = ctx.deliveries(c, cons)[-1:]
            if last:
                cons.basic_ack(last[0]["delivery_tag"])
        ctx.pump(lambda: total() >= 4 + 2 * round_no)
        ctx.note(f"delivered after ack round {round_no + 1}", total())


@scenario("prefetch-0-two-consumers", "prefetch 0: two consumers get messages round robin, all at once")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 0)
    chans = []
    for tag in ("a", "b"):
        cons = ctx.channel(c)
        ctx.step(f"consume {tag}", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag=tag))
        chans.append(cons)
    pub = publisher(ctx, c)
    for i in range(6):
        pub.send("", q, f"m{i}")
    pub.sync()
    ctx.pump(lambda: sum(len(ctx.deliveries(c, x)) for x in chans) >= 6)


@scenario("qos-global", "basic.qos global=true: the channel holds at most N unacked; the rest stay for others")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 0)
    cons = ctx.channel(c)
    ctx.step("qos 2 global", lambda: cons.basic_qos(prefetch_count=2, global_qos=True))
    ctx.step("consume a", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="a"))
    ctx.step("consume b", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="b"))
    pub = publisher(ctx, c)
    for i in range(5):
        pub.send("", q, f"m{i}")
    pub.sync()
    got = ctx.wait_deliveries(c, cons, 2)
    counts(ctx, ch, q, "counts with 2 unacked")
    other = ctx.channel(c)
    ctx.step("consume c elsewhere", lambda: other.basic_consume(q, lambda *a: None, consumer_tag="c"))
    ctx.pump(lambda: len(ctx.deliveries(c, other)) >= 3)
    ctx.note("delivered to c", len(ctx.deliveries(c, other)))
    cons.basic_ack(tags(got)[0])
    ctx.pump()
    ctx.note("delivered on the global-qos channel", len(ctx.deliveries(c, cons)))


@scenario("get-message-counts", "basic.get-ok counts the messages left; get-empty at the end")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 3)
    for i in range(4):
        ctx.step(f"get {i}", lambda: ch.basic_get(q, auto_ack=True), show=lambda g: "message" if g[0] else "empty")


@scenario("get-unacked-requeued-on-close", "an unacked basic.get message returns when its channel closes")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 2)
    getter = ctx.channel(c)
    ctx.step("get with ack", lambda: getter.basic_get(q), show=lambda g: "message" if g[0] else "empty")
    ctx.step("get no-ack", lambda: getter.basic_get(q, auto_ack=True), show=lambda g: "message" if g[0] else "empty")
    counts(ctx, ch, q)
    ctx.step("close getter", getter.close)
    ctx.wait_ready(q, 1)
    counts(ctx, ch, q)
    drain(ctx, ch, q)


@scenario("recover-requeue", "basic.recover requeue=true redelivers unacked messages, redelivered set")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 2)
    cons = ctx.channel(c)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t"))
    ctx.wait_deliveries(c, cons, 2)
    ctx.step("recover", lambda: cons.basic_recover(requeue=True))
    ctx.wait_deliveries(c, cons, 4)


@scenario("recover-no-requeue", "basic.recover requeue=false")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 1)
    cons = ctx.channel(c)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t"))
    ctx.wait_deliveries(c, cons, 1)
    ctx.step("recover requeue=false", lambda: cons.basic_recover(requeue=False))
    ctx.pump()


@scenario("close-channel-requeues-in-order", "closing a channel returns its unacked messages, in order")
def _(ctx):
    c = ctx.connect()
    q, _ = filled_queue(ctx, c, 3)
    cons = ctx.channel(c)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="first"))
    ctx.wait_deliveries(c, cons, 3)
    ctx.step("close channel", cons.close)
    again = ctx.channel(c)
    ctx.step("consume again", lambda: again.basic_consume(q, lambda *a: None, consumer_tag="second"))
    got = ctx.wait_deliveries(c, again, 3)
    if got:
        again.basic_ack(tags(got)[-1], multiple=True)


@scenario("close-connection-requeues", "closing a connection returns its unacked messages to other consumers")
def _(ctx):
    c1 = ctx.connect()
    q, _ = filled_queue(ctx, c1, 2)
    c2 = ctx.connect()
    cons = ctx.channel(c2)
    ctx.step("consume on c2", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="gone"))
    ctx.wait_deliveries(c2, cons, 2)
    ctx.step("close c2", c2.close)
    other = ctx.channel(c1)
    ctx.step("consume on c1", lambda: other.basic_consume(q, lambda *a: None, consumer_tag="stays", auto_ack=True))
    ctx.wait_deliveries(c1, other, 2)


# ---------------------------------------------------------------- transactions


@scenario("tx-commit-publishes", "publishes in a transaction reach the queue at commit")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 0)
    tx = ctx.channel(c)
    ctx.step("tx.select", tx.tx_select)
    tx.basic_publish("", q, "t1")
    tx.basic_publish("", q, "t2")
    sync(ctx, tx, "published in tx")
    counts(ctx, ch, q, "before commit")
    ctx.step("tx.commit", tx.tx_commit)
    counts(ctx, ch, q, "after commit")
    drain(ctx, ch, q)


@scenario("tx-rollback-publishes", "publishes rolled back never reach the queue")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 0)
    tx = ctx.channel(c)
    ctx.step("tx.select", tx.tx_select)
    tx.basic_publish("", q, "rolled back")
    ctx.step("tx.rollback", tx.tx_rollback)
    tx.basic_publish("", q, "committed")
    ctx.step("tx.commit", tx.tx_commit)
    counts(ctx, ch, q)
    drain(ctx, ch, q)


@scenario("tx-acks", "acks in a transaction take effect at commit; rolled back acks leave the message unacked")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 2)
    tx = ctx.channel(c)
    ctx.step("tx.select", tx.tx_select)
    g1 = ctx.step("get 1", lambda: tx.basic_get(q), show=lambda g: "message" if g[0] else "empty")
    g2 = ctx.step("get 2", lambda: tx.basic_get(q), show=lambda g: "message" if g[0] else "empty")
    if not (g1 and g1[0] and g2 and g2[0]):
        return
    tx.basic_ack(g1[0].delivery_tag)
    ctx.step("tx.rollback", tx.tx_rollback)
    tx.basic_ack(g2[0].delivery_tag)
    ctx.step("tx.commit", tx.tx_commit)
    counts(ctx, ch, q, "after commit")
    ctx.step("close tx channel", tx.close)
    ctx.wait_ready(q, 1)
    counts(ctx, ch, q, "after close")
    drain(ctx, ch, q)


@scenario("tx-commit-without-select", "tx.commit on a channel not in tx mode is 406")
def _(ctx):
    ch = ctx.channel(ctx.connect())
    ctx.step("tx.commit", ch.tx_commit)
    ch = ctx.channel(ch.connection)
    ctx.step("tx.rollback", ch.tx_rollback)


# ---------------------------------------------------------------- content


@scenario("large-message-small-frame-max", "a 1 MiB message over frame_max 4096 arrives whole in 4088-byte frames")
def _(ctx):
    c = ctx.connect(frame_max=4096)
    q, ch = filled_queue(ctx, c, 0)
    body = bytes((i * 7 + 3) % 251 for i in range(1 << 20))
    pub = publisher(ctx, c)
    pub.send("", q, body)
    pub.sync()
    ctx.step("get", lambda: ch.basic_get(q, auto_ack=True), show=lambda g: "message" if g[0] else "empty")


@scenario("empty-body", "a message with an empty body arrives with no body frame")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 0)
    pub = publisher(ctx, c)
    pub.send("", q, b"")
    pub.sync()
    drain(ctx, ch, q)


@scenario("properties-round-trip", "every basic property comes back as published")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 0)
    props = BasicProperties(
        content_type="application/json",
        content_encoding="gzip",
        headers={"h": "v", "n": 42},
        delivery_mode=2,
        priority=7,
        correlation_id="corr-1",
        reply_to="reply.queue",
        expiration="600000",
        message_id="msg-1",
        timestamp=1700000000,
        type="order.created",
        user_id="guest",
        app_id="differential",
        cluster_id="cluster-x",
    )
    pub = publisher(ctx, c)
    pub.send("", q, "with every property", props)
    pub.send("", q, "with none")
    pub.sync()
    drain(ctx, ch, q)


@scenario("header-field-types", "headers of every AMQP field type come back with their types and values")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 0)
    headers = {
        "bool": True,
        "i8": Raw("b", struct.pack(">b", -5)),
        "u8": Raw("B", struct.pack(">B", 200)),
        "i16": Raw("s", struct.pack(">h", -300)),
        "u16": Raw("u", struct.pack(">H", 60000)),
        "i32": Raw("I", struct.pack(">i", -70000)),
        "u32": Raw("i", struct.pack(">I", 4000000000)),
        "i64": Raw("l", struct.pack(">q", -5000000000)),
        "f32": Raw("f", struct.pack(">f", 1.5)),
        "f64": Raw("d", struct.pack(">d", 2.25)),
        "dec": decimal.Decimal("3.14"),
        "str": "héllo",
        "bytes": b"\x00\x01\xff",
        "array": [1, "two", True, None, [3]],
        "ts": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "table": {"nested": {"deep": 1}, "s": "x"},
        "void": None,
    }
    pub = publisher(ctx, c)
    pub.send("", q, "typed headers", BasicProperties(headers=headers))
    pub.sync()
    drain(ctx, ch, q)
    # The same headers routed through a headers exchange (which reads them).
    x = ctx.n("hx")
    ctx.step("declare headers exchange", lambda: ch.exchange_declare(x, "headers"))
    ctx.step("bind", lambda: ch.queue_bind(q, x, "", {"x-match": "all", "str": "héllo"}))
    pub.send(x, "", "typed headers via headers exchange", BasicProperties(headers=headers))
    pub.sync()
    drain(ctx, ch, q)


# ---------------------------------------------------------------- queue features


def note_deaths(ctx, conn, ch, label):
    """Dead letters received on `ch`, compared as content: each message
    whose headers carry x-death is noted with each x-death entry's fields
    sorted by name (RabbitMQ and ringmq order them differently; a field
    table is a map) and its `time` as "recent" when within a minute of now
    (it is the moment of each broker's dead-lettering); the frame as
    received stays in the observation, shown but not compared."""
    now = time.time()
    for e in ctx.frames(conn, ch):
        props = e.get("props") or []
        headers = dict((p[0], p[1]) for p in props).get("headers") or []
        if not any(h[0] == "x-death" for h in headers):
            continue
        canonical = copy.deepcopy({k: v for k, v in e.items() if k != "info"})
        for p in canonical["props"]:
            if p[0] != "headers":
                continue
            for h in p[1]:
                if h[0] != "x-death":
                    continue
                for item in h[2]:
                    fields = sorted(item[1], key=lambda f: f[0])
                    for f in fields:
                        if f[0] == "time" and f[1] == "T" and abs(f[2] - now) < 60:
                            f[2] = "recent"
                    item[1] = fields
        ctx.note(label, canonical)
        e["info"] = True


def dead_letter_queue(ctx, ch):
    """A queue for dead letters, reached through the default exchange."""
    dead = ctx.n("dead")
    declare(ctx, ch, dead)
    return dead


@scenario("priority-order", "a priority queue hands out higher priorities first, FIFO within one, capped to the max")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 0, arguments={"x-max-priority": 5})
    pub = publisher(ctx, c)
    for body, priority in [("p0a", 0), ("p3a", 3), ("none", None), ("p9", 9), ("p3b", 3), ("p5", 5), ("p0b", 0)]:
        pub.send("", q, body, BasicProperties(priority=priority))
    pub.sync()
    counts(ctx, ch, q)
    drain(ctx, ch, q)


@scenario("dlx-rejected-x-death", "a rejected message is dead-lettered with x-death and x-first-death-* headers")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    dead = dead_letter_queue(ctx, ch)
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
    q, ch = filled_queue(ctx, c, 0, arguments=args)
    pub = publisher(ctx, c)
    pub.send("", q, "refused", BasicProperties(headers={"app": "kept"}, priority=2))
    pub.sync()
    ctx.step("get", lambda: ch.basic_get(q), show=lambda r: "get-ok" if r[0] else "get-empty")
    ctx.step("reject", lambda: ch.basic_reject(1, requeue=False))
    ctx.wait_ready(dead, 1)
    counts(ctx, ch, q)
    drain(ctx, ch, dead)
    note_deaths(ctx, c, ch, "x-death")


@scenario("dlx-twice-x-death-count", "a message dead-lettered twice by the same queue for the same reason: count 2")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    q = ctx.n("q")
    declare(ctx, ch, q, arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q})
    pub = publisher(ctx, c)
    pub.send("", q, "twice")
    pub.sync()
    for i in (1, 2):
        ctx.wait_ready(q, 1)
        r = ctx.step(f"get {i}", lambda: ch.basic_get(q), show=lambda r: "get-ok" if r[0] else "get-empty")
        if r and r[0]:
            ch.basic_nack(r[0].delivery_tag, requeue=False)
    ctx.wait_ready(q, 1)
    drain(ctx, ch, q)
    note_deaths(ctx, c, ch, "x-death")


@scenario("dlx-expired-x-death", "an expired message is dead-lettered with reason expired, without its expiration")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    dead = dead_letter_queue(ctx, ch)
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead, "x-message-ttl": 200}
    q, ch = filled_queue(ctx, c, 0, arguments=args)
    pub = publisher(ctx, c)
    pub.send("", q, "queue ttl")
    pub.send("", q, "own expiration", BasicProperties(expiration="50"))
    pub.sync()
    ctx.wait_ready(dead, 2)
    counts(ctx, ch, q)
    drain(ctx, ch, dead)
    note_deaths(ctx, c, ch, "x-death")


@scenario("dlx-maxlen-drop-head", "drop-head past x-max-length dead-letters the oldest with reason maxlen")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    dead = dead_letter_queue(ctx, ch)
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead, "x-max-length": 2}
    q, ch = filled_queue(ctx, c, 4, arguments=args)
    ctx.wait_ready(dead, 2)
    counts(ctx, ch, q)
    drain(ctx, ch, q)
    drain(ctx, ch, dead)
    note_deaths(ctx, c, ch, "x-death")


@scenario("reject-publish-dlx", "reject-publish-dlx nacks publishes past the limit and dead-letters them")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    dead = dead_letter_queue(ctx, ch)
    args = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead,
        "x-max-length": 1,
        "x-overflow": "reject-publish-dlx",
    }
    q, ch = filled_queue(ctx, c, 3, arguments=args)
    ctx.wait_ready(dead, 2)
    counts(ctx, ch, q)
    drain(ctx, ch, q)
    drain(ctx, ch, dead)
    note_deaths(ctx, c, ch, "x-death")


@scenario("queue-feature-bad-arguments", "out-of-range queue feature arguments are refused at declare")
def _(ctx):
    c = ctx.connect()
    for i, (name, value) in enumerate(
        [("x-max-priority", 300), ("x-overflow", "bogus"), ("x-message-ttl", -1), ("x-max-length", -1)]
    ):
        ch = ctx.channel(c)
        declare(ctx, ch, ctx.n(f"q{i}"), arguments={name: value})


@scenario("queue-max-priority-zero", "a queue declared with x-max-priority 0")
def _(ctx):
    ch = ctx.channel(ctx.connect())
    declare(ctx, ch, ctx.n("q"), arguments={"x-max-priority": 0})


@scenario("publish-invalid-expiration", "a publish with a non-numeric expiration closes the channel")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 0)
    ch.basic_publish("", q, "bad", BasicProperties(expiration="soon"))
    sync(ctx, ch, "after publish")


@scenario("dlx-fanout-one-queue-full", "a dead letter routed to an open queue and a full reject-publish queue")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    dlx = ctx.n("dlx")
    ctx.step("declare dlx", lambda: ch.exchange_declare(dlx, "fanout"))
    open_q, full_q = ctx.n("open"), ctx.n("full")
    declare(ctx, ch, open_q)
    declare(ctx, ch, full_q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    for q in (open_q, full_q):
        ctx.step(f"bind {q}", lambda: ch.queue_bind(q, dlx))
    pub = publisher(ctx, c)
    pub.send("", full_q, "filler")
    pub.sync()
    q, ch = filled_queue(ctx, c, 1, arguments={"x-dead-letter-exchange": dlx})
    ctx.step("get", lambda: ch.basic_get(q), show=lambda r: "get-ok" if r[0] else "get-empty")
    ctx.step("reject", lambda: ch.basic_reject(1, requeue=False))
    ctx.wait_ready(open_q, 1)
    time.sleep(2.5)
    counts(ctx, ch, q)
    counts(ctx, ch, open_q)
    counts(ctx, ch, full_q)


@scenario("ttl-requeued-after-expiry", "a message requeued after its TTL passed is not delivered again")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    dead = dead_letter_queue(ctx, ch)
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead, "x-message-ttl": 300}
    q, ch = filled_queue(ctx, c, 1, arguments=args)
    ctx.step("get", lambda: ch.basic_get(q), show=lambda r: "get-ok" if r[0] else "get-empty")
    time.sleep(0.6)
    ctx.step("nack requeue", lambda: ch.basic_nack(1, requeue=True))
    ctx.wait_ready(dead, 1)
    counts(ctx, ch, q)
    drain(ctx, ch, q)
    drain(ctx, ch, dead)
    note_deaths(ctx, c, ch, "x-death")


@scenario("ttl-zero", "x-message-ttl 0: a message is delivered only to a waiting consumer")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 1, arguments={"x-message-ttl": 0})
    counts(ctx, ch, q)
    cons = ctx.channel(c)
    ctx.step("consume", lambda: cons.basic_consume(q, lambda *a: None, consumer_tag="t"))
    pub = publisher(ctx, c)
    pub.send("", q, "to a waiting consumer")
    pub.sync()
    ctx.wait_deliveries(c, cons, 1)


@scenario("dlx-only-queue-full", "a dead letter whose only queue is full (reject-publish), that queue drained later")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    full_q = ctx.n("full")
    declare(ctx, ch, full_q, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    pub = publisher(ctx, c)
    pub.send("", full_q, "filler")
    pub.sync()
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": full_q}
    q, ch = filled_queue(ctx, c, 1, arguments=args)
    ctx.step("get", lambda: ch.basic_get(q), show=lambda r: "get-ok" if r[0] else "get-empty")
    ctx.step("reject", lambda: ch.basic_reject(1, requeue=False))
    time.sleep(1.2)
    drain(ctx, ch, full_q)
    time.sleep(1.5)
    counts(ctx, ch, q)
    drain(ctx, ch, full_q)
    note_deaths(ctx, c, ch, "x-death")


@scenario("priority-requeue-keeps-place", "messages requeued in a priority queue go back before later ones of their priority")
def _(ctx):
    c = ctx.connect()
    q, ch = filled_queue(ctx, c, 0, arguments={"x-max-priority": 9})
    pub = publisher(ctx, c)
    for body, priority in [("p5a", 5), ("p5b", 5), ("p9", 9), ("p1", 1)]:
        pub.send("", q, body, BasicProperties(priority=priority))
    pub.sync()
    for i in (1, 2):
        ctx.step(f"get {i}", lambda: ch.basic_get(q), show=lambda r: "get-ok" if r[0] else "get-empty")
    ctx.step("nack both", lambda: ch.basic_nack(2, multiple=True, requeue=True))
    drain(ctx, ch, q)


@scenario("priority-max-length-drop-head", "drop-head in a priority queue past x-max-length: which message goes")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    dead = dead_letter_queue(ctx, ch)
    args = {"x-max-priority": 9, "x-max-length": 2, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
    q, ch = filled_queue(ctx, c, 0, arguments=args)
    pub = publisher(ctx, c)
    for body, priority in [("p1", 1), ("p9", 9), ("p5", 5)]:
        pub.send("", q, body, BasicProperties(priority=priority))
    pub.sync()
    ctx.wait_ready(dead, 1)
    drain(ctx, ch, q)
    drain(ctx, ch, dead)
    note_deaths(ctx, c, ch, "x-death")


@scenario("expiration-behind-head", "a message with a short expiration behind a longer-lived head waits for the head")
def _(ctx):
    c = ctx.connect()
    ch = ctx.channel(c)
    dead = dead_letter_queue(ctx, ch)
    args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead}
    q, ch = filled_queue(ctx, c, 0, arguments=args)
    pub = publisher(ctx, c)
    pub.send("", q, "long", BasicProperties(expiration="1500"))
    pub.send("", q, "short", BasicProperties(expiration="100"))
    pub.sync()
    time.sleep(0.6)
    counts(ctx, ch, q, "counts after 0.6 s")
    counts(ctx, ch, dead, "dead after 0.6 s")
    ctx.wait_ready(dead, 2)
    drain(ctx, ch, dead)
    note_deaths(ctx, c, ch, "x-death")


@scenario("queue-feature-args-equivalence", "redeclaring a queue with other feature arguments is refused")
def _(ctx):
    c = ctx.connect()
    q = ctx.n("q")
    declare(ctx, ctx.channel(c), q, arguments={"x-max-priority": 5, "x-message-ttl": 1000})
    for i, args in enumerate(
        [
            {"x-max-priority": 5, "x-message-ttl": 1000},
            {"x-max-priority": 9, "x-message-ttl": 1000},
            {"x-max-priority": 5, "x-message-ttl": 2000},
            {"x-max-priority": 5},
            {"x-max-priority": 5, "x-message-ttl": 1000, "x-max-length": 3},
        ]
    ):
        ch = ctx.channel(c)
        ctx.step(f"redeclare {i}", lambda: ch.queue_declare(q, arguments=args), show=declare_ok)
