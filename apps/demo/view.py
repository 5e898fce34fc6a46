"""The demo's live terminal view: a `Board` drawn with rich, one panel per site."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from apps.demo.watch import Board, SiteBoard, describe, is_controller


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def tags_table(board: SiteBoard) -> Table:
    table = Table("tag", "value", "unit", "spec", "", expand=True, box=None, pad_edge=False)
    for tag in board.key_tags():
        value = board.values.get(tag.id)
        spec, flag = "", ""
        number = _number(value)
        if tag.limits is not None:
            low, high = tag.limits
            spec = f"{low:g}..{high:g}"
            if number is not None:
                flag = "[green]ok[/]" if low <= number <= high else "[bold red]OUT[/]"
        table.add_row(tag.id, board.text(tag.id), tag.unit.symbol, spec, flag)
    return table


def kpi_table(board: SiteBoard, elapsed_s: float) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False, expand=True)
    accepted = _number(board.values.get("diverter.accepted_count")) or 0.0
    diverted = _number(board.values.get("diverter.diverted_count")) or 0.0
    made = accepted + diverted
    rows = [
        ("tablets accepted / diverted", f"{accepted:,.0f} / {diverted:,.0f}"),
        ("diverted", f"{100 * diverted / made:.2f} %" if made else "-"),
    ]
    for tag in board.key_tags():
        pct = board.in_spec_pct(tag.id)
        if tag.limits is not None:
            rows.append((f"{tag.name} samples in spec", "-" if pct is None else f"{pct:.2f} %"))
    rows += [
        ("controller actions", str(board.controller_actions)),
        ("alarms active", ", ".join(sorted(board.alarms_active)) or "none"),
        ("samples / s", f"{board.samples / elapsed_s:,.0f}" if elapsed_s > 0 else "-"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def events_table(board: SiteBoard) -> Table:
    table = Table("plant time", "what", expand=True, box=None, pad_edge=False)
    for event in reversed(board.events):
        when = datetime.fromtimestamp(event.time_ns / 1e9, UTC).strftime("%H:%M:%S")
        line = Text(describe(event), overflow="fold")
        if is_controller(event):
            line.stylize("cyan")
        elif event.kind in ("fault", "alarm"):
            line.stylize("yellow")
        table.add_row(when, line)
    return table


PRIORITY_NAMES = ((900, "critical", "bold red"), (700, "high", "red"), (500, "medium", "yellow"))


def _priority(priority: int) -> tuple[str, str]:
    for floor, name, style in PRIORITY_NAMES:
        if priority >= floor:
            return name, style
    return "low", ""


def alarms_text(board: SiteBoard) -> Text:
    """Unacknowledged alarms, most urgent first (`plant alarm ack ID` acknowledges one)."""
    waiting = board.unacknowledged()
    text = Text.from_markup("[bold]unacknowledged alarms:[/] ")
    if not waiting:
        text.append("none")
    for i, (alarm, priority, state, level) in enumerate(waiting):
        name, style = _priority(priority)
        returned = " (returned)" if state == "rtn_unacked" else ""
        detail = f" {level}" if level and level != "Active" else ""
        text.append(("; " if i else "") + f"{name}: {alarm}{detail}{returned}", style=style)
    return text


def site_panel(board: SiteBoard, elapsed_s: float) -> Panel:
    faults = ", ".join(board.faults.values()) or "none"
    top = Table.grid(expand=True)
    top.add_column(ratio=3)
    top.add_column(ratio=2)
    top.add_row(tags_table(board), kpi_table(board, elapsed_s))
    body = Group(
        top,
        Text.from_markup(f"[bold]active faults:[/] {faults}"),
        alarms_text(board),
        Text("events (controller actions in cyan, faults and alarms in yellow):", style="bold"),
        events_table(board),
    )
    return Panel(body, title=f"[bold]{board.site}[/]: line {board.text('line.state')}")


def render(board: Board, hints: list[str]) -> RenderableType:
    """The whole screen: services' status, one panel per site, the hints (fault command)."""
    elapsed = time.monotonic() - board.started
    with board.lock:
        status = "  ".join(
            f"{name} [{'green' if s == 'online' else 'red'}]{s}[/]"
            for name, s in sorted(board.status.items())
        )
        panels = [site_panel(site, elapsed) for site in board.sites.values()]
    return Group(
        Text.from_markup(f"[bold]services:[/] {status or 'waiting for status'}"),
        *panels,
        *(Text(hint, style="dim", overflow="fold") for hint in hints),
    )
