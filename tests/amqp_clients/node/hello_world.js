// RabbitMQ tutorial 1, "Hello World!" (send.js and receive.js), with amqplib.
//
//     hello_world.js send HOST:PORT COUNT
//     hello_world.js receive HOST:PORT COUNT
//
// Both assert the queue 'hello'. The sender sends COUNT messages to it; the
// receiver consumes with noAck, stops after COUNT, and fails unless it got
// each message once, in order, and the queue is then empty.

const { connect, say, report, fail, checkSequence, run } = require('./tutorial');

const queue = 'hello';
const body = (i) => `Hello World! #${i}`;

async function send(addr, count) {
  const connection = await connect(addr);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: false });
  for (let i = 0; i < count; i++) channel.sendToQueue(queue, Buffer.from(body(i)));
  await channel.close();
  await connection.close();
  report({ sent: count });
}

async function receive(addr, count) {
  const connection = await connect(addr);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: false });
  const received = [];
  let allIn;
  const done = new Promise((resolve) => {
    allIn = resolve;
  });
  const { consumerTag } = await channel.consume(
    queue,
    (message) => {
      received.push(message.content.toString());
      if (received.length === count) allIn();
    },
    { noAck: true },
  );
  say('ready');
  await done;
  await channel.cancel(consumerTag);
  checkSequence('hello', received, [...Array(count).keys()].map(body));
  const { messageCount } = await channel.checkQueue(queue);
  if (messageCount !== 0) fail(`${messageCount} messages left in 'hello' after all ${count} were received`);
  await connection.close();
  report({ received: received.length });
}

const [role, addr, count] = process.argv.slice(2);
if (role === 'send') run(() => send(addr, Number(count)));
else if (role === 'receive') run(() => receive(addr, Number(count)));
else fail('usage: hello_world.js send|receive HOST:PORT COUNT');
