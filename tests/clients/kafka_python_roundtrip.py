"""kafka-python 3 with its default producer settings (idempotence on,
acks=all): produce COUNT messages to TOPIC, then consume them all in group
GROUP from the earliest offset, committing as it goes. Exits non-zero with a
reason when a message is missing, duplicated or altered.

usage: kafka_python_roundtrip.py BOOTSTRAP TOPIC GROUP COUNT
"""
import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="ringmq-test-admin")
admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
admin.close()

producer = KafkaProducer(bootstrap_servers=bootstrap)
assert producer.config["enable_idempotence"] in (True, None) or producer.config["acks"] in ("all", -1), producer.config
futures = [producer.send(topic, key=b"k%d" % i, value=b"kafka-python message %d" % i) for i in range(count)]
producer.flush(timeout=60)
acked = [f.get(timeout=60) for f in futures]
producer.close()
offsets = {}
for md in acked:
    offsets.setdefault(md.partition, []).append(md.offset)
for part, offs in offsets.items():
    if offs != list(range(offs[0], offs[0] + len(offs))):
        sys.exit(f"partition {part}: acked offsets are not contiguous: {offs[:10]}...")

consumer = KafkaConsumer(
    topic,
    bootstrap_servers=bootstrap,
    group_id=group,
    auto_offset_reset="earliest",
    enable_auto_commit=False,
)
seen = {}
deadline = time.time() + 90
while len(seen) < count and time.time() < deadline:
    batch = consumer.poll(timeout_ms=1000)
    for tp, records in batch.items():
        for r in records:
            if r.value in seen:
                sys.exit(f"duplicate delivery of {r.value!r} at {tp.partition}/{r.offset}")
            seen[r.value] = (tp.partition, r.offset)
    if batch:
        consumer.commit()
assignment = sorted(tp.partition for tp in consumer.assignment())
committed = {p: consumer.committed(__import__("kafka").TopicPartition(topic, p)) for p in assignment}
consumer.close()

missing = [i for i in range(count) if b"kafka-python message %d" % i not in seen]
if missing:
    sys.exit(f"{len(missing)} messages never consumed, first {missing[:5]}")
for p, c in committed.items():
    want = max(o for (pp, o) in seen.values() if pp == p) + 1
    if c != want:
        sys.exit(f"partition {p}: committed {c}, expected {want}")
print(json.dumps({"produced": count, "consumed": len(seen), "assignment": assignment, "committed": committed}))
