"""RabbitMQ's queue features (priorities, TTL, dead letters, length limits,
queue expiry, argument checks) used with pika as an application would.

    queue_features.py SUBCOMMAND HOST:PORT [ARGS...]

Each subcommand declares its own queues and exchanges (names made unique
per run), does one thing, and prints its observations as one JSON line
last; the Rust test (tests/amqp_queue_features.rs) checks them. Anything
the script cannot carry out (a publish not confirmed, a message missing
when it must be there, an error that should not happen) prints the reason
on stderr and exits with status 1.

Subcommands:
    priority_order ADDR                 publish mixed priorities, basic.get all
    priority_publish ADDR QUEUE         durable priority queue, persistent confirmed messages
    priority_consume ADDR QUEUE COUNT   consume COUNT from QUEUE (after a restart)
    ttl_get ADDR                        x-message-ttl: basic.get after the TTL
    ttl_consume ADDR                    x-message-ttl: a consumer gets only fresh messages
    ttl_requeued ADDR                   a message requeued after its TTL passed
    ttl_restart_publish ADDR QUEUE      durable TTL queue, a persistent message
    ttl_restart_get ADDR QUEUE          what basic.get finds there (after a restart)
    expiration ADDR                     per-message expiration property
    invalid_expiration ADDR             expiration "soon": the channel is closed
    dead_letter_rejected ADDR reject|nack
    dead_letter_routing_key ADDR
    dead_letter_fanout_one_full ADDR    a dead letter to two queues, one full
    delay_queue ADDR TTL_MS
    delivery_limit ADDR LIMIT
    drop_head ADDR
    reject_publish ADDR
    reject_publish_dlx ADDR
    max_length_bytes ADDR
    expires ADDR unused|consumed
    bad_arguments ADDR
    deduplication ADDR                  x-message-deduplication by message_id and header
    dedup_restart ADDR QUEUE BODY       publish BODY with message_id "key" to a durable one
    dlx_durable_setup ADDR PREFIX COUNT     reject COUNT, wait until all are dead letters
    dlx_durable_check ADDR PREFIX COUNT     after a restart: all still dead letters
    reject_kill_setup ADDR PREFIX COUNT     reject COUNT, print `rejected` (the test kills the broker)
    reject_kill_check ADDR PREFIX COUNT     after a restart: each message in exactly one queue
"""

import datetime
import os
import sys
import time

import pika
from pika.exceptions import ChannelClosedByBroker, NackError

from tutorial import connect, fail, report, say

# How long a message that must arrive is waited for, at most.
WAIT_S = 5.0


def unique(prefix):
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 1_000_000}"


def jsonable(v):
    """pika's decoded header values as JSON (bytes as text, times as
    seconds since the epoch)."""
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, datetime.datetime):
        return int(v.replace(tzinfo=datetime.timezone.utc).timestamp())
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return repr(v)


def persistent(**kw):
    return pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent, **kw)


def publish(ch, routing_key, body, exchange="", properties=None):
    """A confirmed publish (the channel is in confirm mode): returns "ack"
    or "nack"."""
    try:
        ch.basic_publish(exchange=exchange, routing_key=routing_key, body=body, properties=properties)
        return "ack"
    except NackError:
        return "nack"


def get_all(ch, queue):
    """Every message basic.get returns, acknowledged, as (body, properties)."""
    out = []
    while True:
        method, props, body = ch.basic_get(queue=queue, auto_ack=True)
        if method is None:
            return out
        out.append((body.decode(), props))


def wait_get(conn, ch, queue, what, timeout_s=WAIT_S):
    """The next message of `queue` (auto-acked), waiting for it to arrive."""
    deadline = time.monotonic() + timeout_s
    while True:
        method, props, body = ch.basic_get(queue=queue, auto_ack=True)
        if method is not None:
            return body.decode(), props
        if time.monotonic() > deadline:
            fail(f"{what}: nothing in queue {queue} after {timeout_s} s")
        conn.sleep(0.02)


