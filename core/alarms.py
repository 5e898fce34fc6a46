"""Alarm definitions, derived from the tag registry, and the ISA-18.2 alarm lifecycle.

One `AlarmDef` per alarm: a *limit* alarm on an analog tag (HH/H/L/LL, exclusive levels: the
most severe level exceeded is the one active) or a *discrete* alarm (an equipment fault of the
twin, the line tripped, a diagnosis of the supervisory controller). Each has a priority, and a
limit alarm a deadband and on/off delays (ISA-18.2 5.6: the delays keep a noisy value from
chattering; the deadband makes a value that returned cross back by that much first).

Limits come from what the registry and the layout already say: the product's quality limits
(`PRODUCT_SPEC`, HH/LL) with a warning band inside them (H/L), and process limits from the
module parameters (a feeder hopper that stays below its refill level, a press hopper near the
level where the line trips, the blender's residence time outside 20-150 s, the pod's room
outside 20-25 C and 30-50 % RH; shared/domain.md).

`AlarmState` is one alarm's lifecycle (OPC UA Part 9 AlarmConditionType states, ISA-18.2
states): active (and at which level), acknowledged, confirmed, shelved (one-shot or timed),
out of service. Every change is a `Transition` with its time, user and comment; the OPC UA
server turns each into a condition event, `plant kpi` and the dashboards measure alarm load
from them (`core.alarm_measures`).

This module is pure (standard library and the registry): the server, the in-process campaigns
and the tests use the same definitions and the same state machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Protocol

from core.tags import LINE_STATES, PRODUCT_SPEC, ModuleLike, Quality, TagRegistry


class Priority(IntEnum):
    """ISA-18.2 priority, valued as the OPC UA Severity it is sent with (1-1000)."""

    LOW = 300
    MEDIUM = 500
    HIGH = 700
    CRITICAL = 900

    def lower(self) -> Priority:
        """One step less urgent (a warning level below its alarm level)."""
        order = list(Priority)
        return order[max(order.index(self) - 1, 0)]


class Kind(StrEnum):
    LIMIT = "limit"  # ExclusiveLevelAlarmType on an analog tag
    DISCRETE = "discrete"  # OffNormalAlarmType: a condition that is true or not


class Origin(StrEnum):
    """Who decides whether the alarm is active."""

    TWIN = "twin"  # the server, from the twin's tags and faults
    CONTROLLER = "controller"  # the supervisory controller's diagnosis, reported to the server


#: The levels of a limit alarm, most severe first within each side.
LEVELS = ("HighHigh", "High", "Low", "LowLow")
_HIGH_SIDE = ("HighHigh", "High")


@dataclass(frozen=True, slots=True)
class AlarmDef:
    """One alarm: what it watches, how urgent it is, and how it is debounced."""

    id: str  # e.g. "nir.api_pct", "equipment.bridging", "controller.nir_bias"
    kind: Kind
    origin: Origin
    source: str  # the tag id a limit alarm watches; the module or service of a discrete one
    description: str
    priority: Priority  # of HH/LL (and of a discrete alarm); H/L are one step lower
    limits: Mapping[str, float] = field(default_factory=dict)  # level -> limit, in the tag's unit
    deadband: float = 0.0  # in the tag's unit
    on_delay_s: float = 0.0  # a level must hold this long (plant s) before it is raised
    off_delay_s: float = 0.0  # and be gone this long before it is cleared
    unit: str = ""

    def level_priority(self, level: str | None) -> Priority:
        if level in ("High", "Low"):
            return self.priority.lower()
        return self.priority


# Limit alarms -------------------------------------------------------------------------------
# Warning bands inside the product's spec: 97-103 % of label claim on the blend, +-3 % on weight.
# The warning levels sit this share of the spec's half-width from its centre.
API_WARNING_FRACTION = 0.6  # 9.7..10.3 % w/w inside 9.5..10.5 (97-103 % of label claim)
WEIGHT_WARNING_FRACTION = 0.6  # 388..412 mg inside 380..420 mg
HARDNESS_WARNING_N = 10.0  # N inside 70..170 N
# Process limits (shared/domain.md): mean residence time 20-150 s; room 20-25 C, 30-50 % RH.
RESIDENCE_TIME_S = (20.0, 150.0)
ROOM_TEMPERATURE_C = (20.0, 25.0)
ROOM_HUMIDITY_PCT = (30.0, 50.0)
HOPPER_LOW_DELAY_S = 60.0  # a refill starts at the refill level: 60 s below it means it failed
PRESS_HOPPER_HIGH = 0.8  # of the level at which the line trips (overflow): H; 0.95: HH
PRESS_HOPPER_HIGH_HIGH = 0.95


def _band(low: float, high: float, fraction: float) -> tuple[float, float]:
    centre, half = (low + high) / 2, (high - low) / 2
    return centre - half * fraction, centre + half * fraction


def limit_alarms(modules: Iterable[ModuleLike], registry: TagRegistry) -> list[AlarmDef]:
    """The limit alarms of a pod: product quality limits and process limits."""
    alarms: list[AlarmDef] = []

    def add(tag_id: str, priority: Priority, limits: dict[str, float], **kw: Any) -> None:
        tag = registry.get(tag_id)
        if tag is None:
            return
        alarms.append(
            AlarmDef(
                id=tag_id,
                kind=Kind.LIMIT,
                origin=Origin.TWIN,
                source=tag_id,
                description=tag.description,
                priority=priority,
                limits=limits,
                unit=tag.unit.symbol,
                **kw,
            )
        )

    for module in modules:
        m, p = module.id, module.params
        if module.type == "nir":
            low, high = PRODUCT_SPEC["api_pct"]
            warn_low, warn_high = _band(low, high, API_WARNING_FRACTION)
            # NIR prediction SD about 0.05 % w/w: a deadband of one SD, two readings to raise.
            add(
                f"{m}.api_pct",
                Priority.HIGH,
                {"HighHigh": high, "High": warn_high, "Low": warn_low, "LowLow": low},
                deadband=0.05,
                on_delay_s=4.0,
                off_delay_s=4.0,
            )
        elif module.type == "press":
            low, high = PRODUCT_SPEC["tablet_weight"]
            warn_low, warn_high = _band(low, high, WEIGHT_WARNING_FRACTION)
            add(
                f"{m}.tablet_weight",
                Priority.HIGH,
                {"HighHigh": high, "High": warn_high, "Low": warn_low, "LowLow": low},
                deadband=2.0,
                on_delay_s=3.0,
                off_delay_s=3.0,
            )
            low, high = PRODUCT_SPEC["hardness"]
            add(
                f"{m}.hardness",
                Priority.MEDIUM,
                {
                    "HighHigh": high,
                    "High": high - HARDNESS_WARNING_N,
                    "Low": low + HARDNESS_WARNING_N,
                    "LowLow": low,
                },
                deadband=2.0,
                on_delay_s=3.0,
                off_delay_s=3.0,
            )
        elif module.type == "feeder":
            add(
                f"{m}.hopper_mass",
                Priority.MEDIUM,
                {"Low": float(p.refill_level_kg)},
                deadband=0.1,
                on_delay_s=HOPPER_LOW_DELAY_S,
                off_delay_s=5.0,
            )
        elif module.type == "blender":
            low, high = RESIDENCE_TIME_S
            add(
                f"{m}.residence_time",
                Priority.MEDIUM,
                {"High": high, "Low": low},
                deadband=2.0,
                on_delay_s=10.0,
                off_delay_s=10.0,
            )
        elif module.type == "feed_frame":
            trip = float(p.max_level_kg)
            add(
                f"{m}.level",
                Priority.HIGH,
                {"HighHigh": trip * PRESS_HOPPER_HIGH_HIGH, "High": trip * PRESS_HOPPER_HIGH},
                deadband=0.02 * trip,
                on_delay_s=2.0,
                off_delay_s=5.0,
            )
        elif module.type == "environment":
            low, high = ROOM_TEMPERATURE_C
            add(
                f"{m}.temperature",
                Priority.MEDIUM,
                {"High": high, "Low": low},
                deadband=0.2,
                on_delay_s=60.0,
                off_delay_s=60.0,
            )
            low, high = ROOM_HUMIDITY_PCT
            add(
                f"{m}.humidity",
                Priority.MEDIUM,
                {"High": high, "Low": low},
                deadband=1.0,
                on_delay_s=60.0,
                off_delay_s=60.0,
            )
    return alarms


# Discrete alarms ----------------------------------------------------------------------------
#: Equipment faults of the twin (the fault catalogue's kinds) and their priority.
EQUIPMENT_FAULTS: dict[str, Priority] = {
    "refill_disturbance": Priority.LOW,
    "feed_factor_drift": Priority.MEDIUM,
    "bridging": Priority.HIGH,
    "feeder_noise": Priority.MEDIUM,
    "load_cell_drift": Priority.HIGH,
    "impeller_slowdown": Priority.MEDIUM,
    "nir_bias": Priority.HIGH,
    "nir_dropout": Priority.MEDIUM,
    "lot_density_change": Priority.LOW,
    "punch_wear": Priority.LOW,
    "fill_depth_stiction": Priority.MEDIUM,
    "turret_speed_step": Priority.MEDIUM,
    "diverter_stuck": Priority.CRITICAL,
}
#: The controller's diagnoses beyond the fault kinds (names of `controller.conditions.Alarm`).
CONTROLLER_EXTRA: dict[str, tuple[Priority, str]] = {
    "nir_disagrees": (Priority.MEDIUM, "NIR disagrees with the feeders' estimate"),
    "estimates_disagree": (Priority.MEDIUM, "The blend estimates disagree"),
    "stale_telemetry": (Priority.HIGH, "Telemetry stale: the controller holds its setpoints"),
    "diverting_too_long": (Priority.CRITICAL, "Diverting longer than allowed: line stopped"),
    "controller_error": (Priority.HIGH, "The supervisor failed and holds its setpoints"),
    "quarantine_refused": (
        Priority.CRITICAL,
        "A quarantine was refused: tablets the controller holds back are not held",
    ),
}
LINE_FAULTED = "line.faulted"


def discrete_alarms() -> list[AlarmDef]:
    """The twin's equipment faults, the line's trip and the controller's diagnoses."""
    alarms = [
        AlarmDef(
            id=LINE_FAULTED,
            kind=Kind.DISCRETE,
            origin=Origin.TWIN,
            source="line.state",
            description="Line tripped (press starved or hopper overflow)",
            priority=Priority.CRITICAL,
        )
    ]
    for kind, priority in EQUIPMENT_FAULTS.items():
        alarms.append(
            AlarmDef(
                id=f"equipment.{kind}",
                kind=Kind.DISCRETE,
                origin=Origin.TWIN,
                source="equipment",
                description=f"Equipment fault: {kind.replace('_', ' ')}",
                priority=priority,
            )
        )
    diagnoses = {
        k: (p, f"Controller diagnosis: {k.replace('_', ' ')}") for k, p in EQUIPMENT_FAULTS.items()
    }
    diagnoses.update(CONTROLLER_EXTRA)
    for name, (priority, text) in diagnoses.items():
        alarms.append(
            AlarmDef(
                id=controller_alarm_id(name),
                kind=Kind.DISCRETE,
                origin=Origin.CONTROLLER,
                source="controller",
                description=text,
                priority=priority,
            )
        )
    return alarms


