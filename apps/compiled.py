"""Whether this install runs the closed loop's hot modules compiled with mypyc (setup.py: the
image's build sets PLANT_COMPILE=1; an editable install is pure Python)."""

from __future__ import annotations

import controller.blend
import twin.feeder


def compiled() -> bool:
    """The twin's units and the controller's decision modules are compiled together or not at
    all (setup.py's one list): one of each tells."""
    return all(
        m.__file__ is not None and m.__file__.endswith(".so")
        for m in (controller.blend, twin.feeder)
    )