def wait_count(conn, ch, queue, count, what, timeout_s=WAIT_S):
    """Waits until `queue` holds `count` ready messages (passive declare)."""
    deadline = time.monotonic() + timeout_s
    while True:
        n = ch.queue_declare(queue=queue, passive=True).method.message_count
        if n == count:
            return
        if time.monotonic() > deadline:
            fail(f"{what}: queue {queue} holds {n} messages after {timeout_s} s, expected {count}")
        conn.sleep(0.02)


def death(props):
    """The dead-letter headers of a message, as JSON."""
    h = props.headers or {}
    return {k: jsonable(v) for k, v in h.items() if k.startswith("x-death") or k.startswith("x-first-death")}


def dlx_pair(ch, tag):
    """A direct exchange for dead letters and a queue for them (bound by
    the caller): returns (exchange, queue)."""
    exchange = unique(f"dlx-{tag}")
    queue = unique(f"dead-{tag}")
    ch.exchange_declare(exchange=exchange, exchange_type="direct")
    ch.queue_declare(queue=queue)
    return exchange, queue


# ---------------------------------------------------------------------------
# Priorities
# ---------------------------------------------------------------------------

# (body, priority): published in this order. 20 is above the queue's
# x-max-priority of 10, so it counts as 10.
PRIORITY_MESSAGES = [
    ("low-1", 0),
    ("mid-1", 5),
    ("high-1", 9),
    ("none-1", None),
    ("mid-2", 5),
    ("capped-1", 20),
    ("low-2", 0),
    ("high-2", 9),
    ("capped-2", 10),
    ("none-2", None),
]


def publish_priorities(ch, queue):
    ch.confirm_delivery()
    for body, priority in PRIORITY_MESSAGES:
        if publish(ch, queue, body, properties=persistent(priority=priority)) != "ack":
            fail(f"publish of {body} was not confirmed")


def priority_order(addr):
    conn = connect(addr)
    ch = conn.channel()
    queue = unique("prio")
    ch.queue_declare(queue=queue, arguments={"x-max-priority": 10})
    publish_priorities(ch, queue)
    got = get_all(ch, queue)
    report(order=[b for b, _ in got], priorities=[p.priority for _, p in got])
    conn.close()


def priority_publish(addr, queue):
    conn = connect(addr)
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True, arguments={"x-max-priority": 10})
    publish_priorities(ch, queue)
    conn.close()
    report(published=len(PRIORITY_MESSAGES))


def priority_consume(addr, queue, count):
    conn = connect(addr)
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True, arguments={"x-max-priority": 10})
    got = []

    def on_message(ch, method, props, body):
        got.append(body.decode())
        ch.basic_ack(method.delivery_tag)
        if len(got) == count:
            ch.stop_consuming()

    ch.basic_qos(prefetch_count=1)
    ch.basic_consume(queue=queue, on_message_callback=on_message)
    conn.call_later(WAIT_S, ch.stop_consuming)
    ch.start_consuming()
    left = get_all(ch, queue)
    conn.close()
    report(order=got, left=[b for b, _ in left])


# ---------------------------------------------------------------------------
# TTL
# ---------------------------------------------------------------------------

TTL_MS = 300


def ttl_get(addr):
    conn = connect(addr)
    ch = conn.channel()
    queue = unique("ttl")
    ch.queue_declare(queue=queue, arguments={"x-message-ttl": TTL_MS})
    ch.confirm_delivery()
    for i in range(3):
        publish(ch, queue, f"old-{i}")
    fresh = ch.basic_get(queue=queue, auto_ack=False)
    if fresh[0] is None:
        fail("a message within its TTL was not there")
    ch.basic_nack(fresh[0].delivery_tag, requeue=True)
    conn.sleep(TTL_MS / 1000 * 2)
    method, _, body = ch.basic_get(queue=queue, auto_ack=True)
    count = ch.queue_declare(queue=queue, passive=True).method.message_count
    conn.close()
    report(before_ttl=fresh[2].decode(), after_ttl=None if method is None else body.decode(), count_after=count)


