"""Alert rules declared in YAML, validated when the stream starts.

Example (``apps/finance_monitor/demo/rules.yaml`` is the default)::

    windows: {short: 15m, baseline: 1h}   # named sliding event-time windows
    allowed_lateness: 2m                  # out-of-order tolerance
    cooldown: 30m                         # default per (ticker, rule)
    evidence: 3                           # messages quoted per alert
    rules:
      - {name: negative_share, kind: negative_share, window: short, threshold: 0.6, min_count: 5}
      - {name: sentiment_drop, kind: zscore_drop, window: short, baseline: baseline, z: 3.0, min_count: 5}
      - {name: volume_burst, kind: volume_burst, window: short, baseline: baseline, factor: 4.0, min_count: 10}

Kinds: ``negative_share`` (share of negative messages in ``window`` > ``threshold`` with at
least ``min_count`` messages); ``zscore_drop`` (the window's mean sentiment lies ``z`` standard
errors below the mean of the rest of ``baseline``, which needs ``min_baseline`` messages);
``volume_burst`` (the window's count is ``factor`` times what the rest of ``baseline``
predicts for a window of that length). Every problem found is reported at once, each
naming the key, the value and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d)?\s*$")
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
KINDS = {
    # kind -> (parameter that must be given, its check, what it must be, needs a baseline window)
    "negative_share": ("threshold", lambda v: 0 < v < 1, "a share between 0 and 1 (exclusive)", False),
    "zscore_drop": ("z", lambda v: v > 0, "a positive number of standard errors", True),
    "volume_burst": ("factor", lambda v: v > 1, "a ratio above 1", True),
}
RULE_KEYS = {"name", "kind", "window", "baseline", "threshold", "z", "factor", "min_count", "min_baseline", "cooldown"}


class RulesError(ValueError):
    """An invalid rules file; the message lists every problem with its key and the fix."""


@dataclass(frozen=True)
class Rule:
    """One validated rule; ``value`` is its threshold, z or factor, by ``kind``."""

    name: str
    kind: str
    window: str
    value: float
    min_count: int
    baseline: str | None = None
    min_baseline: int = 10
    cooldown_s: float = 1800.0


@dataclass(frozen=True)
class RulesConfig:
    """Windows (name -> seconds), lateness, evidence size and the rules."""

    windows: dict[str, float]
    rules: tuple[Rule, ...]
    allowed_lateness_s: float = 120.0
    evidence: int = 3

    @property
    def longest_window_s(self) -> float:
        return max(self.windows.values())


def parse_duration(value: object) -> float | None:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"1h"``, ``"1.5d"``; None when not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if value >= 0 else None
    if isinstance(value, str) and (match := DURATION.match(value)):
        return float(match.group(1)) * UNITS[match.group(2)]
    return None


def _number(raw: dict, key: str, where: str, problems: list[str], default=None, integer: bool = False):
    value = raw.get(key, default)
    kind = int if integer else int | float
    if isinstance(value, bool) or not isinstance(value, kind):
        problems.append(f"{where}.{key} is {value!r}; expected {'an integer' if integer else 'a number'}")
        return None
    return value


def _rule(raw: object, index: int, windows: dict[str, float], cooldown: float, problems: list[str]) -> Rule | None:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where} is {raw!r}; expected a mapping with name, kind, window, ...")
        return None
    unknown = sorted(set(raw) - RULE_KEYS)
    if unknown:
        problems.append(f"{where} has unknown key(s) {unknown}; allowed: {sorted(RULE_KEYS)}")
    name, kind = raw.get("name"), raw.get("kind")
    if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.-]+$", name or ""):
        problems.append(f"{where}.name is {name!r}; expected a word such as 'negative_share'")
    if kind not in KINDS:
        problems.append(f"{where}.kind is {kind!r}; expected one of {sorted(KINDS)}")
        return None
    parameter, check, meaning, needs_baseline = KINDS[kind]
    value = _number(raw, parameter, where, problems)
    if value is not None and not check(value):
        problems.append(f"{where}.{parameter} is {value!r}; expected {meaning}")
    window, baseline = raw.get("window"), raw.get("baseline")
    if window not in windows:
        problems.append(f"{where}.window is {window!r}; expected one of the windows {sorted(windows)}")
    if needs_baseline:
        if baseline not in windows:
            problems.append(f"{where}.baseline is {baseline!r}; kind {kind} needs one of the windows {sorted(windows)}")
        elif window in windows and windows[baseline] <= windows[window]:
            problems.append(f"{where}.baseline {baseline!r} ({windows[baseline]:g}s) must be longer than "
                            f"window {window!r} ({windows[window]:g}s)")
    elif baseline is not None:
        problems.append(f"{where}.baseline is set but kind {kind} does not use one; remove it")
    min_count = _number(raw, "min_count", where, problems, default=5, integer=True)
    if min_count is not None and min_count < 1:
        problems.append(f"{where}.min_count is {min_count}; expected at least 1")
    min_baseline = _number(raw, "min_baseline", where, problems, default=10, integer=True)
    if min_baseline is not None and min_baseline < 2:
        problems.append(f"{where}.min_baseline is {min_baseline}; expected at least 2")
    rule_cooldown = parse_duration(raw.get("cooldown", cooldown))
    if rule_cooldown is None:
        problems.append(f"{where}.cooldown is {raw.get('cooldown')!r}; expected a duration such as '30m'")
    if any(p.startswith(where) for p in problems):
        return None
    return Rule(name=name, kind=kind, window=window, value=float(value), min_count=min_count,
                baseline=baseline if needs_baseline else None, min_baseline=min_baseline, cooldown_s=rule_cooldown)


def rules_from_dict(data: object, source: str = "rules") -> RulesConfig:
    """Validate a parsed rules document; raises RulesError listing every problem."""
    if not isinstance(data, dict):
        raise RulesError(f"{source}: expected a mapping with 'windows' and 'rules', got {type(data).__name__}")
    problems: list[str] = []
    unknown = sorted(set(data) - {"windows", "rules", "allowed_lateness", "cooldown", "evidence"})
    if unknown:
        problems.append(f"unknown top-level key(s) {unknown}; allowed: windows, rules, allowed_lateness, cooldown, "
                        "evidence")
    windows: dict[str, float] = {}
    raw_windows = data.get("windows")
    if not isinstance(raw_windows, dict) or not raw_windows:
        problems.append(f"windows is {raw_windows!r}; expected a mapping name -> duration, e.g. {{short: 15m}}")
    else:
        for name, value in raw_windows.items():
            seconds = parse_duration(value)
            if seconds is None or seconds <= 0:
                problems.append(f"windows.{name} is {value!r}; expected a positive duration such as '15m' or '1h'")
            else:
                windows[str(name)] = seconds
    lateness = parse_duration(data.get("allowed_lateness", "2m"))
    if lateness is None:
        problems.append(f"allowed_lateness is {data.get('allowed_lateness')!r}; expected a duration such as '2m'")
    cooldown = parse_duration(data.get("cooldown", "30m"))
    if cooldown is None:
        problems.append(f"cooldown is {data.get('cooldown')!r}; expected a duration such as '30m'")
    evidence = data.get("evidence", 3)
    if isinstance(evidence, bool) or not isinstance(evidence, int) or not 1 <= evidence <= 50:
        problems.append(f"evidence is {evidence!r}; expected an integer from 1 to 50")
    raw_rules = data.get("rules")
    rules: list[Rule] = []
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.append(f"rules is {raw_rules!r}; expected a non-empty list of rules")
    else:
        for index, raw in enumerate(raw_rules):
            rule = _rule(raw, index, windows, cooldown if cooldown is not None else 1800.0, problems)
            if rule is not None:
                rules.append(rule)
        names = [r.name for r in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            problems.append(f"rule name(s) {duplicates} are used more than once; names must be unique")
    if problems:
        raise RulesError(f"{source} is invalid:\n  - " + "\n  - ".join(problems))
    return RulesConfig(windows=windows, rules=tuple(rules), allowed_lateness_s=lateness, evidence=evidence)


def load_rules(path: str | Path) -> RulesConfig:
    """Read and validate a rules YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RulesError(f"rules file {path} does not exist; pass --rules with a YAML file "
                         "(see apps/finance_monitor/demo/rules.yaml)") from None
    except yaml.YAMLError as error:
        raise RulesError(f"rules file {path} is not valid YAML: {error}") from None
    return rules_from_dict(data, str(path))