def controller_alarm_id(name: str) -> str:
    """The alarm of a controller diagnosis (`controller.conditions.Alarm.name`)."""
    return f"controller.{name}"


def build_alarms(modules: Iterable[ModuleLike], registry: TagRegistry) -> list[AlarmDef]:
    """Every alarm of a pod, limit alarms first, in layout order."""
    modules = list(modules)
    alarms = limit_alarms(modules, registry) + discrete_alarms()
    ids = [a.id for a in alarms]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate alarm id")
    return alarms


# Detection ----------------------------------------------------------------------------------
def _severity_rank(level: str | None) -> int:
    """0 normal, 1 High/Low (and a discrete alarm's "Active"), 2 HighHigh/LowLow."""
    return {None: 0, "HighHigh": 2, "LowLow": 2}.get(level, 1)


def _worse(level: str | None, before: str | None) -> bool:
    """Whether `level` must be seen again: more severe than `before`, or the other side."""
    if level is None:
        return False
    if before is None or _severity_rank(level) > _severity_rank(before):
        return True
    return (level in _HIGH_SIDE) != (before in _HIGH_SIDE)


#: The levels whose deadband is held toward normal while a level is active: it and the less
#: severe ones on its side.
_HELD: dict[str | None, tuple[str, ...]] = {
    "HighHigh": ("HighHigh", "High"),
    "High": ("High",),
    "LowLow": ("LowLow", "Low"),
    "Low": ("Low",),
}
#: `LEVELS` with their side (True: high).
_LEVEL_SIDES = tuple((level, level in _HIGH_SIDE) for level in LEVELS)