def ttl_consume(addr):
    conn = connect(addr)
    ch = conn.channel()
    queue = unique("ttl")
    ch.queue_declare(queue=queue, arguments={"x-message-ttl": TTL_MS})
    ch.confirm_delivery()
    for i in range(3):
        publish(ch, queue, f"old-{i}")
    conn.sleep(TTL_MS / 1000 * 2)
    got = []

    def on_message(ch, method, props, body):
        got.append(body.decode())
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(queue=queue, on_message_callback=on_message)
    for i in range(2):
        publish(ch, queue, f"fresh-{i}")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    conn.close()
    report(consumed=got)


def ttl_requeued(addr):
    """A message held (unacknowledged) past its TTL, then requeued."""
    conn = connect(addr)
    ch = conn.channel()
    dlx, dead = dlx_pair(ch, "requeued")
    ch.queue_bind(queue=dead, exchange=dlx, routing_key="work")
    exchange, queue = source(ch, "requeued", {"x-message-ttl": TTL_MS, "x-dead-letter-exchange": dlx})
    ch.confirm_delivery()
    publish(ch, "work", "held", exchange=exchange)
    method, _, _ = ch.basic_get(queue=queue, auto_ack=False)
    if method is None:
        fail("the message is not there within its TTL")
    conn.sleep(TTL_MS / 1000 * 2)
    ch.basic_nack(method.delivery_tag, requeue=True)
    body, props = wait_get(conn, ch, dead, "dead letter of the requeued message")
    again = [b for b, _ in get_all(ch, queue)]
    conn.close()
    report(again=again, dead=body, death=death(props))


def ttl_restart_publish(addr, queue):
    conn = connect(addr)
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True, arguments={"x-message-ttl": TTL_MS})
    # The same message in a queue without TTL: it shows the restart kept it.
    ch.queue_declare(queue=f"{queue}-no-ttl", durable=True)
    ch.confirm_delivery()
    for q in (queue, f"{queue}-no-ttl"):
        if publish(ch, q, "before the restart", properties=persistent()) != "ack":
            fail(f"the publish to {q} was not confirmed")
    conn.close()
    report(published=2)


def ttl_restart_get(addr, queue):
    conn = connect(addr)
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True, arguments={"x-message-ttl": TTL_MS})
    ch.queue_declare(queue=f"{queue}-no-ttl", durable=True)
    got = [b for b, _ in get_all(ch, queue)]
    kept = [b for b, _ in get_all(ch, f"{queue}-no-ttl")]
    conn.close()
    report(got=got, without_ttl=kept)


def expiration(addr):
    conn = connect(addr)
    ch = conn.channel()
    queue = unique("expiration")
    ch.queue_declare(queue=queue)
    ch.confirm_delivery()
    publish(ch, queue, "short-lived", properties=pika.BasicProperties(expiration="200"))
    publish(ch, queue, "no-expiration")
    publish(ch, queue, "long-lived", properties=pika.BasicProperties(expiration="60000"))
    conn.sleep(0.5)
    got = get_all(ch, queue)
    conn.close()
    report(got=[b for b, _ in got], expirations=[p.expiration for _, p in got])


def closed_by(fn):
    """Runs fn; returns the broker's channel close as [code, text], or None."""
    try:
        fn()
        return None
    except ChannelClosedByBroker as e:
        return [e.reply_code, e.reply_text]


def invalid_expiration(addr):
    conn = connect(addr)
    ch = conn.channel()
    queue = unique("expiration")
    ch.queue_declare(queue=queue)
    ch.confirm_delivery()
    closed = closed_by(lambda: publish(ch, queue, "bad", properties=pika.BasicProperties(expiration="soon")))
    ch2 = conn.channel()
    count = ch2.queue_declare(queue=queue, passive=True).method.message_count
    conn.close()
    report(closed=closed, channel_open=ch.is_open, count=count)


# ---------------------------------------------------------------------------
# Dead letters
# ---------------------------------------------------------------------------


