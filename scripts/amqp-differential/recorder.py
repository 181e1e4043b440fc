"""What a pika client observes: every frame a broker sends, per connection
and channel, in arrival order, with content (properties decoded from the raw
header bytes, field types kept) attached to the method that carried it.

pika is patched in three places, all at import of this module:
- `pika.frame.decode_frame` keeps a content header's raw payload (pika's own
  decoding of tables loses types: floats become ints, 'b'/'B' are swapped);
- `pika.connection.Connection._process_frame` hands each inbound frame to the
  connection's recorder before pika handles it;
- `pika.data.encode_value` accepts `Raw` values, so a header can carry any
  AMQP field type, not only those pika picks for Python values.
"""

import datetime
import decimal
import hashlib
import struct

import pika
import pika.connection
import pika.data
import pika.frame
import pika.spec


class Raw:
    """A header value sent with an explicit AMQP field type byte."""

    def __init__(self, kind: str, payload: bytes):
        assert len(kind) == 1
        self.kind = kind
        self.payload = payload


_encode_value = pika.data.encode_value


def _encode_value_raw(pieces, value):
    if isinstance(value, Raw):
        pieces.append(value.kind.encode("ascii") + value.payload)
        return 1 + len(value.payload)
    return _encode_value(pieces, value)


pika.data.encode_value = _encode_value_raw

_decode_frame = pika.frame.decode_frame


def _decode_frame_keeping_header_bytes(data_in):
    consumed, value = _decode_frame(data_in)
    if isinstance(value, pika.frame.Header):
        value.raw_payload = bytes(data_in[7 : consumed - 1])
    return consumed, value


pika.frame.decode_frame = _decode_frame_keeping_header_bytes

# The recorder that a connection being opened reports to (set just before
# pika.BlockingConnection() is called; the handshake frames arrive inside it).
PENDING = {"recorder": None}

_process_frame = pika.connection.Connection._process_frame


def _process_frame_recorded(self, frame_value):
    rec = self.__dict__.get("_diff_recorder")
    if rec is None:
        rec = PENDING["recorder"]
        self._diff_recorder = rec
    if rec is not None:
        rec.on_frame(frame_value)
    return _process_frame(self, frame_value)


pika.connection.Connection._process_frame = _process_frame_recorded


# ---- field tables, decoded with their types ----


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ValueError(f"field data ends at {len(self.data)}, wanted {self.at + n}")
        b = self.data[self.at : self.at + n]
        self.at += n
        return b

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]


def _text(b: bytes):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + b.hex()


_FIXED = {"b": ">b", "B": ">B", "s": ">h", "U": ">h", "u": ">H", "I": ">i", "i": ">I", "l": ">q", "L": ">Q", "T": ">Q"}


def _value(r: _Reader):
    kind = r.take(1).decode("latin-1")
    if kind == "t":
        return [kind, r.unpack(">B") != 0]
    if kind in _FIXED:
        return [kind, r.unpack(_FIXED[kind])]
    if kind == "f":
        return [kind, r.unpack(">f")]
    if kind == "d":
        return [kind, r.unpack(">d")]
    if kind == "D":
        scale = r.unpack(">B")
        return [kind, f"{r.unpack('>i')}e-{scale}"]
    if kind == "S":
        return [kind, _text(r.take(r.unpack(">I")))]
    if kind == "x":
        return [kind, "0x" + r.take(r.unpack(">I")).hex()]
    if kind == "A":
        inner = _Reader(r.take(r.unpack(">I")))
        items = []
        while inner.at < len(inner.data):
            items.append(_value(inner))
        return [kind, items]
    if kind == "F":
        return [kind, _table(r)]
    if kind == "V":
        return [kind, None]
    raise ValueError(f"unknown field type {kind!r}")


def _table(r: _Reader):
    inner = _Reader(r.take(r.unpack(">I")))
    out = []
    while inner.at < len(inner.data):
        key = _text(inner.take(inner.unpack(">B")))
        out.append([key, *_value(inner)])
    return out


_PROPERTIES = [
    ("content_type", "shortstr"),
    ("content_encoding", "shortstr"),
    ("headers", "table"),
    ("delivery_mode", "octet"),
    ("priority", "octet"),
    ("correlation_id", "shortstr"),
    ("reply_to", "shortstr"),
    ("expiration", "shortstr"),
    ("message_id", "shortstr"),
    ("timestamp", "timestamp"),
    ("type", "shortstr"),
    ("user_id", "shortstr"),
    ("app_id", "shortstr"),
    ("cluster_id", "shortstr"),
]