def raw_level(alarm: AlarmDef, value: float, current: str | None) -> str | None:
    """The most severe level `value` is beyond, with the deadband held toward normal for the
    levels already active (`current` and the less severe ones on its side)."""
    # Every limit alarm's every sample: tuples worked out once, not sets built per call
    # (measured: 0.67 -> 0.51 us a call).
    held = _HELD.get(current, ())
    limits, deadband = alarm.limits, alarm.deadband
    for level, high in _LEVEL_SIDES:  # HH before H, LL before L
        limit = limits.get(level)
        if limit is None:
            continue
        band = deadband if level in held else 0.0
        if high:
            if value > limit - band:
                return level
        elif value < limit + band:
            return level
    return None


@dataclass(slots=True)
class Debounce:
    """On/off delays: a new level counts once it has held for its delay (plant s)."""

    level: str | None = None
    pending: str | None = None
    since: float = -math.inf

    def update(self, alarm: AlarmDef, raw: str | None, now: float) -> str | None:
        if raw == self.level:
            self.pending, self.since = None, -math.inf
            return self.level
        if raw != self.pending or not math.isfinite(self.since):
            self.pending, self.since = raw, now
        delay = alarm.on_delay_s if _worse(raw, self.level) else alarm.off_delay_s
        if now - self.since >= delay:
            self.level, self.pending, self.since = raw, None, -math.inf
        return self.level