def source(ch, tag, arguments, exchange_type="direct"):
    """A named exchange and a queue bound to it with key `work`, with
    `arguments`: returns (exchange, queue)."""
    exchange = unique(f"src-{tag}")
    queue = unique(f"work-{tag}")
    ch.exchange_declare(exchange=exchange, exchange_type=exchange_type)
    ch.queue_declare(queue=queue, arguments=arguments)
    ch.queue_bind(queue=queue, exchange=exchange, routing_key="work")
    return exchange, queue


def dead_letter_rejected(addr, how):
    conn = connect(addr)
    ch = conn.channel()
    dlx, dead = dlx_pair(ch, "rejected")
    ch.queue_bind(queue=dead, exchange=dlx, routing_key="work")
    exchange, queue = source(ch, "rejected", {"x-dead-letter-exchange": dlx})
    ch.confirm_delivery()
    publish(ch, "work", "refused", exchange=exchange, properties=pika.BasicProperties(headers={"app": "kept"}))
    method, _, _ = ch.basic_get(queue=queue, auto_ack=False)
    if method is None:
        fail("the published message is not in its queue")
    if how == "reject":
        ch.basic_reject(method.delivery_tag, requeue=False)
    else:
        ch.basic_nack(method.delivery_tag, requeue=False)
    body, props = wait_get(conn, ch, dead, "dead letter")
    left = get_all(ch, queue)
    conn.close()
    report(
        body=body,
        app_header=jsonable((props.headers or {}).get("app")),
        death=death(props),
        source_exchange=exchange,
        source_queue=queue,
        left_in_source=[b for b, _ in left],
    )


def dead_letter_routing_key(addr):
    conn = connect(addr)
    ch = conn.channel()
    dlx, by_original = dlx_pair(ch, "original-key")
    ch.queue_bind(queue=by_original, exchange=dlx, routing_key="work")
    by_dead_key = unique("dead-new-key")
    ch.queue_declare(queue=by_dead_key)
    ch.queue_bind(queue=by_dead_key, exchange=dlx, routing_key="dead")
    exchange, queue = source(
        ch, "dlrk", {"x-dead-letter-exchange": dlx, "x-dead-letter-routing-key": "dead"}
    )
    ch.confirm_delivery()
    publish(ch, "work", "rerouted", exchange=exchange)
    method, _, _ = ch.basic_get(queue=queue, auto_ack=False)
    ch.basic_reject(method.delivery_tag, requeue=False)
    body, props = wait_get(conn, ch, by_dead_key, "dead letter under the new key")
    conn.sleep(0.2)
    original = get_all(ch, by_original)
    conn.close()
    report(body=body, death=death(props), under_original_key=[b for b, _ in original])


def delay_queue(addr, ttl_ms):
    """A queue nobody consumes whose messages expire into the target queue
    (through the default exchange): a delay."""
    conn = connect(addr)
    ch = conn.channel()
    target = unique("target")
    delay = unique("delay")
    ch.queue_declare(queue=target)
    ch.queue_declare(
        queue=delay,
        arguments={"x-message-ttl": ttl_ms, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": target},
    )
    ch.confirm_delivery()
    arrived = []
    t0 = time.monotonic()
    publish(ch, delay, "later")

    def on_message(ch, method, props, body):
        arrived.append((round((time.monotonic() - t0) * 1000), body.decode(), death(props)))
        ch.basic_ack(method.delivery_tag)

    ch.basic_consume(queue=target, on_message_callback=on_message)
    deadline = t0 + ttl_ms / 1000 + WAIT_S
    while not arrived and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.01)
    conn.close()
    if not arrived:
        fail(f"the delayed message did not arrive within {ttl_ms} ms + {WAIT_S} s")
    elapsed_ms, body, dead = arrived[0]
    report(elapsed_ms=elapsed_ms, body=body, death=dead, delay_queue=delay)


