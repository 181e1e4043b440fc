"""aiokafka: produce COUNT messages (acks=all) to TOPIC, then consume them all
in group GROUP from the earliest offset, committing as it goes. Exits non-zero
with a reason when a message is missing, duplicated or altered.

usage: aiokafka_roundtrip.py BOOTSTRAP TOPIC GROUP COUNT
"""
import asyncio
import json
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


async def main():
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, key=b"k%d" % i, value=b"aiokafka message %d" % i) for i in range(count)]
        acked = [await f for f in futures]
    finally:
        await producer.stop()
    offsets = {}
    for md in acked:
        offsets.setdefault(md.partition, []).append(md.offset)
    for part, offs in offsets.items():
        if offs != list(range(offs[0], offs[0] + len(offs))):
            sys.exit(f"partition {part}: acked offsets are not contiguous")

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = {}
    try:
        async def drain():
            while len(seen) < count:
                batch = await consumer.getmany(timeout_ms=1000)
                for tp, records in batch.items():
                    for r in records:
                        if r.value in seen:
                            sys.exit(f"duplicate delivery of {r.value!r} at {tp.partition}/{r.offset}")
                        seen[r.value] = (tp.partition, r.offset)
                if batch:
                    await consumer.commit()

        await asyncio.wait_for(drain(), timeout=90)
        assignment = sorted(tp.partition for tp in consumer.assignment())
        committed = {p: await consumer.committed(TopicPartition(topic, p)) for p in assignment}
    finally:
        await consumer.stop()
    missing = [i for i in range(count) if b"aiokafka message %d" % i not in seen]
    if missing:
        sys.exit(f"{len(missing)} messages never consumed, first {missing[:5]}")
    for p, c in committed.items():
        want = max(o for (pp, o) in seen.values() if pp == p) + 1
        if c != want:
            sys.exit(f"partition {p}: committed {c}, expected {want}")
    print(json.dumps({"produced": count, "consumed": len(seen), "assignment": assignment, "committed": committed}))


asyncio.run(main())
