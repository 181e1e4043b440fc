// kafkajs: create TOPIC (3 partitions), produce COUNT messages with the
// default acks (all), then consume them all in group GROUP from the
// beginning. Exits non-zero with a reason when a message is missing,
// duplicated or altered.
//
// usage: node kafkajs_roundtrip.js BOOTSTRAP TOPIC GROUP COUNT
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, group, countArg] = process.argv.slice(2);
const count = Number(countArg);

function fail(reason) {
  console.error(reason);
  process.exit(1);
}

async function main() {
  const kafka = new Kafka({ clientId: 'ringmq-test', brokers: [bootstrap], logLevel: logLevel.WARN });
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  await admin.disconnect();

  const producer = kafka.producer();
  await producer.connect();
  const messages = [];
  for (let i = 0; i < count; i++) messages.push({ key: `k${i}`, value: `kafkajs message ${i}` });
  const acks = [];
  for (let i = 0; i < messages.length; i += 500) {
    acks.push(...(await producer.send({ topic, messages: messages.slice(i, i + 500) })));
  }
  await producer.disconnect();
  for (const a of acks) if (a.errorCode !== 0) fail(`produce error ${JSON.stringify(a)}`);

  const consumer = kafka.consumer({ groupId: group });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Map();
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const v = message.value.toString();
      if (seen.has(v)) fail(`duplicate delivery of ${v} at ${partition}/${message.offset}`);
      seen.set(v, [partition, Number(message.offset)]);
      if (seen.size === count) done();
    },
  });
  const timer = setTimeout(() => fail(`timed out with ${seen.size} of ${count} consumed`), 90000);
  await finished;
  clearTimeout(timer);
  await consumer.commitOffsets([]).catch(() => {});
  await consumer.disconnect();

  const admin2 = kafka.admin();
  await admin2.connect();
  const committed = await admin2.fetchOffsets({ groupId: group, topics: [topic] });
  await admin2.disconnect();
  for (let i = 0; i < count; i++) if (!seen.has(`kafkajs message ${i}`)) fail(`message ${i} never consumed`);
  const ends = {};
  for (const [p, o] of seen.values()) ends[p] = Math.max(ends[p] ?? -1, o + 1);
  for (const t of committed) {
    for (const p of t.partitions) {
      if (ends[p.partition] !== undefined && Number(p.offset) !== ends[p.partition]) {
        fail(`partition ${p.partition}: committed ${p.offset}, expected ${ends[p.partition]}`);
      }
    }
  }
  console.log(JSON.stringify({ produced: count, consumed: seen.size, committed }));
}

main().catch((e) => fail(`kafkajs error: ${e.stack || e}`));
