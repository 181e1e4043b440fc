// RabbitMQ tutorial 3, "Publish/Subscribe" (emit_log.js and
// receive_logs.js), with amqplib.
//
//     publish_subscribe.js receive HOST:PORT COUNT
//     publish_subscribe.js emit HOST:PORT COUNT
//     publish_subscribe.js check_gone HOST:PORT QUEUE...
//
// A receiver asserts the fanout exchange 'logs', an exclusive server-named
// queue (assertQueue('', { exclusive: true })), binds it, prints
// `ready QUEUE` once consuming, and takes messages until "end"; it fails
// unless it got every log line once, in order. The emitter publishes COUNT
// log lines, then "end". check_gone fails unless each named queue is gone (a
// checkQueue is refused with 404), as exclusive queues are once their
// connection closed.

const { connect, report, fail, run } = require('./tutorial');
const { receiveUntilEnd, emit } = require('./logs');

const line = (i) => `log line #${i}`;
const lines = (count) => [...Array(count).keys()].map(line);

async function checkGone(addr, queues) {
  const connection = await connect(addr);
  for (const queue of queues) {
    const channel = await connection.createChannel();
    channel.on('error', () => {});
    try {
      await channel.checkQueue(queue);
      fail(`exclusive queue ${queue} still exists after its connection closed`);
    } catch (err) {
      if (err.code !== 404) fail(`checkQueue ${queue}: expected 404, got ${err.code} ${err.message}`);
    }
  }
  await connection.close();
  report({ gone: queues });
}

const [role, addr, ...rest] = process.argv.slice(2);
if (role === 'emit') {
  run(async () => {
    await emit(addr, 'logs', 'fanout', lines(Number(rest[0])).map((l) => ['', l]), '');
    report({ sent: Number(rest[0]) });
  });
} else if (role === 'receive') {
  run(async () => {
    const count = Number(rest[0]);
    const { queue, received } = await receiveUntilEnd(addr, 'logs', 'fanout', [''], lines(count), (_m, t) => t);
    report({ queue, received: received.length });
  });
} else if (role === 'check_gone' && rest.length > 0) {
  run(() => checkGone(addr, rest));
} else fail('usage: publish_subscribe.js emit|receive HOST:PORT COUNT | check_gone HOST:PORT QUEUE...');
