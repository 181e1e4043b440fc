// RabbitMQ tutorial 2, "Work Queues" (new_task.js and worker.js), with amqplib.
//
//     work_queues.js new_task HOST:PORT COUNT STOPS
//     work_queues.js worker HOST:PORT [--die-after N]
//
// new_task sends COUNT tasks ("task-I" followed by I % 3 dots) to the durable
// queue 'task_queue' as persistent messages, then STOPS "stop" messages (one
// per worker that should end).
//
// A worker asserts the durable queue, takes one task at a time (prefetch(1)),
// "works" 50 ms per dot (the tutorial waits one second per dot) and
// acknowledges it when done. It prints `ready` once consuming,
// `done TASK redelivered=BOOL` after each acknowledgement, and on a "stop"
// message cancels its consumer, acknowledges the stop and reports what it
// did. With --die-after N it completes N tasks, then kills itself with
// SIGKILL on receiving the next one (printing `dying TASK` first), leaving
// that task unacknowledged.

const { connect, say, report, fail, run } = require('./tutorial');

const queue = 'task_queue';
const WORK_PER_DOT_MS = 50;
const taskBody = (i) => `task-${i}${'.'.repeat(i % 3)}`;

async function newTask(addr, count, stops) {
  const connection = await connect(addr);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true });
  const messages = [...Array(count).keys()].map(taskBody).concat(Array(stops).fill('stop'));
  for (const message of messages) channel.sendToQueue(queue, Buffer.from(message), { persistent: true });
  await channel.close();
  await connection.close();
  report({ sent: count, stops });
}

async function worker(addr, dieAfter) {
  const connection = await connect(addr);
  const channel = await connection.createChannel();
  await channel.assertQueue(queue, { durable: true });
  await channel.prefetch(1);
  const done = [];
  const redelivered = [];
  let stopped;
  const stop = new Promise((resolve) => {
    stopped = resolve;
  });
  let consumerTag;
  const onMessage = async (message) => {
    const task = message.content.toString();
    if (task === 'stop') {
      await channel.cancel(consumerTag);
      channel.ack(message);
      stopped();
      return;
    }
    if (done.includes(task)) fail(`task ${task} delivered to this worker again after it was acknowledged`);
    if (dieAfter !== null && done.length === dieAfter) {
      say(`dying ${task}`);
      process.kill(process.pid, 'SIGKILL');
    }
    const dots = task.split('.').length - 1;
    setTimeout(() => {
      channel.ack(message);
      done.push(task);
      if (message.fields.redelivered) redelivered.push(task);
      say(`done ${task} redelivered=${message.fields.redelivered ? 'True' : 'False'}`);
    }, dots * WORK_PER_DOT_MS);
  };
  ({ consumerTag } = await channel.consume(queue, onMessage, { noAck: false }));
  say('ready');
  await stop;
  // amqplib writes each channel's frames and the connection's own through
  // separate buffers: closing the channel first makes sure the last
  // publishes and acks are sent before connection.close.
  await channel.close();
  await connection.close();
  report({ done, redelivered });
}

const args = process.argv.slice(2);
if (args.length === 4 && args[0] === 'new_task') run(() => newTask(args[1], Number(args[2]), Number(args[3])));
else if (args.length === 2 && args[0] === 'worker') run(() => worker(args[1], null));
else if (args.length === 4 && args[0] === 'worker' && args[2] === '--die-after') {
  run(() => worker(args[1], Number(args[3])));
} else fail('usage: work_queues.js new_task HOST:PORT COUNT STOPS | worker HOST:PORT [--die-after N]');
