"""The live tag table the modules write into, and the snapshot the outside reads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.tags import DataType, Quality, TagRegistry


@dataclass(frozen=True, slots=True)
class TagValue:
    """A tag value as the plant reports it; `source_time` is plant time in seconds."""

    value: Any
    quality: Quality
    source_time: float


class TagSample(NamedTuple):
    """What a `TagValue` says, as a named tuple: built in half the time of the frozen
    dataclass (measured: 6,300 -> 3,600 instructions), for the samples an in-process campaign's
    alarm board reads every plant second."""

    value: Any
    quality: Quality
    source_time: float


class TagStore:
    """Current value of every tag, with per-tag quality and per-module source time.

    Modules write `values[tag_id]` directly on their hot path; quality is kept only for the
    tags that are not Good, and a module stamps its source time once per update.
    """

    def __init__(self, registry: TagRegistry) -> None:
        self.registry = registry
        self.values: dict[str, Any] = {
            tag.id: (
                False
                if tag.data_type is DataType.BOOL
                else 0.0
                if tag.data_type is DataType.FLOAT
                else 0
            )
            for tag in registry.values()
        }
        self.quality: dict[str, Quality] = {}
        self.stamps: dict[str, float] = dict.fromkeys(registry.modules, 0.0)
        self._module_of = {tag.id: tag.module for tag in registry.values()}
        # What a real plant shows, worked out once: snapshots are taken every plant second.
        self._shown = tuple(
            (tag.id, tag.module) for tag in registry.values() if not tag.ground_truth
        )
        self._shown_template: dict[str, Any] = dict.fromkeys(tag_id for tag_id, _ in self._shown)
        self._shown_modules = tuple(dict.fromkeys(module for _, module in self._shown))
        by_module: dict[str, list[str]] = {}
        for tag_id, module in self._shown:
            by_module.setdefault(module, []).append(tag_id)
        self._shown_by_module = tuple((module, tuple(tags)) for module, tags in by_module.items())
        self._shown_ids = frozenset(self._shown_template)

    def snapshot(self, include_truth: bool = True) -> dict[str, TagValue]:
        good = Quality.GOOD
        quality, stamps, module_of = self.quality, self.stamps, self._module_of
        if not include_truth:
            values = self.values
            return {
                tag_id: TagValue(values[tag_id], quality.get(tag_id, good), stamps[module])
                for tag_id, module in self._shown
            }
        return {
            tag_id: TagValue(value, quality.get(tag_id, good), stamps[module_of[tag_id]])
            for tag_id, value in self.values.items()
        }

    def samples_of(self, tag_ids: Iterable[str]) -> dict[str, TagSample]:
        """What `snapshot()` holds for these tags only, as light `TagSample`s (an in-process
        campaign's alarms read a dozen tags each plant second, not all of them)."""
        good, values, quality, stamps = Quality.GOOD, self.values, self.quality, self.stamps
        module_of = self._module_of
        return {
            tag_id: TagSample(values[tag_id], quality.get(tag_id, good), stamps[module_of[tag_id]])
            for tag_id in tag_ids
        }

    def readings(self) -> dict[str, tuple[Any, Quality, float]]:
        """What `snapshot(include_truth=False)` holds, as plain (value, quality, source time)
        tuples."""
        # Filled in a copy of a dict that has every key already (never resized as it grows):
        # measured 78,800 -> 72,300 instructions a call.
        readings: dict[str, Any] = self._shown_template.copy()
        self.show(readings)
        return readings

    def show(self, into: dict[str, tuple[Any, str, float]]) -> None:
        """Write what `readings()` holds into `into` (a controller's table of readings): the
        in-process closed loop's hot path, with no dict of its own in between, and each
        module's stamp looked up once, not once a tag (measured, with the table's update:
        94,300 -> 71,700 instructions a call)."""
        good, values, stamps = Quality.GOOD, self.values, self.stamps
        for module, tags in self._shown_by_module:
            stamp = stamps[module]
            for tag_id in tags:
                into[tag_id] = (values[tag_id], good, stamp)
        # Few tags are not Good at any time: their quality is set over the Good default.
        if self.quality:
            shown, module_of = self._shown_ids, self._module_of
            for tag_id, quality in self.quality.items():
                if tag_id in shown:
                    into[tag_id] = (values[tag_id], quality, stamps[module_of[tag_id]])

    def newest_shown(self) -> float:
        """The newest source time in `readings()`: one per module, not one per tag (measured:
        23,500 instructions for the readings' own times, 5,500 for their modules')."""
        stamps = self.stamps
        return max([stamps[module] for module in self._shown_modules])