# Lifecycle ----------------------------------------------------------------------------------
class Shelving(StrEnum):
    UNSHELVED = "Unshelved"
    ONE_SHOT = "OneShotShelved"
    TIMED = "TimedShelved"


#: The longest a timed shelve may last (ISA-18.2: shelving is temporary), plant s.
MAX_TIME_SHELVED_S = 8 * 3600.0


class LifecycleError(Exception):
    """A lifecycle method that does not apply in this state; `code` names the OPC UA status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # BadConditionBranchAlreadyAcked, BadConditionAlreadyShelved, ...
        self.message = message


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of an alarm's state: what happened, when (plant s), by whom, and the state
    after it."""

    alarm: str
    time: float
    action: str  # raise, level, clear, acknowledge, confirm, comment, shelve, unshelve, ...
    user: str
    comment: str
    state: AlarmSnapshot


@dataclass(frozen=True, slots=True)
class AlarmSnapshot:
    """An alarm's state at one moment."""

    active: bool
    level: str | None
    acked: bool
    confirmed: bool
    shelving: Shelving
    unshelve_at: float  # plant s; inf unless timed-shelved
    out_of_service: bool
    priority: Priority
    message: str
    raised_at: float = math.nan  # plant s of the raise (or escalation) it must be acked for

    @property
    def retain(self) -> bool:
        """Part 9 Retain: of interest to an operator (active, or not yet acked or confirmed)."""
        return self.active or not self.acked or not self.confirmed

    @property
    def suppressed_or_shelved(self) -> bool:
        return self.shelving is not Shelving.UNSHELVED or self.out_of_service

    @property
    def isa_state(self) -> str:
        """The ISA-18.2 state name (figure 5 of the standard)."""
        if self.out_of_service:
            return "out_of_service"
        if self.shelving is not Shelving.UNSHELVED:
            return "shelved"
        if self.active:
            return "active_acked" if self.acked else "active_unacked"
        return "normal" if self.acked else "rtn_unacked"


