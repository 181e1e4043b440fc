"""Comparing two observations of a scenario, and the allow-list of the
differences that are accepted (each with its reason).

The allow-list file (TOML) holds:
- `[[normalize]]` pattern / replace / why: a regular expression substitution
  applied to every string of both observations before comparing (for parts
  that are random by design, like the tail of a server-generated name);
- `[[difference]]` scenario / path / rabbitmq / ringmq / why: a difference
  accepted in one scenario ("*" for any): `path` is a regular expression
  matched against the whole path of the difference (as printed, e.g.
  `streams.c1/ch1[2].reply_text`), `rabbitmq` and `ringmq` regular
  expressions matched against each side's value rendered as JSON.
"""

import difflib
import json
import re
import tomllib
from dataclasses import dataclass, field

MISSING = "<absent>"


@dataclass
class Rule:
    pattern: re.Pattern
    replace: str
    why: str


@dataclass
class Allowed:
    scenario: str
    path: re.Pattern
    rabbitmq: re.Pattern
    ringmq: re.Pattern
    why: str
    used: int = 0


@dataclass
class AllowList:
    rules: list = field(default_factory=list)
    differences: list = field(default_factory=list)


def load_allow_list(path) -> AllowList:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    out = AllowList()
    for r in doc.get("normalize", []):
        out.rules.append(Rule(re.compile(r["pattern"]), r["replace"], _why(r, path)))
    for d in doc.get("difference", []):
        out.differences.append(
            Allowed(
                scenario=d["scenario"],
                path=re.compile(d["path"]),
                rabbitmq=re.compile(d.get("rabbitmq", ".*"), re.S),
                ringmq=re.compile(d.get("ringmq", ".*"), re.S),
                why=_why(d, path),
            )
        )
    return out


def _why(entry, path):
    why = entry.get("why", "").strip()
    if not why:
        raise ValueError(f"{path}: every entry needs a 'why': {entry}")
    return why


def normalize(value, rules):
    if isinstance(value, str):
        for r in rules:
            value = r.pattern.sub(r.replace, value)
        return value
    if isinstance(value, list):
        return [normalize(v, rules) for v in value]
    if isinstance(value, dict):
        return {k: normalize(v, rules) for k, v in value.items()}
    return value


def strip_info(obs):
    """The observation without events marked info (shown, not compared)."""
    streams = {k: [e for e in v if not (isinstance(e, dict) and e.get("info"))] for k, v in obs["streams"].items()}
    return {"notes": obs["notes"], "streams": {k: v for k, v in streams.items() if v}}


def render(v) -> str:
    return v if v is MISSING else json.dumps(v, ensure_ascii=False, sort_keys=True)


def diff(a, b, path=""):
    """[(path, a_value, b_value)] where `a` and `b` differ. Lists are
    aligned like text lines, so one extra event shows as one difference."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{path}.{k}" if path else k
            out += diff(a.get(k, MISSING), b.get(k, MISSING), sub)
        return out
    if isinstance(a, list) and isinstance(b, list):
        return _diff_lists(a, b, path)
    if a == b and type(a) is type(b):
        return []
    return [(path, a, b)]


def _diff_lists(a, b, path):
    ka = [render(x) for x in a]
    kb = [render(x) for x in b]
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, ka, kb, autojunk=False).get_opcodes():
        if op == "equal":
            continue
        if op == "replace" and i2 - i1 == j2 - j1:
            for k in range(i2 - i1):
                out += diff(a[i1 + k], b[j1 + k], f"{path}[{i1 + k}]")
            continue
        for k in range(max(i2 - i1, j2 - j1)):
            x = a[i1 + k] if i1 + k < i2 else MISSING
            y = b[j1 + k] if j1 + k < j2 else MISSING
            at = i1 + k if x is not MISSING else j1 + k
            out += diff(x, y, f"{path}[{at}]") if MISSING not in (x, y) else [(f"{path}[{at}]", x, y)]
    return out


@dataclass
class Verdict:
    scenario: str
    what: str
    status: str  # "same", "allowed", "differs"
    real: list  # [(path, rabbitmq, ringmq)] not allowed
    allowed: list  # [(path, rabbitmq, ringmq, why)]


def judge(sid, what, rabbit_obs, ringmq_obs, allow: AllowList) -> Verdict:
    a = normalize(strip_info(rabbit_obs), allow.rules)
    b = normalize(strip_info(ringmq_obs), allow.rules)
    real, accepted = [], []
    for path, x, y in diff(a, b):
        entry = next((d for d in allow.differences if _accepts(d, sid, path, x, y)), None)
        if entry is None:
            real.append((path, x, y))
        else:
            entry.used += 1
            accepted.append((path, x, y, entry.why))
    status = "differs" if real else ("allowed" if accepted else "same")
    return Verdict(sid, what, status, real, accepted)


def _accepts(d: Allowed, sid, path, x, y) -> bool:
    return (
        d.scenario in ("*", sid)
        and d.path.fullmatch(path) is not None
        and d.rabbitmq.fullmatch(render(x)) is not None
        and d.ringmq.fullmatch(render(y)) is not None
    )
