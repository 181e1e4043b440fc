// RabbitMQ tutorial 5, "Topics" (emit_log_topic.js and
// receive_logs_topic.js), with amqplib.
//
//     topics.js receive HOST:PORT EXPECTED BINDING_KEY...
//     topics.js emit HOST:PORT END_KEY ROUTING_KEY...
//
// The topic exchange 'topic_logs'. A receiver binds an exclusive
// server-named queue once per binding key, prints `ready QUEUE`, and takes
// messages until "end"; it fails unless it got exactly the routing keys in
// EXPECTED (joined with ','), each once, in order. The emitter publishes one
// message per ROUTING_KEY (its body is the key), then "end" with END_KEY.

const { report, fail, run } = require('./tutorial');
const { receiveUntilEnd, emit } = require('./logs');

const [role, addr, ...rest] = process.argv.slice(2);
if (role === 'emit' && rest.length >= 2) {
  run(async () => {
    const keys = rest.slice(1);
    await emit(addr, 'topic_logs', 'topic', keys.map((k) => [k, k]), rest[0]);
    report({ sent: keys.length });
  });
} else if (role === 'receive' && rest.length >= 2) {
  run(async () => {
    const expected = rest[0].split(',').filter((e) => e);
    const label = (m, text) => {
      if (text !== m.fields.routingKey) fail(`message ${text} arrived with routing key ${m.fields.routingKey}`);
      return text;
    };
    const { queue, received } = await receiveUntilEnd(addr, 'topic_logs', 'topic', rest.slice(1), expected, label);
    report({ queue, received });
  });
} else fail('usage: topics.js receive HOST:PORT EXPECTED BINDING_KEY... | emit HOST:PORT END_KEY ROUTING_KEY...');