@dataclass(slots=True)
class AlarmState:
    """One alarm's lifecycle (see the module docstring). Methods return the transition they
    made, or raise `LifecycleError` (the state is then unchanged)."""

    alarm: AlarmDef
    active: bool = False
    level: str | None = None
    acked: bool = True
    confirmed: bool = True
    shelving: Shelving = Shelving.UNSHELVED
    unshelve_at: float = math.inf
    out_of_service: bool = False
    message: str = ""
    raised_at: float = math.nan
    debounce: Debounce = field(default_factory=Debounce)

    def snapshot(self) -> AlarmSnapshot:
        return AlarmSnapshot(
            active=self.active,
            level=self.level,
            acked=self.acked,
            confirmed=self.confirmed,
            shelving=self.shelving,
            unshelve_at=self.unshelve_at,
            out_of_service=self.out_of_service,
            priority=self.alarm.level_priority(self.level) if self.active else self.alarm.priority,
            message=self.message,
            raised_at=self.raised_at,
        )

    def _made(self, now: float, action: str, user: str = "system", comment: str = "") -> Transition:
        return Transition(self.alarm.id, now, action, user, comment, self.snapshot())

    # Process side ---------------------------------------------------------------------------
    def set_level(self, now: float, level: str | None, message: str) -> list[Transition]:
        """The alarm's condition is now `level` (None: normal; "Active" for a discrete one)."""
        if level == self.level:
            return []
        before, self.level, self.message = self.level, level, message
        made: list[Transition] = []
        if level is None:
            self.active = False
            made.append(self._made(now, "clear"))
            if self.shelving is Shelving.ONE_SHOT:  # a one-shot shelve ends with the alarm
                self.shelving, self.unshelve_at = Shelving.UNSHELVED, math.inf
                made.append(self._made(now, "unshelve", comment="one-shot shelve ended"))
            return made
        self.active = True
        if _worse(level, before):  # a new alarm, or a worse level: to be seen again
            self.acked = self.confirmed = False
            self.raised_at = now
        made.append(self._made(now, "raise" if before is None else "level"))
        return made

    def observe(self, now: float, value: float) -> list[Transition]:
        """A new good sample of the watched tag (limit alarms)."""
        raw = raw_level(self.alarm, value, self.debounce.level)
        level = self.debounce.update(self.alarm, raw, now)
        if level == self.level:
            return []
        return self.set_level(now, level, self.describe(level, value))

    def describe(self, level: str | None, value: float) -> str:
        a = self.alarm
        unit = f" {a.unit}" if a.unit else ""
        if level is None:
            return f"{a.id} back to normal: {value:.4g}{unit}"
        return f"{a.id} {level}: {value:.4g}{unit} (limit {a.limits[level]:g}{unit})"

    def expire(self, now: float) -> list[Transition]:
        """End a timed shelve whose time is up."""
        if self.shelving is Shelving.TIMED and now >= self.unshelve_at:
            self.shelving, self.unshelve_at = Shelving.UNSHELVED, math.inf
            return [self._made(now, "unshelve", comment="shelving time elapsed")]
        return []

    # Operator side --------------------------------------------------------------------------
    def acknowledge(self, now: float, user: str, comment: str) -> Transition:
        if self.acked:
            raise LifecycleError(
                "BadConditionBranchAlreadyAcked", f"{self.alarm.id} is acknowledged already"
            )
        self.acked = True
        return self._made(now, "acknowledge", user, comment)

    def confirm(self, now: float, user: str, comment: str) -> Transition:
        if self.confirmed:
            raise LifecycleError(
                "BadConditionBranchAlreadyConfirmed", f"{self.alarm.id} is confirmed already"
            )
        if not self.acked:
            raise LifecycleError(
                "BadInvalidState", f"{self.alarm.id}: acknowledge it before confirming"
            )
        self.confirmed = True
        return self._made(now, "confirm", user, comment)

    def comment(self, now: float, user: str, comment: str) -> Transition:
        return self._made(now, "comment", user, comment)

    def shelve(self, now: float, user: str, comment: str, duration_s: float | None) -> Transition:
        """Shelve: one-shot (`duration_s` None, until the alarm clears) or for `duration_s`."""
        if duration_s is None:
            if self.shelving is Shelving.ONE_SHOT:
                raise LifecycleError(
                    "BadConditionAlreadyShelved", f"{self.alarm.id} is shelved already"
                )
            self.shelving, self.unshelve_at = Shelving.ONE_SHOT, math.inf
        else:
            if self.shelving is Shelving.TIMED:
                raise LifecycleError(
                    "BadConditionAlreadyShelved", f"{self.alarm.id} is shelved already"
                )
            if not (math.isfinite(duration_s) and 0 < duration_s <= MAX_TIME_SHELVED_S):
                raise LifecycleError(
                    "BadShelvingTimeOutOfRange",
                    f"shelving time {duration_s:g} s is outside 0..{MAX_TIME_SHELVED_S:g} s",
                )
            self.shelving, self.unshelve_at = Shelving.TIMED, now + duration_s
        return self._made(now, "shelve", user, comment)

    def unshelve(self, now: float, user: str, comment: str) -> Transition:
        if self.shelving is Shelving.UNSHELVED:
            raise LifecycleError("BadConditionNotShelved", f"{self.alarm.id} is not shelved")
        self.shelving, self.unshelve_at = Shelving.UNSHELVED, math.inf
        return self._made(now, "unshelve", user, comment)

    def remove_from_service(self, now: float, user: str, comment: str) -> Transition:
        if self.out_of_service:
            raise LifecycleError("BadInvalidState", f"{self.alarm.id} is out of service already")
        self.out_of_service = True
        return self._made(now, "out_of_service", user, comment)

    def place_in_service(self, now: float, user: str, comment: str) -> Transition:
        if not self.out_of_service:
            raise LifecycleError("BadInvalidState", f"{self.alarm.id} is in service already")
        self.out_of_service = False
        return self._made(now, "in_service", user, comment)


