"""Synthetic load-test tags: extra tags that change on every tick, for benchmarks only.

They are not part of the plant and are off by default (`extra_tags = 0`). They sit in their
own modules, `synthetic_000` onwards, 100 tags each, so no folder has thousands of children.
"""

from __future__ import annotations

from plant.tags import ONE, Access, DataType, Quality, Tag
from twin.store import TagValue

PER_MODULE = 100
DESCRIPTION = "Synthetic load-test tag (benchmarks only; not part of the plant)"


def synthetic_tags(count: int) -> list[Tag]:
    """`count` synthetic measured tags."""
    return [
        Tag(
            module=f"synthetic_{i // PER_MODULE:03d}",
            module_type="synthetic",
            name=f"value_{i % PER_MODULE:02d}",
            unit=ONE,
            data_type=DataType.FLOAT,
            access=Access.MEASURED,
            low=0.0,
            high=1000.0,
            description=DESCRIPTION,
        )
        for i in range(count)
    ]


class SyntheticSource:
    """Values for the synthetic tags: a sawtooth per tag, new at every plant time."""

    def __init__(self, tags: list[Tag]) -> None:
        self.ids = [tag.id for tag in tags]

    def values(self, now: float) -> dict[str, TagValue]:
        good = Quality.GOOD
        return {
            tag_id: TagValue((now + i) % 1000.0, good, now) for i, tag_id in enumerate(self.ids)
        }