def delivery_limit(addr, limit):
    conn = connect(addr)
    ch = conn.channel()
    dlx, dead = dlx_pair(ch, "limit")
    ch.queue_bind(queue=dead, exchange=dlx, routing_key="work")
    exchange, queue = source(ch, "limit", {"x-dead-letter-exchange": dlx, "x-delivery-limit": limit})
    ch.confirm_delivery()
    publish(ch, "work", "poison", exchange=exchange)
    deliveries = []
    for _ in range(limit + 5):
        method, _, _ = ch.basic_get(queue=queue, auto_ack=False)
        if method is None:
            break
        deliveries.append(method.redelivered)
        ch.basic_nack(method.delivery_tag, requeue=True)
    body, props = wait_get(conn, ch, dead, "dead letter past the delivery limit")
    conn.close()
    report(deliveries=len(deliveries), redelivered=deliveries, body=body, death=death(props))


def dead_letter_fanout_one_full(addr):
    """A dead letter routed to two queues, one of them full (reject-publish):
    the other gets it once."""
    conn = connect(addr)
    ch = conn.channel()
    dlx = unique("dlx-fanout")
    ch.exchange_declare(exchange=dlx, exchange_type="fanout")
    open_queue, full_queue = unique("dead-open"), unique("dead-full")
    ch.queue_declare(queue=open_queue)
    ch.queue_declare(queue=full_queue, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    for q in (open_queue, full_queue):
        ch.queue_bind(queue=q, exchange=dlx)
    ch.confirm_delivery()
    if publish(ch, full_queue, "filler") != "ack":
        fail("the filler was not confirmed")
    exchange, queue = source(ch, "fanout", {"x-dead-letter-exchange": dlx})
    publish(ch, "work", "refused", exchange=exchange)
    method, _, _ = ch.basic_get(queue=queue, auto_ack=False)
    if method is None:
        fail("the published message is not in its queue")
    ch.basic_reject(method.delivery_tag, requeue=False)
    wait_count(conn, ch, open_queue, 1, "dead letter in the open queue")
    # Long enough for the broker to try a dead letter again (it waits a second).
    conn.sleep(DEAD_LETTER_SETTLE_S)
    in_open = [b for b, _ in get_all(ch, open_queue)]
    in_full = [b for b, _ in get_all(ch, full_queue)]
    source_count = ch.queue_declare(queue=queue, passive=True).method.message_count
    conn.close()
    report(open_queue=in_open, full_queue=in_full, source_ready=source_count)


DEAD_LETTER_SETTLE_S = 2.5


# ---------------------------------------------------------------------------
# Length limits
# ---------------------------------------------------------------------------


def limited(addr, tag, arguments, with_dlx, bodies):
    """Declares a queue with `arguments` (and a dead-letter queue when
    `with_dlx`), publishes `bodies` with confirms; returns what each publish
    got, what the queue holds and what was dead-lettered (with reasons)."""
    conn = connect(addr)
    ch = conn.channel()
    args = dict(arguments)
    dead = None
    if with_dlx:
        dlx, dead = dlx_pair(ch, tag)
        ch.queue_bind(queue=dead, exchange=dlx, routing_key="work")
        args["x-dead-letter-exchange"] = dlx
    exchange, queue = source(ch, tag, args)
    ch.confirm_delivery()
    outcomes = [publish(ch, "work", b, exchange=exchange) for b in bodies]
    conn.sleep(0.2)
    kept = [b for b, _ in get_all(ch, queue)]
    dead_letters = []
    if dead is not None:
        dead_letters = [(b, death(p).get("x-first-death-reason")) for b, p in get_all(ch, dead)]
    conn.close()
    report(outcomes=outcomes, kept=kept, dead_letters=dead_letters)


def numbered(n):
    return [f"m{i}" for i in range(1, n + 1)]


# ---------------------------------------------------------------------------
# Queue expiry
# ---------------------------------------------------------------------------

EXPIRES_MS = 400


def expires(addr, mode):
    conn = connect(addr)
    ch = conn.channel()
    queue = unique("expires")
    ch.queue_declare(queue=queue, arguments={"x-expires": EXPIRES_MS})
    if mode == "consumed":
        ch.basic_consume(queue=queue, on_message_callback=lambda *a: None)
    t0 = time.monotonic()
    conn.sleep(EXPIRES_MS / 1000 * 3)
    probe = conn.channel()
    closed = closed_by(lambda: probe.queue_declare(queue=queue, passive=True))
    conn.close()
    report(waited_ms=round((time.monotonic() - t0) * 1000), passive_declare=closed)


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------

BAD_ARGUMENTS = [
    ("x-max-priority", -1),
    ("x-max-priority", 300),
    ("x-overflow", "bogus"),
    ("x-message-ttl", -1),
    ("x-expires", 0),
    ("x-max-length", -1),
    ("x-message-ttl", "soon"),
]


def declare_refusal(conn, name, value):
    ch = conn.channel()
    queue = unique("bad")
    closed = closed_by(lambda: ch.queue_declare(queue=queue, arguments={name: value}))
    probe = conn.channel()
    exists = closed_by(lambda: probe.queue_declare(queue=queue, passive=True)) is None
    if probe.is_open:
        probe.close()
    return {"argument": name, "value": value, "closed": closed, "queue_exists": exists}


def bad_arguments(addr):
    conn = connect(addr)
    results = [declare_refusal(conn, name, value) for name, value in BAD_ARGUMENTS]
    conn.close()
    report(results=results)


DEDUP_ARGUMENTS = {"x-message-deduplication": True, "x-cache-size": 100}


def deduplication(addr):
    """Messages keyed by message_id or the x-deduplication-header header;
    the second of a key is confirmed and not stored, a message without a
    key is never a duplicate."""
    conn = connect(addr)
    ch = conn.channel()
    queue = unique("dedup")
    ch.queue_declare(queue=queue, arguments=DEDUP_ARGUMENTS)
    ch.confirm_delivery()
    sends = [
        ("a-1", pika.BasicProperties(message_id="a")),
        ("b-1", pika.BasicProperties(message_id="b")),
        ("a-2", pika.BasicProperties(message_id="a")),
        ("h-1", pika.BasicProperties(headers={"x-deduplication-header": "h"})),
        ("h-2", pika.BasicProperties(headers={"x-deduplication-header": "h"})),
        ("none-1", None),
        ("none-2", None),
    ]
    outcomes = [publish(ch, queue, body, properties=props) for body, props in sends]
    kept = [b for b, _ in get_all(ch, queue)]
    refused = declare_refusal(conn, "x-message-deduplication", True)
    conn.close()
    report(outcomes=outcomes, kept=kept, without_cache_size=refused)


def dedup_restart(addr, queue, body):
    """Publishes `body` with message_id "key" (persistent, confirmed) to a
    durable de-duplicating queue; reports what the queue then holds."""
    conn = connect(addr)
    ch = conn.channel()
    ch.queue_declare(queue=queue, durable=True, arguments=DEDUP_ARGUMENTS)
    ch.confirm_delivery()
    outcome = publish(ch, queue, body, properties=persistent(message_id="key"))
    count = ch.queue_declare(queue=queue, passive=True).method.message_count
    conn.close()
    report(outcome=outcome, count=count)


# ---------------------------------------------------------------------------
# Durability across a SIGKILL
# ---------------------------------------------------------------------------


def durable_pair(ch, prefix):
    """A durable dead-letter queue and a durable queue dead-lettering into
    it through the default exchange: returns (queue, dead)."""
    queue, dead = f"{prefix}-work", f"{prefix}-dead"
    ch.queue_declare(queue=dead, durable=True)
    ch.queue_declare(
        queue=queue,
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead},
    )
    return queue, dead


