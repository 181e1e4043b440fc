"""What the pika tutorial scripts share: the connection as the tutorials
make it (pika.BlockingConnection with pika's defaults, only host and port
given), the report line and the failure exit.

Every script prints progress lines, then its report as one JSON line last;
on anything missing, duplicated or wrong it prints the reason on stderr and
exits with status 1.
"""

import json
import sys

import pika


def connect(addr):
    """A BlockingConnection to HOST:PORT with pika's default parameters."""
    host, port = addr.rsplit(":", 1)
    return pika.BlockingConnection(pika.ConnectionParameters(host=host, port=int(port)))


def say(line):
    print(line, flush=True)


def report(**fields):
    print(json.dumps(fields), flush=True)


def fail(reason):
    print(f"{sys.argv[0]}: {reason}", file=sys.stderr, flush=True)
    sys.exit(1)


def check_sequence(what, got, expected):
    """Fails unless `got` is exactly `expected`, in order: names the first
    difference, and what is missing, duplicated or unexpected."""
    if got == expected:
        return
    missing = [x for x in expected if x not in got]
    duplicated = sorted({x for x in got if got.count(x) > 1})
    unexpected = [x for x in got if x not in expected]
    first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    fail(
        f"{what}: got {len(got)} messages, expected {len(expected)}; first difference at #{first}; "
        f"missing {missing}, duplicated {duplicated}, unexpected {unexpected}"
    )
