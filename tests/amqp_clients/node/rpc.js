// RabbitMQ tutorial 6, "RPC" (rpc_server.js and rpc_client.js), with amqplib.
//
//     rpc.js server HOST:PORT REQUESTS
//     rpc.js client HOST:PORT N...
//
// The server asserts 'rpc_queue', takes one request at a time (prefetch(1)),
// answers fib(n) to the request's replyTo with its correlationId,
// acknowledges, prints `ready` once consuming and stops after REQUESTS
// requests. The client consumes its exclusive server-named callback queue,
// and for each N sends a request with replyTo and a fresh correlationId,
// then waits for the answer; it fails on a wrong answer or an answer with a
// correlationId it never sent.

const { randomUUID } = require('node:crypto');
const { connect, say, report, fail, run } = require('./tutorial');

const queue = 'rpc_queue';

function fib(n) {
  let [a, b] = [0n, 1n];
  for (let i = 0; i < n; i++) [a, b] = [b, a + b];
  return a;
}

async function server(addr, requests) {
  const connection = await connect(addr);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: false });
  await channel.prefetch(1);
  let served = 0;
  let finished;
  const allServed = new Promise((resolve) => {
    finished = resolve;
  });
  await channel.consume(queue, (message) => {
    const n = parseInt(message.content.toString(), 10);
    channel.sendToQueue(message.properties.replyTo, Buffer.from(fib(n).toString()), {
      correlationId: message.properties.correlationId,
    });
    channel.ack(message);
    served += 1;
    if (served === requests) finished();
  });
  say('ready');
  await allServed;
  // amqplib writes each channel's frames and the connection's own through
  // separate buffers: closing the channel first makes sure the last
  // publishes and acks are sent before connection.close.
  await channel.close();
  await connection.close();
  report({ served });
}

async function client(addr, numbers) {
  const connection = await connect(addr);
  const channel = await connection.createChannel();
  const { queue: replyTo } = await channel.assertQueue('', { exclusive: true });
  const sent = new Set();
  const waiting = new Map();
  await channel.consume(
    replyTo,
    (message) => {
      const id = message.properties.correlationId;
      if (!sent.has(id)) fail(`answer with correlationId ${id}, which this client never sent`);
      const resolve = waiting.get(id);
      if (resolve) {
        waiting.delete(id);
        resolve(message.content.toString());
      }
    },
    { noAck: true },
  );
  for (const n of numbers) {
    const correlationId = randomUUID();
    sent.add(correlationId);
    const answer = new Promise((resolve) => waiting.set(correlationId, resolve));
    channel.sendToQueue(queue, Buffer.from(n.toString()), { correlationId, replyTo });
    const got = await answer;
    if (got !== fib(n).toString()) fail(`fib(${n}): got ${got}, expected ${fib(n)}`);
  }
  await connection.close();
  report({ calls: numbers.length, callback_queue: replyTo });
}

const [role, addr, ...rest] = process.argv.slice(2);
if (role === 'server' && rest.length === 1) run(() => server(addr, Number(rest[0])));
else if (role === 'client' && rest.length >= 1) run(() => client(addr, rest.map(Number)));
else fail('usage: rpc.js server HOST:PORT REQUESTS | client HOST:PORT N...');
