// What the three log tutorials share (publish/subscribe, routing, topics):
// a receiver on an exclusive server-named queue bound to an exchange, which
// takes messages until "end".

const { connect, say, checkSequence, fail } = require('./tutorial');

// Asserts `exchange` of `type`, an exclusive server-named queue bound once
// per key, prints `ready QUEUE` once consuming, collects `label(message)`
// until a message "end", then fails unless the collected list is `expected`.
async function receiveUntilEnd(addr, exchange, type, keys, expected, label) {
  const connection = await connect(addr);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, type, { durable: false });
  const { queue } = await channel.assertQueue('', { exclusive: true });
  if (!queue) fail('queue.declare-ok named no queue');
  for (const key of keys) await channel.bindQueue(queue, exchange, key);
  const received = [];
  let ended;
  const end = new Promise((resolve) => {
    ended = resolve;
  });
  await channel.consume(
    queue,
    (message) => {
      const text = message.content.toString();
      if (text === 'end') ended();
      else received.push(label(message, text));
    },
    { noAck: true },
  );
  say(`ready ${queue}`);
  await end;
  checkSequence(`queue ${queue} (keys ${JSON.stringify(keys)})`, received, expected);
  await connection.close();
  return { queue, received };
}

// Asserts `exchange`, publishes each [routingKey, body], then "end" with `endKey`.
async function emit(addr, exchange, type, messages, endKey) {
  const connection = await connect(addr);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, type, { durable: false });
  for (const [key, body] of messages) channel.publish(exchange, key, Buffer.from(body));
  channel.publish(exchange, endKey, Buffer.from('end'));
  await channel.close();
  await connection.close();
}

module.exports = { receiveUntilEnd, emit };