def lifecycle(alarms: Iterable[AlarmDef]) -> dict[str, AlarmState]:
    """A fresh state per alarm, by id: all normal, acknowledged and confirmed."""
    return {a.id: AlarmState(a) for a in alarms}


def faulted_level(state_index: Any) -> str | None:
    """The `line.faulted` alarm's level from `line.state`'s value."""
    try:
        return "Active" if LINE_STATES[int(state_index)] == "faulted" else None
    except (TypeError, ValueError, IndexError):
        return None


# The board: every alarm of a pod, evaluated together ----------------------------------------
class Sample(Protocol):
    """A tag's newest value as the board reads it (the twin's TagValue is one)."""

    @property
    def value(self) -> Any: ...

    @property
    def quality(self) -> Any: ...

    @property
    def source_time(self) -> float: ...


#: How `AlarmBoard.evaluate` treats an alarm: a limit alarm on its tag, an equipment fault, the
#: line's trip, or one only reported (the controller's: `AlarmBoard.report`).
_LIMIT, _FAULT, _LINE, _REPORTED = range(4)


class AlarmBoard:
    """Every alarm's lifecycle, fed from the tags, the active faults and the controller.

    The OPC UA server turns its transitions into condition events; an in-process campaign
    (`plant kpi`) keeps them to measure the alarm load. The same rules in both.
    """

    def __init__(self, alarms: Iterable[AlarmDef]) -> None:
        self.states = lifecycle(alarms)
        self._last_time: dict[str, float] = {}
        # How each alarm is evaluated, worked out once from what cannot change (its origin,
        # kind, source and id): (id, state, how, key), `key` the source tag or the fault kind.
        # The states are changed in place, never replaced (the server's conditions hold them
        # too). Measured: evaluate 95 -> 18 us a step of the standard campaign.
        self._plan: list[tuple[str, AlarmState, int, str]] = []
        for alarm_id, state in self.states.items():
            alarm = state.alarm
            if alarm.origin is not Origin.TWIN:
                self._plan.append((alarm_id, state, _REPORTED, ""))
            elif alarm.kind is Kind.LIMIT:
                self._plan.append((alarm_id, state, _LIMIT, alarm.source))
            elif alarm_id.startswith("equipment."):
                self._plan.append((alarm_id, state, _FAULT, alarm_id.removeprefix("equipment.")))
            else:
                self._plan.append((alarm_id, state, _LINE, alarm.source))

    def evaluate(
        self, values: Mapping[str, Sample], faults: Mapping[str, str], now: float
    ) -> list[Transition]:
        """The twin's alarms against the newest good samples and the active faults (kind ->
        what to say), and every timed shelve that is up."""
        made: list[Transition] = []
        good, last_time = Quality.GOOD, self._last_time
        for alarm_id, state, how, key in self._plan:
            # `expire` does something only once a timed shelve's time is up (`unshelve_at` is
            # inf otherwise): not called 42 times a step to do nothing.
            if now >= state.unshelve_at:
                made += state.expire(now)
            if how == _LIMIT:
                sample = values.get(key)
                if (
                    sample is None
                    or sample.quality != good
                    or sample.source_time <= last_time.get(alarm_id, -math.inf)
                ):
                    continue
                last_time[alarm_id] = sample.source_time
                made += state.observe(sample.source_time, float(sample.value))
            elif how == _FAULT:
                what = faults.get(key)
                level = "Active" if what is not None else None
                if level != state.level:  # (set_level does nothing otherwise)
                    made += state.set_level(now, level, what or f"{alarm_id} cleared")
            elif how == _LINE:
                sample = values.get(key)
                if sample is not None:
                    tripped = faulted_level(sample.value)
                    text = "line tripped" if tripped else "line no longer faulted"
                    made += state.set_level(now, tripped, text)
        return made

    def report(self, name: str, active: bool, message: str, now: float) -> list[Transition]:
        """A diagnosis of the controller raised or cleared (KeyError: no such alarm)."""
        state = self.states[controller_alarm_id(name)]
        return state.set_level(now, "Active" if active else None, message)
