"""The scenarios' toolkit: connections whose received frames are recorded,
steps whose outcome (ok, or the channel/connection close they caused) is
noted, and waiting for frames without depending on how fast a broker is.

An observation is `{"notes": [[step, outcome], ...], "streams": {"c1/ch1":
[event, ...]}}`. Streams are per channel because only the order within a
channel is the broker's to keep; frames of different channels interleave by
timing. Events marked `"info": true` are shown but not compared.
"""

import time

import pika
import pika.exceptions
import pika.spec

import recorder

# How long a scenario waits for frames it expects, at most, and how long it
# keeps listening for frames it does not expect.
WAIT_S = 5.0
QUIET_S = 0.3


class Ctx:
    def __init__(self, port: int, scenario_id: str, repeat: int = 1):
        self.port = port
        self.sid = scenario_id
        # Names of later repeats differ (the broker still holds the first's).
        self.prefix = "" if repeat == 1 else f"repeat{repeat}."
        self.notes = []
        self.streams = {}
        self.conns = []
        self.recorders = []
        self._probe = None
        self._confirm_channels = []

    # ---- names and connections ----

    def n(self, what: str) -> str:
        """A name of this scenario's own (the same on both brokers)."""
        return f"{self.prefix}{self.sid}.{what}"

    def params(self, frame_max=None):
        kw = dict(
            host="127.0.0.1",
            port=self.port,
            credentials=pika.PlainCredentials("guest", "guest"),
            heartbeat=0,
            connection_attempts=1,
            socket_timeout=5,
            blocked_connection_timeout=None,
        )
        if frame_max:
            kw["frame_max"] = frame_max
        return pika.ConnectionParameters(**kw)

    def connect(self, keep_handshake=False, frame_max=None):
        label = f"c{len(self.conns) + 1}"
        rec = recorder.ConnRecorder(self.streams, label, keep_handshake)
        recorder.PENDING["recorder"] = rec
        try:
            conn = pika.BlockingConnection(self.params(frame_max))
        finally:
            recorder.PENDING["recorder"] = None
        conn._diff_label = label
        self.conns.append(conn)
        self.recorders.append(rec)
        return conn

    def channel(self, conn):
        return conn.channel()

    def probe(self):
        """A connection that is not recorded, for polling queue counts."""
        if self._probe is None or not self._probe.is_open:
            recorder.PENDING["recorder"] = None
            self._probe = pika.BlockingConnection(self.params())
        return self._probe

    # ---- steps ----

    def note(self, label: str, value):
        self.notes.append([label, value])

    def step(self, label: str, fn, show=None):
        """Runs `fn`; notes "ok" (or `show(result)`) or how the broker refused."""
        try:
            result = fn()
        except pika.exceptions.ChannelClosedByBroker as e:
            self.note(label, f"channel closed {e.reply_code}")
            return None
        except pika.exceptions.ConnectionClosedByBroker as e:
            self.note(label, f"connection closed {e.reply_code}")
            return None
        except pika.exceptions.AMQPError as e:
            self.note(label, f"{type(e).__name__}")
            return None
        self.note(label, show(result) if show else "ok")
        return result

    def send(self, ch, method):
        """Sends a method as is (for what pika refuses to send itself)."""
        ch._impl._send_method(method)
        ch.connection.process_data_events(time_limit=0)

    # ---- waiting ----

    def pump(self, until=None, timeout=WAIT_S, quiet=QUIET_S):
        """Lets every connection read until `until()` holds (or `timeout`),
        then `quiet` seconds more. Notes a wait that ran out."""
        deadline = time.monotonic() + timeout
        met = until is None
        while not met and time.monotonic() < deadline:
            self._pump_once()
            met = until()
        if not met:
            self.note("wait", "timed out")
        end = time.monotonic() + quiet
        while time.monotonic() < end:
            self._pump_once()

    def _pump_once(self):
        for c in self.conns:
            if not c.is_open:
                continue
            try:
                c.process_data_events(time_limit=0)
            except pika.exceptions.AMQPError:
                pass
        time.sleep(0.005)

    def frames(self, conn, ch, name=None) -> list:
        ch_no = ch if isinstance(ch, int) else ch.channel_number
        events = self.streams.get(f"{conn._diff_label}/ch{ch_no}", [])
        return [e for e in events if name is None or e.get("m") == name]

    def count(self, conn, ch, name) -> int:
        return len(self.frames(conn, ch, name))

    def deliveries(self, conn, ch) -> list:
        return [e for e in self.frames(conn, ch, "Basic.Deliver") if "body" in e]

    def wait_deliveries(self, conn, ch, n, quiet=QUIET_S):
        self.pump(lambda: len(self.deliveries(conn, ch)) >= n, quiet=quiet)
        return self.deliveries(conn, ch)

    def wait_ready(self, queue: str, n: int):
        """Waits (unrecorded) until `queue` has at least `n` ready messages;
        for scenarios that test something other than publish visibility."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            ch = self.probe().channel()
            try:
                got = ch.queue_declare(queue, passive=True).method.message_count
            except pika.exceptions.AMQPError:
                got = -1
            finally:
                if ch.is_open:
                    ch.close()
            if got >= n:
                return
            time.sleep(0.01)
        self.note(f"wait for {n} ready in {queue}", "timed out")

    # ---- confirms ----

    def confirm_select(self, ch):
        """Confirm mode without pika's one-publish-at-a-time blocking: acks
        and nacks are recorded as frames like everything else."""
        done = []
        ch._impl.confirm_delivery(ack_nack_callback=lambda _f: None, callback=lambda _f: done.append(1))
        self.pump(lambda: done, quiet=0)
        self.note("confirm.select", "ok" if done else "no select-ok")

    def canonical_confirms(self, conn, ch):
        """Acks and nacks on `ch` are compared as the set of tags they
        cover (how a broker merges them with `multiple`, and in which order
        it sends them, depends on timing); the frames stay in the log,
        marked info."""
        self._confirm_channels.append((conn, ch.channel_number))

    def confirmed(self, conn, ch) -> int:
        n = 0
        for e in self.frames(conn, ch):
            if e.get("m") in ("Basic.Ack", "Basic.Nack"):
                n = max(n, e["delivery_tag"])
        return n

    def _summarise_confirms(self):
        for conn, ch in self._confirm_channels:
            stream = self.streams.setdefault(f"{conn._diff_label}/ch{ch}", [])
            acked, nacked, seen = [], [], set()
            each_once = True
            for e in stream:
                if e.get("m") not in ("Basic.Ack", "Basic.Nack"):
                    continue
                e["info"] = True
                tag = e["delivery_tag"]
                # RabbitMQ confirms out of order (an unroutable message at
                # once, a queued one when its queue took it): only "each
                # tag once" is a rule; `multiple` covers what is still open.
                covered = [t for t in range(1, tag + 1) if t not in seen] if e.get("multiple") else [tag]
                each_once = each_once and bool(covered) and not seen.intersection(covered)
                seen.update(covered)
                (acked if e["m"] == "Basic.Ack" else nacked).extend(covered)
            stream.append(
                {
                    "confirms": {
                        "acked": _ranges(sorted(set(acked))),
                        "nacked": _ranges(sorted(set(nacked))),
                        "each_tag_once": each_once,
                    }
                }
            )

    # ---- the end ----

    def finish(self):
        """Listens a last moment for stray frames, stops recording, closes."""
        try:
            self.pump(quiet=QUIET_S)
        finally:
            self._summarise_confirms()
            for r in self.recorders:
                r.active = False
            for c in self.conns + ([self._probe] if self._probe else []):
                try:
                    if c.is_open:
                        c.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass

    def observation(self) -> dict:
        return {"notes": self.notes, "streams": dict(sorted(self.streams.items()))}


def _ranges(tags):
    out = []
    for t in tags:
        if out and out[-1][1] == t - 1:
            out[-1][1] = t
        else:
            out.append([t, t])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)


BasicProperties = pika.spec.BasicProperties
