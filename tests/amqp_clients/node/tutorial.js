// What the amqplib tutorial scripts share: the connection as the tutorials
// make it (amqp.connect with amqplib's defaults, only host and port given),
// the report line and the failure exit.
//
// Every script prints progress lines, then its report as one JSON line
// last; on anything missing, duplicated or wrong it prints the reason on
// stderr and exits with status 1.

const amqp = require('amqplib');

function connect(addr) {
  return amqp.connect(`amqp://${addr}`);
}

function say(line) {
  process.stdout.write(`${line}\n`);
}

function report(fields) {
  process.stdout.write(`${JSON.stringify(fields)}\n`);
}

// Writes to pipes are synchronous on Linux: the reason is out before the exit.
function fail(reason) {
  process.stderr.write(`${process.argv[1]}: ${reason}\n`);
  process.exit(1);
}

// Fails unless `got` is exactly `expected`, in order: names the first
// difference, and what is missing, duplicated or unexpected.
function checkSequence(what, got, expected) {
  if (got.length === expected.length && got.every((x, i) => x === expected[i])) return;
  const missing = expected.filter((x) => !got.includes(x));
  const duplicated = [...new Set(got.filter((x, i) => got.indexOf(x) !== i))];
  const unexpected = got.filter((x) => !expected.includes(x));
  let first = got.findIndex((x, i) => x !== expected[i]);
  if (first < 0) first = Math.min(got.length, expected.length);
  fail(
    `${what}: got ${got.length} messages, expected ${expected.length}; first difference at #${first}; ` +
      `missing ${JSON.stringify(missing)}, duplicated ${JSON.stringify(duplicated)}, ` +
      `unexpected ${JSON.stringify(unexpected)}`,
  );
}

// Runs `main` and turns any error into the failure exit.
function run(main) {
  main().catch((err) => fail(err && err.stack ? err.stack : err));
}

module.exports = { connect, say, report, fail, checkSequence, run };
