"""Synthetic load-test tags: extra tags for benchmarks only.

They are not part of the plant and are off by default (`extra_tags = 0`). They sit in their
own modules, `synthetic_000` onwards, 100 tags each, so no folder has thousands of children.
Each changes `hz` times a plant second, all at once (at plant times k/hz), as instruments
sampled in step would; `hz` = 0 makes them change on every tick, whatever its period.
"""

from __future__ import annotations

import math

from core.tags import SYNTHETIC_PER_MODULE, TEMPLATES, Access, Quality, Tag
from twin.store import TagValue

PER_MODULE = SYNTHETIC_PER_MODULE


def synthetic_tags(count: int) -> list[Tag]:
    """`count` synthetic measured tags, from the registry's `synthetic` template."""
    specs = TEMPLATES["synthetic"]
    tags = []
    for i in range(count):
        spec = specs[i % PER_MODULE]
        assert spec.access is Access.MEASURED and isinstance(spec.low, float)
        tags.append(
            Tag(
                module=f"synthetic_{i // PER_MODULE:03d}",
                module_type="synthetic",
                name=spec.name,
                unit=spec.unit,
                data_type=spec.data_type,
                access=spec.access,
                low=spec.low,
                high=float(spec.high),
                description=spec.description,
            )
        )
    return tags


class SyntheticSource:
    """Values for the synthetic tags: a sawtooth per tag, new `hz` times a plant second."""

    def __init__(self, tags: list[Tag], hz: float = 0.0) -> None:
        self.ids = [tag.id for tag in tags]
        self.hz = hz
        self._instant = float("nan")

    def values(self, now: float) -> dict[str, TagValue]:
        """The samples new at plant time `now`: none between two sampling instants.

        A tick between two instants hands the publisher nothing: building 20,000 unchanged
        values on each of ten ticks a second, for the publisher to skip them, was 22 % of
        the server's samples at 20,000 tags at 1 Hz (py-spy, bench.opcua, issue 17).
        """
        if self.hz > 0:
            # The last sampling instant at or before now (the 1e-9 absorbs float error).
            now = math.floor(now * self.hz + 1e-9) / self.hz
            if now == self._instant:
                return {}
            self._instant = now
        good = Quality.GOOD
        return {
            tag_id: TagValue((now + i) % 1000.0, good, now) for i, tag_id in enumerate(self.ids)
        }
