"""ringmq against RabbitMQ, scenario by scenario: starts both brokers, runs
every scenario on each with pika, compares what the client observed and
prints a table. Exits 0 when every difference is in the allow-list.

Run through `scripts/amqp-differential/run` (it makes the venv); see README.md.
"""

import argparse
import json
import logging
import os
import re
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import compare
import context
import scenarios
import servers

HERE = Path(__file__).resolve().parent
SCENARIO_TIMEOUT_S = 60
CLOSE_TIMEOUT_S = 10


class TimedOut(Exception):
    pass


def _alarm(_signum, _frame):
    raise TimedOut()


def with_timeout(seconds, fn):
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def abandon(ctx):
    """Drops the sockets of connections that would not close in time."""
    for c in ctx.conns:
        try:
            c._impl._transport._sock.close()  # noqa: SLF001 - last resort
        except Exception:  # noqa: BLE001
            pass


def run_one(port, sid, fn, errors, repeat):
    ctx = context.Ctx(port, sid, repeat)
    try:
        with_timeout(SCENARIO_TIMEOUT_S, lambda: fn(ctx))
    except TimedOut:
        ctx.note("harness", f"scenario did not finish within {SCENARIO_TIMEOUT_S}s")
    except Exception as e:  # noqa: BLE001 - a scenario's failure is an observation
        ctx.note("harness", f"{type(e).__name__}: {e}")
        errors.append(f"{sid}:\n{traceback.format_exc()}")
    try:
        with_timeout(CLOSE_TIMEOUT_S, ctx.finish)
    except TimedOut:
        ctx.note("harness", f"connections did not close within {CLOSE_TIMEOUT_S}s")
        abandon(ctx)
    return ctx.observation()


def run_all(broker, selected, errors, repeat):
    out = {}
    started = time.monotonic()
    for sid, _what, fn in selected:
        out[sid] = run_one(broker.port, sid, fn, errors, repeat)
    print(f"  {broker.name}: {len(selected)} scenarios in {time.monotonic() - started:.1f}s", flush=True)
    return out


def short(v, width=110) -> str:
    s = compare.render(v)
    return s if len(s) <= width else s[: width - 1] + "…"


def table(verdicts, unstable) -> str:
    width = max(len(v.scenario) for v in verdicts)
    lines = [f"{'scenario':<{width}}  result", f"{'-' * width}  -------"]
    for v in verdicts:
        flag = f"  (unstable: {', '.join(unstable[v.scenario])})" if v.scenario in unstable else ""
        status = {"same": "same", "allowed": "same but allowed differences", "differs": "DIFFERS"}[v.status]
        lines.append(f"{v.scenario:<{width}}  {status}{flag}")
        for path, x, y in v.real:
            lines.append(f"{'':<{width}}    {path}")
            lines.append(f"{'':<{width}}      rabbitmq: {short(x)}")
            lines.append(f"{'':<{width}}      ringmq:   {short(y)}")
        for path, x, y, why in v.allowed:
            lines.append(f"{'':<{width}}    allowed {path}: {short(x, 50)} / {short(y, 50)} ({why[:60]})")
    return "\n".join(lines)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ringmq", help="the ringmq binary to compare (required unless --list)")
    p.add_argument("--only", help="run only scenarios whose id matches this regular expression")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--allow", default=str(HERE / "expected-differences.toml"), help="allow-list file")
    p.add_argument("--work-dir", default=str(HERE.parent.parent / "target" / "amqp-differential"))
    p.add_argument("--repeat", type=int, default=1, help="run the scenarios N times on each broker (flags unstable ones)")
    p.add_argument("--keep-scratch", action="store_true", help="keep the brokers' data and logs")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    selected = [s for s in scenarios.SCENARIOS if not args.only or re.search(args.only, s[0])]
    if args.list:
        for sid, what, _ in scenarios.SCENARIOS:
            print(f"{sid:<36} {what}")
        return 0
    if not args.ringmq:
        print("--ringmq PATH is required", file=sys.stderr)
        return 2
    if not selected:
        print(f"no scenario matches {args.only!r}", file=sys.stderr)
        return 2
    allow = compare.load_allow_list(args.allow)
    work = Path(args.work_dir)
    scratch = work / f"run-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rabbit = servers.RabbitMQ(scratch)
    ringmq = servers.Ringmq(scratch, os.path.abspath(args.ringmq))
    errors = []
    rounds = {"rabbitmq": [], "ringmq": []}
    try:
        print("starting the brokers", flush=True)
        rabbit.start()
        ringmq.start()
        ringmq.wait_ready()
        rabbit.wait_ready()
        print(f"  rabbitmq ready: amqp 127.0.0.1:{rabbit.port}", flush=True)
        print(f"running {len(selected)} scenarios x {args.repeat} on each broker", flush=True)
        for repeat in range(1, args.repeat + 1):
            rounds["rabbitmq"].append(run_all(rabbit, selected, errors, repeat))
            rounds["ringmq"].append(run_all(ringmq, selected, errors, repeat))
    finally:
        print("stopping the brokers", flush=True)
        ringmq.stop()
        rabbit.stop()
    return report(args, allow, selected, rounds, errors, work, scratch)


