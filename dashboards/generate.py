"""`python -m dashboards.generate`: write dashboards/json/*.json from the tag registry.

`--check` writes nothing and exits 1 when a committed file differs from what the registry
gives now (the unit test does the same).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dashboards.build import build_all
from dashboards.panels import JSON

OUT = Path(__file__).parent / "json"


def render(model: JSON) -> str:
    """The file text of one dashboard: stable key order, so diffs show real changes."""
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    """File name -> text, for every dashboard."""
    return {f"{stem}.json": render(model) for stem, model in build_all().items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a diff")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(path)
    if stale:
        print(
            f"out of date: {', '.join(stale)} (run python -m dashboards.generate)", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
