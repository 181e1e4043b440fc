"""confluent-kafka (librdkafka under Python) consumer groups, in two phases
around a broker SIGKILL that the calling test performs.

phase1: produce 600 messages over the 6 partitions of TOPIC; 3 consumers
  subscribe in GROUP and must each get 2 partitions; they consume, committing
  each message synchronously; one consumer closes and the other two must take
  over all 6 partitions and finish. No message may be missing, and none may be
  delivered again below an offset already committed. Then 300 more messages
  are produced and not consumed; the committed offsets go to STATE (JSON).
phase2 (after the broker was killed and restarted): one consumer joins GROUP;
  each partition must resume exactly at its committed offset from STATE and
  the 300 remaining messages must all arrive.

usage: confluent_group.py BOOTSTRAP TOPIC GROUP phase1|phase2 STATE
"""
import json
import sys
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

bootstrap, topic, group, phase, state_path = sys.argv[1:6]
PARTITIONS = 6


def produce(first, count):
    p = Producer({"bootstrap.servers": bootstrap})
    errors = []
    for i in range(first, first + count):
        p.produce(topic, value=b"confluent %d" % i, partition=i % PARTITIONS,
                  on_delivery=lambda err, msg: err and errors.append(err))
    if p.flush(60) != 0 or errors:
        sys.exit(f"produce failed: {errors[:3]}")


def consumer(name):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": name,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })


class Member(threading.Thread):
    """One group member polling in its own thread, committing every message."""

    def __init__(self, name, delivered, committed, lock, violations):
        super().__init__(daemon=True)
        self.name, self.stop, self.leave = name, threading.Event(), threading.Event()
        self.delivered, self.committed, self.lock, self.violations = delivered, committed, lock, violations
        self.assignment = []
        self.closed = threading.Event()

    def run(self):
        c = consumer(self.name)
        c.subscribe([topic], on_assign=self.assigned, on_revoke=self.revoked)
        try:
            while not self.stop.is_set() and not self.leave.is_set():
                m = c.poll(0.2)
                if m is None:
                    continue
                if m.error():
                    self.violations.append(f"{self.name}: {m.error()}")
                    continue
                with self.lock:
                    floor = self.committed.get(m.partition(), 0)
                    if m.offset() < floor:
                        self.violations.append(f"{self.name}: {m.partition()}/{m.offset()} delivered again below committed {floor}")
                    self.delivered.setdefault(m.value(), []).append((m.partition(), m.offset()))
                try:
                    c.commit(message=m, asynchronous=False)
                    with self.lock:
                        self.committed[m.partition()] = max(self.committed.get(m.partition(), 0), m.offset() + 1)
                except KafkaException as e:
                    # A commit refused during a rebalance is legal; the next owner re-reads from the last committed offset.
                    print(f"{self.name}: commit refused: {e}", file=sys.stderr)
        finally:
            c.close()
            self.closed.set()

    def assigned(self, c, parts):
        self.assignment = sorted(p.partition for p in parts)

    def revoked(self, c, parts):
        self.assignment = []


def wait_for(cond, timeout_s, what):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


if phase == "phase1":
    produce(0, 600)
    delivered, committed, lock, violations = {}, {}, threading.Lock(), []
    members = [Member(f"m{i}", delivered, committed, lock, violations) for i in range(3)]
    for m in members:
        m.start()
    wait_for(lambda: sorted(len(m.assignment) for m in members) == [2, 2, 2]
             and sorted(p for m in members for p in m.assignment) == list(range(6)), 60,
             "3 members with 2 partitions each")
    print("three members:", [m.assignment for m in members], file=sys.stderr)
    members[2].leave.set()
    wait_for(members[2].closed.is_set, 30, "member m2 to leave")
    wait_for(lambda: sorted(p for m in members[:2] for p in m.assignment) == list(range(6)), 60,
             "the two remaining members to take over all 6 partitions")
    print("two members:", [m.assignment for m in members[:2]], file=sys.stderr)
    # Committed as well as delivered: a commit refused in a rebalance means
    # the message comes again to the partition's next owner, which commits it.
    def all_committed():
        with lock:
            return len(delivered) == 600 and all(committed.get(p) == 100 for p in range(PARTITIONS))

    wait_for(all_committed, 60, "all 600 messages delivered and committed")
    for m in members[:2]:
        m.stop.set()
    for m in members:
        m.join(30)
    if violations:
        sys.exit("violations: " + "; ".join(violations[:5]))
    missing = [i for i in range(600) if b"confluent %d" % i not in delivered]
    if missing:
        sys.exit(f"missing messages: {missing[:5]}")
    produce(600, 300)
    # What the broker says was committed, not what we think we committed.
    c = consumer("checker")
    stored = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=30)
    c.close()
    state = {tp.partition: tp.offset for tp in stored}
    if state != {p: 100 for p in range(PARTITIONS)}:
        sys.exit(f"committed offsets {state}, expected 100 on every partition")
    json.dump(state, open(state_path, "w"))
    print(json.dumps({"phase": 1, "delivered": len(delivered), "committed": state}))
elif phase == "phase2":
    state = {int(k): v for k, v in json.load(open(state_path)).items()}
    c = consumer("after-restart")
    c.subscribe([topic])
    first, got = {}, {}
    deadline = time.time() + 90
    while len(got) < 300 and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        first.setdefault(m.partition(), m.offset())
        if m.offset() < state[m.partition()]:
            sys.exit(f"{m.partition()}/{m.offset()} delivered again below committed {state[m.partition()]}")
        got[m.value()] = (m.partition(), m.offset())
    c.close()
    if first != state:
        sys.exit(f"resumed at {first}, committed were {state}")
    missing = [i for i in range(600, 900) if b"confluent %d" % i not in got]
    if missing:
        sys.exit(f"missing after restart: {missing[:5]}")
    print(json.dumps({"phase": 2, "delivered": len(got), "resumed_at": first}))
else:
    sys.exit(f"unknown phase {phase}")
