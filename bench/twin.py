"""How fast the twin runs: 8 h of production at 1 s tag resolution.

Every tag is updated each second of plant time and the whole tag table is copied into an
in-memory history each second (what `plant simulate --csv` writes). The same run measures bare
SimPy, a dozen processes ticking each second with no model, as the baseline the machine
allows; then a profiled, shorter run says where the time goes.

    python -m bench.twin [--hours 8] [--seed 1] [--no-profile]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from collections.abc import Callable
from typing import Any

import simpy

from core.commands import LineCommand
from twin import Plant


def bare_simpy(hours: float, processes: int = 12) -> float:
    """Wall seconds for `processes` empty 1 s processes over `hours` of simulated time."""
    env = simpy.Environment()

    def tick(env: simpy.Environment) -> Any:
        while True:
            yield env.timeout(1.0)

    for _ in range(processes):
        env.process(tick(env))
    start = time.perf_counter()
    env.run(until=hours * 3600.0)
    return time.perf_counter() - start


def run_twin(hours: float, seed: int) -> tuple[float, int, Plant]:
    """Wall seconds to simulate `hours` and record every tag each second."""
    plant = Plant(seed=seed)
    plant.apply(LineCommand("start", user="bench", reason="bench.twin"))
    history: list[list[Any]] = []
    values = plant.store.values

    def recorder(env: simpy.Environment) -> Any:
        # Monitoring stays out of the model: a process of its own copies the tag table.
        while True:
            yield env.timeout(1.0)
            history.append(list(values.values()))

    plant.env.process(recorder(plant.env))
    start = time.perf_counter()
    plant.advance(hours * 3600.0)
    wall = time.perf_counter() - start
    return wall, len(history), plant


def profile(hours: float, seed: int, top: int = 8) -> list[dict[str, Any]]:
    """The functions with the most own time in a profiled run."""
    return own_time_top(lambda: run_twin(hours, seed), top)


def own_time_top(run: Callable[[], object], top: int) -> list[dict[str, Any]]:
    """The `top` functions with the most own time while `run()` runs, by share of it."""
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)  # type: ignore[attr-defined]
    return [
        {
            "function": f"{path.split('/')[-1]}:{line}:{name}",
            "own_pct": round(100 * row[2] / total, 1),
        }
        for (path, line, name), row in rows[:top]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args()

    bare = bare_simpy(args.hours)
    wall, rows, plant = run_twin(args.hours, args.seed)
    sim_s = args.hours * 3600.0
    result: dict[str, Any] = {
        "sim_hours": args.hours,
        "wall_s": round(wall, 3),
        "speedup": round(sim_s / wall),
        "tags": len(plant.registry),
        "history_rows": rows,
        "tablets_made": round(plant.ledger.tablets_made),
        "bare_simpy_speedup": round(sim_s / bare),
        "ratio_to_bare_simpy": round(bare / wall, 3),
    }
    if not args.no_profile:
        result["profile_top"] = profile(min(args.hours, 1.0), args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
