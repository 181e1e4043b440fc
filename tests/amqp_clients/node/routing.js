// RabbitMQ tutorial 4, "Routing" (emit_log_direct.js and
// receive_logs_direct.js), with amqplib.
//
//     routing.js receive HOST:PORT EXPECTED SEVERITY...
//     routing.js emit HOST:PORT END_SEVERITY SEVERITY:MESSAGE...
//
// The direct exchange 'direct_logs'. A receiver binds an exclusive
// server-named queue once per severity, prints `ready QUEUE`, and takes
// messages until "end"; it fails unless it got exactly EXPECTED
// (SEVERITY:MESSAGE items joined with ','), in order. The emitter publishes
// each MESSAGE with its SEVERITY as routing key, then "end" with END_SEVERITY.

const { report, fail, run } = require('./tutorial');
const { receiveUntilEnd, emit } = require('./logs');

const [role, addr, ...rest] = process.argv.slice(2);
if (role === 'emit' && rest.length >= 2) {
  run(async () => {
    const pairs = rest.slice(1).map((p) => {
      const at = p.indexOf(':');
      return [p.slice(0, at), p.slice(at + 1)];
    });
    await emit(addr, 'direct_logs', 'direct', pairs, rest[0]);
    report({ sent: pairs.length });
  });
} else if (role === 'receive' && rest.length >= 2) {
  run(async () => {
    const expected = rest[0].split(',').filter((e) => e);
    const severities = rest.slice(1);
    const label = (m, text) => `${m.fields.routingKey}:${text}`;
    const { queue, received } = await receiveUntilEnd(addr, 'direct_logs', 'direct', severities, expected, label);
    report({ queue, received });
  });
} else fail('usage: routing.js receive HOST:PORT EXPECTED SEVERITY... | emit HOST:PORT END SEVERITY:MESSAGE...');
