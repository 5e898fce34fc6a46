"""placeholder"""

from pathlib import Path


def write_report(url: str, db: str, site: str, path: Path, *, token: str = "") -> None:
    raise NotImplementedError