def report(args, allow, selected, rounds, errors, work, scratch) -> int:
    unstable = {}
    # Later repeats' names carry a prefix, which also moves where a reply
    # text longer than a short string is cut: compare texts' first 200 bytes.
    rules = allow.rules + [
        compare.Rule(re.compile(r"repeat\d+\."), "", "names of later repeats"),
        compare.Rule(re.compile(r"^(.{200}).+$", re.S), r"\1", "reply texts cut at 255 bytes"),
    ]
    for broker, obs in rounds.items():
        for sid, _what, _ in selected:
            first = compare.normalize(compare.strip_info(obs[0][sid]), rules)
            for o in obs[1:]:
                d = compare.diff(first, compare.normalize(compare.strip_info(o[sid]), rules))
                if d:
                    unstable.setdefault(sid, []).append(f"{broker} at {d[0][0]}")
                    break
    verdicts = [
        compare.judge(sid, what, rounds["rabbitmq"][0][sid], rounds["ringmq"][0][sid], allow)
        for sid, what, _ in selected
    ]
    text = table(verdicts, unstable)
    real = [v for v in verdicts if v.status == "differs"]
    summary = (
        f"{len(verdicts)} scenarios: {sum(v.status == 'same' for v in verdicts)} same, "
        f"{sum(v.status == 'allowed' for v in verdicts)} same but allowed differences, {len(real)} differ"
    )
    stale = [d for d in allow.differences if d.used == 0]
    out = work / "last"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        old.unlink()
    for broker, obs in rounds.items():
        for i, o in enumerate(obs):
            name = f"{broker}.json" if i == 0 else f"{broker}-repeat{i + 1}.json"
            (out / name).write_text(json.dumps(o, indent=1, ensure_ascii=False))
    (out / "report.txt").write_text(text + "\n\n" + summary + "\n")
    (out / "harness-errors.txt").write_text("\n".join(errors))
    print()
    print(text)
    print()
    print(summary)
    if unstable:
        print(f"unstable between repeats: {', '.join(sorted(unstable))}")
    if stale and not args.only:
        print("allow-list entries that matched nothing (stale?):")
        for d in stale:
            print(f"  {d.scenario}: {d.path.pattern}")
    if errors:
        print(f"{len(errors)} harness errors (tracebacks in {out / 'harness-errors.txt'})")
    print(f"observations: {out}/rabbitmq.json, {out}/ringmq.json")
    if not args.keep_scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    else:
        print(f"brokers' data and logs kept in {scratch}")
    return 1 if real or unstable else 0


if __name__ == "__main__":
    sys.exit(main())
