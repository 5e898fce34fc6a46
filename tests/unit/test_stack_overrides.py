"""`plant stack init` refuses a chosen secret (PLANT_SECRET_*) that would be mangled downstream.

`$` is expanded by docker compose in .env values and by Grafana's provisioning; whitespace and
control characters end or split a line of an env file or of the broker's passwd. The refusal
names the variable, never the value, exits 2 and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from apps import stack

VARIABLE = "PLANT_SECRET_INFLUXDB_TOKEN"


def run_init(store: Path, value: str, columns: int) -> tuple[int, str]:
    result = CliRunner().invoke(
        stack.app,
        ["init", "--secrets-dir", str(store)],
        env={VARIABLE: value, "COLUMNS": str(columns)},
    )
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    "value",
    [
        "pa$$word-0123456789",
        "${HOME}-0123456789",
        "two words-0123456789",
        "trailing-newline-0123456789\n",
        "tab\there-0123456789",
        "bell\x07here-0123456789",
        "del\x7fhere-0123456789",
    ],
)
def test_a_chosen_secret_with_dollar_whitespace_or_control_is_refused_and_nothing_written(
    tmp_path: Path, value: str
) -> None:
    store = tmp_path / "store"
    code, stderr = run_init(store, value, columns=400)
    assert code == 2
    assert VARIABLE in stderr and stderr.startswith("error: ")
    assert value.strip() not in stderr
    assert not store.exists()


def test_a_refused_secret_leaves_an_existing_store_unchanged(tmp_path: Path) -> None:
    store = tmp_path / "store"
    stack.init_secrets(store, {})
    before = {path.name: path.read_bytes() for path in store.iterdir()}
    code, _ = run_init(store, "new$token-0123456789", columns=400)
    assert code == 2
    assert {path.name: path.read_bytes() for path in store.iterdir()} == before


def test_the_refusal_is_one_line_whatever_the_terminal_width(tmp_path: Path) -> None:
    code, stderr = run_init(tmp_path / "store", "pa$$word-0123456789", columns=80)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1