def publish_and_reject(conn, ch, queue, count):
    ch.confirm_delivery()
    for i in range(count):
        if publish(ch, queue, f"m{i}", properties=persistent()) != "ack":
            fail(f"publish of m{i} was not confirmed")
    rejected = 0
    while rejected < count:
        method, _, _ = ch.basic_get(queue=queue, auto_ack=False)
        if method is None:
            fail(f"only {rejected} of {count} messages could be fetched")
        ch.basic_reject(method.delivery_tag, requeue=False)
        rejected += 1
    return rejected


def dlx_durable_setup(addr, prefix, count):
    conn = connect(addr)
    ch = conn.channel()
    queue, dead = durable_pair(ch, prefix)
    publish_and_reject(conn, ch, queue, count)
    wait_count(conn, ch, dead, count, "dead letters")
    wait_count(conn, ch, queue, 0, "rejected messages")
    conn.close()
    report(dead_letters=count)


def dlx_durable_check(addr, prefix, count):
    conn = connect(addr)
    ch = conn.channel()
    queue, dead = durable_pair(ch, prefix)
    dead_letters = get_all(ch, dead)
    back = get_all(ch, queue)
    conn.close()
    report(
        dead=[b for b, _ in dead_letters],
        reasons=sorted({death(p).get("x-first-death-reason") for _, p in dead_letters}),
        persistent=all(p.delivery_mode == 2 for _, p in dead_letters),
        back=[b for b, _ in back],
    )