def decode_properties(raw: bytes):
    """Basic properties (flags and list, as on the wire) as [[name, value]]."""
    r = _Reader(raw)
    flags = []
    while True:
        word = r.unpack(">H")
        flags.extend(bool(word & (1 << (15 - i))) for i in range(15))
        if not word & 1:
            break
    out = []
    try:
        for (name, kind), present in zip(_PROPERTIES, flags):
            if not present:
                continue
            if kind == "shortstr":
                out.append([name, _text(r.take(r.unpack(">B")))])
            elif kind == "octet":
                out.append([name, r.unpack(">B")])
            elif kind == "timestamp":
                out.append([name, r.unpack(">Q")])
            else:
                out.append([name, _table(r)])
        if any(flags[len(_PROPERTIES) :]):
            out.append(["unknown_flags", [i for i, f in enumerate(flags) if f and i >= len(_PROPERTIES)]])
        if r.at != len(raw):
            out.append(["trailing_bytes", len(raw) - r.at])
    except (ValueError, struct.error) as e:
        out.append(["undecodable", str(e)])
    return out


# ---- method frames ----


def _plain(v):
    """A JSON-friendly copy of a pika-decoded value."""
    if isinstance(v, bytes):
        return _text(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in sorted(v.items())}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, datetime.datetime):
        return v.isoformat()
    return v


def method_event(method) -> dict:
    ev = {"m": method.NAME}
    for k, v in vars(method).items():
        if k.startswith("_") or k == "ticket":
            continue
        if method.NAME == "Connection.Start" and k == "server_properties":
            ev["product"] = _plain(v.get("product"))
            ev["server_property_keys"] = sorted(str(x) for x in v)
            caps = v.get("capabilities") or {}
            ev["capabilities"] = sorted(str(c) for c, on in caps.items() if on)
            continue
        ev[k] = _plain(v)
    return ev


def body_summary(body: bytes):
    if len(body) <= 64:
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return "0x" + body.hex()
    return {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()[:16]}


HANDSHAKE = {"Connection.Start", "Connection.Tune", "Connection.OpenOk"}


class ConnRecorder:
    """The frames one connection receives, into the scenario's streams
    (`<label>/ch<N>`)."""

    def __init__(self, streams: dict, label: str, keep_handshake: bool):
        self.streams = streams
        self.label = label
        self.keep_handshake = keep_handshake
        self.active = True
        # Channel -> the method event whose content is being received.
        self.content = {}

    def stream(self, ch: int) -> list:
        return self.streams.setdefault(f"{self.label}/ch{ch}", [])

    def on_frame(self, f):
        if not self.active or isinstance(f, (pika.frame.Heartbeat, pika.frame.ProtocolHeader)):
            return
        ch = f.channel_number
        if isinstance(f, pika.frame.Method):
            ev = method_event(f.method)
            if ev["m"] in HANDSHAKE and not self.keep_handshake:
                return
            self.stream(ch).append(ev)
            if ev["m"] in ("Basic.Deliver", "Basic.GetOk", "Basic.Return"):
                self.content[ch] = ev
        elif isinstance(f, pika.frame.Header):
            ev = self.content.get(ch)
            if ev is None:
                self.stream(ch).append({"m": "unexpected content header"})
                return
            ev["props"] = decode_properties(getattr(f, "raw_payload", b"")[12:])
            ev["body_size"] = f.body_size
            ev["body_frames"] = 0
            ev["_body"] = bytearray()
            if f.body_size == 0:
                self._finish(ch, ev)
        elif isinstance(f, pika.frame.Body):
            ev = self.content.get(ch)
            if ev is None or "_body" not in ev:
                self.stream(ch).append({"m": "unexpected content body", "bytes": len(f.fragment)})
                return
            ev["_body"] += f.fragment
            ev["body_frames"] += 1
            if len(ev["_body"]) >= ev["body_size"]:
                self._finish(ch, ev)

    def _finish(self, ch, ev):
        ev["body"] = body_summary(bytes(ev.pop("_body")))
        self.content.pop(ch, None)
