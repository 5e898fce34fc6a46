"""Scenarios: a timeline of faults, fault clears, setpoint changes and line commands.

    name: standard campaign
    description: every physical fault of the catalogue, one after another
    seed: 1
    hours: 11
    warm_start: true
    events:
      - at: 20m
        fault: refill_disturbance      # a kind from the catalogue (`plant faults`)
        target: api_feeder             # optional: the catalogue's default target
        magnitude: 0.3                 # optional: the catalogue's default magnitude
        duration: 5m                   # optional: 0 = until cleared
      - at: 10h
        clear: diverter_stuck          # ends the active fault of that kind (target optional)
      - at: 10h1m
        line: reset                    # start | stop | abort | reset
      - at: 2h
        setpoint: {tag: press.fill_depth_sp, value: 10.0}

Times take the `plant simulate` forms (90, 90s, 10m, 1.5h, and also 1h30m). Every event may
carry a `reason`; they run as user `scenario` unless the runner says otherwise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.faults import CATALOGUE

_TIME = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$"
)
LINE_ACTIONS = ("start", "stop", "abort", "reset")


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the event and the problem."""


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    at_s: float
    action: str  # fault | clear | setpoint | line
    kind: str = ""  # the fault kind, for fault and clear
    target: str | None = None  # the fault's module, for fault and clear
    magnitude: float | None = None
    duration_s: float = 0.0
    tag: str = ""
    value: Any = None
    line: str = ""
    reason: str = ""

    def describe(self) -> str:
        if self.action == "fault":
            mag = "" if self.magnitude is None else f" {self.magnitude:g}"
            return f"inject {self.kind}{mag} on {self.target or 'default target'}"
        if self.action == "clear":
            return f"clear {self.kind}"
        if self.action == "setpoint":
            return f"set {self.tag} = {self.value}"
        return f"line {self.line}"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str = ""
    seed: int = 0
    hours: float = 1.0
    warm_start: bool = True
    events: tuple[ScenarioEvent, ...] = field(default_factory=tuple)


def parse_time(value: Any, where: str) -> float:
    """Seconds from a number or from `1h30m`, `10m`, `90s`, `90`."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _TIME.match(str(value)) if isinstance(value, str) and value.strip() else None
    if not match or not any(match.groups()):
        raise ScenarioError(f"{where}: {value!r} is not a time (examples: 90, 90s, 10m, 1h30m)")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _event(raw: Any, index: int) -> ScenarioEvent:
    where = f"event {index + 1}"
    if not isinstance(raw, dict) or "at" not in raw:
        raise ScenarioError(f"{where}: needs an 'at' time and one action")
    at = parse_time(raw["at"], where)
    reason = str(raw.get("reason", ""))
    actions = [key for key in ("fault", "clear", "setpoint", "line") if key in raw]
    if len(actions) != 1:
        raise ScenarioError(f"{where}: give exactly one of fault, clear, setpoint, line")
    action = actions[0]
    allowed = (
        {"at", "reason", action}
        | ({"target", "magnitude", "duration"} if action == "fault" else set())
        | ({"target"} if action == "clear" else set())
    )
    unknown = set(raw) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)} for a {action} event")
    if action in ("fault", "clear"):
        kind = raw[action]
        if kind not in CATALOGUE:
            raise ScenarioError(f"{where}: unknown fault {kind!r}; known: {', '.join(CATALOGUE)}")
        target = raw.get("target")
        if target is not None and not isinstance(target, str):
            raise ScenarioError(f"{where}: target must be a module id")
        magnitude = raw.get("magnitude")
        if magnitude is not None and (
            isinstance(magnitude, bool) or not isinstance(magnitude, int | float)
        ):
            raise ScenarioError(f"{where}: magnitude must be a number")
        duration = parse_time(raw.get("duration", 0), where)
        return ScenarioEvent(
            at_s=at,
            action=action,
            kind=kind,
            target=target,
            magnitude=None if magnitude is None else float(magnitude),
            duration_s=duration,
            reason=reason,
        )
    if action == "setpoint":
        body = raw["setpoint"]
        if not isinstance(body, dict) or set(body) != {"tag", "value"}:
            raise ScenarioError(f"{where}: setpoint needs exactly 'tag' and 'value'")
        return ScenarioEvent(at, action, tag=str(body["tag"]), value=body["value"], reason=reason)
    line = raw["line"]
    if line not in LINE_ACTIONS:
        raise ScenarioError(f"{where}: line must be one of {', '.join(LINE_ACTIONS)}")
    return ScenarioEvent(at, action, line=line, reason=reason)


def parse_scenario(data: Any, name: str = "scenario") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"{name}: not a mapping of name, events, ...")
    unknown = set(data) - {"name", "description", "seed", "hours", "warm_start", "events"}
    if unknown:
        raise ScenarioError(f"{name}: unknown keys {sorted(unknown)}")
    raw_events = data.get("events") or []
    if not isinstance(raw_events, list):
        raise ScenarioError(f"{name}: events must be a list")
    events = sorted((_event(raw, i) for i, raw in enumerate(raw_events)), key=lambda e: e.at_s)
    seed, hours = data.get("seed", 0), data.get("hours", 1.0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ScenarioError(f"{name}: seed must be an integer")
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours <= 0:
        raise ScenarioError(f"{name}: hours must be a positive number")
    return Scenario(
        name=str(data.get("name", name)),
        description=str(data.get("description", "")),
        seed=seed,
        hours=float(hours),
        warm_start=bool(data.get("warm_start", True)),
        events=tuple(events),
    )


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ScenarioError(f"cannot read {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ScenarioError(f"{path}: not YAML: {error}") from None
    return parse_scenario(data, path.name)


STANDARD_CAMPAIGN = Path(__file__).resolve().parent.parent / "scenarios" / "standard_campaign.yaml"