def reject_kill_setup(addr, prefix, count):
    conn = connect(addr)
    ch = conn.channel()
    queue, _ = durable_pair(ch, prefix)
    publish_and_reject(conn, ch, queue, count)
    say("rejected")
    # The test kills the broker now; this connection dies with it.
    time.sleep(30)


def reject_kill_check(addr, prefix, count):
    conn = connect(addr)
    ch = conn.channel()
    queue, dead = durable_pair(ch, prefix)
    dead_letters = [b for b, _ in get_all(ch, dead)]
    back = [b for b, _ in get_all(ch, queue)]
    conn.close()
    report(dead=dead_letters, back=back)


# ---------------------------------------------------------------------------


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        fail(__doc__)
    cmd, addr, rest = args[0], args[1], args[2:]
    simple = {
        "priority_order": priority_order,
        "ttl_get": ttl_get,
        "ttl_consume": ttl_consume,
        "ttl_requeued": ttl_requeued,
        "expiration": expiration,
        "invalid_expiration": invalid_expiration,
        "dead_letter_routing_key": dead_letter_routing_key,
        "dead_letter_fanout_one_full": dead_letter_fanout_one_full,
        "bad_arguments": bad_arguments,
        "deduplication": deduplication,
        "drop_head": lambda a: limited(a, "drop-head", {"x-max-length": 3}, True, numbered(5)),
        "reject_publish": lambda a: limited(
            a, "reject", {"x-max-length": 2, "x-overflow": "reject-publish"}, True, numbered(4)
        ),
        "reject_publish_dlx": lambda a: limited(
            a, "reject-dlx", {"x-max-length": 2, "x-overflow": "reject-publish-dlx"}, True, numbered(4)
        ),
        "max_length_bytes": lambda a: limited(
            a, "bytes", {"x-max-length-bytes": 10}, True, ["aaaa", "bbbb", "cccc", "dddd"]
        ),
    }
    if cmd in simple and not rest:
        simple[cmd](addr)
    elif cmd == "dedup_restart" and len(rest) == 2:
        dedup_restart(addr, rest[0], rest[1])
    elif cmd in ("ttl_restart_publish", "ttl_restart_get") and len(rest) == 1:
        globals()[cmd](addr, rest[0])
    elif cmd == "priority_publish" and len(rest) == 1:
        priority_publish(addr, rest[0])
    elif cmd == "priority_consume" and len(rest) == 2:
        priority_consume(addr, rest[0], int(rest[1]))
    elif cmd == "dead_letter_rejected" and rest in (["reject"], ["nack"]):
        dead_letter_rejected(addr, rest[0])
    elif cmd == "delay_queue" and len(rest) == 1:
        delay_queue(addr, int(rest[0]))
    elif cmd == "delivery_limit" and len(rest) == 1:
        delivery_limit(addr, int(rest[0]))
    elif cmd == "expires" and rest in (["unused"], ["consumed"]):
        expires(addr, rest[0])
    elif cmd in ("dlx_durable_setup", "dlx_durable_check", "reject_kill_setup", "reject_kill_check") and len(rest) == 2:
        globals()[cmd](addr, rest[0], int(rest[1]))
    else:
        fail(__doc__)


if __name__ == "__main__":
    main()
