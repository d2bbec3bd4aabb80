"""Tables: the results of a run, its targets, and the comparison of two runs."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from qi.base.streaming.bench._results import ScenarioResult, subject
from qi.base.streaming.bench._scenarios import TRACED

Table = tuple[str, list[str], list[list[str]]]
"""(title, header, rows)"""


def _number(value: float | None, spec: str, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:{spec}}{suffix}"


def _bounded_cells(scenario: ScenarioResult, entry: dict[str, Any]) -> tuple[str, str]:
    rounds = [record for record in entry["rounds"] if record.get("status") == "ok"]
    if not rounds:
        return "-", "-"
    extra = rounds[-1]["measurement"]["extra"]
    if scenario["name"] == "outage":
        failed = rounds[-1]["measurement"]["failed"]
        seconds = rounds[-1]["measurement"]["seconds"]
        return (
            f"{failed:,}/{scenario['messages']:,} failed in {seconds:.1f}s",
            f"peak {extra['rss_peak_mb']:.0f} (messages "
            f"{extra.get('rss_messages_built_mb', 0) - extra.get('rss_before_mb', 0):.0f})",
        )
    return (
        f"+{extra['growth_mb']:.0f} MB, {extra['handled']:,} handled",
        f"peak {extra['rss_peak_mb']:.0f}",
    )


def traced_overhead(scenario: ScenarioResult, entry: dict[str, Any]) -> str:
    """What telemetry adds per message to a traced subject, against the same subject
    untraced: wall time (p50 for latency scenarios) and CPU, in microseconds."""
    suffix = f"/{TRACED}"
    if not entry["id"].endswith(suffix):
        return ""
    plain = subject(scenario, entry["id"].removesuffix(suffix))
    if plain is None or plain.get("status") != "ok":
        return ""
    traced_summary, plain_summary = entry.get("summary", {}), plain.get("summary", {})

    def added(name: str, per_message: Callable[[float], float]) -> float | None:
        value, reference = traced_summary.get(name), plain_summary.get(name)
        if not value or not reference:
            return None
        return per_message(value) - per_message(reference)

    if scenario["kind"] == "latency":
        wall = added("p50", lambda milliseconds: milliseconds * 1_000)
    else:
        wall = added("rate", lambda rate: 1_000_000 / rate)
    cpu = added("cpu_100k", lambda seconds: seconds * 10)  # s per 100k -> us per message
    return f"traced: +{_number(wall, '.1f')} us/msg, CPU +{_number(cpu, '.1f')} us/msg"


def _row(scenario: ScenarioResult, entry: dict[str, Any]) -> list[str]:
    summary = entry.get("summary", {})
    name = scenario["name"]
    if entry["status"] != "ok":
        return [name, entry["label"], entry["status"], "", "", "", "", entry["reason"][:90]]
    ratio = entry.get("ratio", {})
    note = entry.get("reason", "")[:90] or traced_overhead(scenario, entry)
    if scenario["kind"] == "bounded":
        median, rss = _bounded_cells(scenario, entry)
        return [name, entry["label"], median, "", "", "", rss, note]
    if scenario["kind"] == "latency":
        p50, p99 = _number(summary.get("p50"), ".3f"), _number(summary.get("p99"), ".3f")
        median = f"p50 {p50} / p99 {p99} ms"
        shown = (
            f"{_number(ratio.get('p50'), '.2f', 'x')} / {_number(ratio.get('p99'), '.2f', 'x')}"
            if ratio
            else "baseline"
        )
        mb_s = ""
    else:
        median = _number(summary.get("rate"), ",.0f", " msg/s")
        shown = _number(ratio.get("rate"), ".2f", "x") if ratio else "baseline"
        mb_s = _number(summary.get("mb_s"), ",.1f")
    rounds = f"{summary.get('ok_rounds', 0)}/{summary.get('rounds', 0)}"
    cpu = _number(summary.get("cpu_100k"), ".3f")
    if ratio.get("cpu_100k") is not None:
        cpu += f" ({ratio['cpu_100k']:.1f}x)"
    return [
        name,
        entry["label"],
        median,
        mb_s,
        shown,
        cpu,
        _number(summary.get("rss"), ".0f"),
        note or (f"rounds ok {rounds}" if rounds[0] != rounds[-1] else ""),
    ]


def results_table(scenarios: Sequence[ScenarioResult]) -> Table:
    header = [
        "scenario",
        "subject",
        "median",
        "MB/s",
        "vs baseline",
        "CPU s/100k (vs baseline)",
        "peak RSS MB",
        "note",
    ]
    rows: list[list[str]] = []
    for scenario in scenarios:
        for index, entry in enumerate(scenario["subjects"]):
            row = _row(scenario, entry)
            if index:
                row[0] = ""  # the scenario name heads its group only
            rows.append(row)
    title = "Results: medians of rounds; ratios paired round by round with the scenario's baseline"
    return title, header, rows


def legend(scenarios: Sequence[ScenarioResult]) -> str:
    """What each scenario name stands for."""
    width = max((len(scenario["name"]) for scenario in scenarios), default=0)
    return "\n".join(
        f"  {scenario['name']:<{width}}  {scenario['title']}" for scenario in scenarios
    )


def targets_table(targets: Sequence[dict[str, Any]]) -> Table:
    rows = [
        [row["target"], row["measured"] or "-", row["verdict"], row.get("note", "")[:110]]
        for row in targets
    ]
    return "Targets (issues 4 and 16)", ["target", "measured", "verdict", "note"], rows


def compare_table(before: dict[str, Any], after: dict[str, Any]) -> Table:
    """Every (scenario, subject) measured in both runs, with its change."""
    rows: list[list[str]] = []
    old_scenarios = {scenario["name"]: scenario for scenario in before.get("scenarios", ())}
    for scenario in after.get("scenarios", ()):
        old = old_scenarios.get(scenario["name"])
        if old is None or scenario["kind"] == "bounded":
            continue
        names = ("p50", "p99") if scenario["kind"] == "latency" else ("rate",)
        for entry in scenario["subjects"]:
            previous = subject(old, entry["id"])
            if previous is None:
                continue
            for name in names:
                a = previous.get("summary", {}).get(name)
                b = entry.get("summary", {}).get(name)
                change = f"{(b / a - 1) * 100:+.1f}%" if a and b else "-"
                spec = ".3f" if name != "rate" else ",.0f"
                ratio_a = (previous.get("ratio") or {}).get(name)
                ratio_b = (entry.get("ratio") or {}).get(name)
                rows.append(
                    [
                        scenario["name"],
                        entry["id"],
                        name if name != "rate" else "msg/s",
                        _number(a, spec),
                        _number(b, spec),
                        change,
                        f"{_number(ratio_a, '.2f', 'x')} -> {_number(ratio_b, '.2f', 'x')}",
                    ]
                )
    header = ["scenario", "subject", "metric", "A", "B", "B vs A", "ratio to baseline A -> B"]
    return "Comparison", header, rows


def render(table: Table) -> None:
    """Print with rich when it is installed, as aligned plain text otherwise."""
    title, header, rows = table
    try:
        from rich.console import Console
        from rich.table import Table as RichTable
    except ImportError:
        print(plain(table))
        return
    rich_table = RichTable(title=title, show_lines=False)
    for column in header:
        rich_table.add_column(column, overflow="fold")
    for index, row in enumerate(rows):
        if index and row[0]:
            rich_table.add_section()
        styled = list(row)
        if "PASS" in styled:
            styled[styled.index("PASS")] = "[green]PASS[/]"
        if "FAIL" in styled:
            styled[styled.index("FAIL")] = "[red]FAIL[/]"
        rich_table.add_row(*styled)
    console = Console()
    if not console.is_terminal:
        console = Console(width=180)  # a pipe or file: wide rather than wrapped
    console.print(rich_table)


def plain(table: Table) -> str:
    title, header, rows = table
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        title,
        "  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)),
    ]
    lines.append("  ".join("-" * width for width in widths))
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def markdown(table: Table) -> str:
    """The table as GitHub Markdown (for the README's Performance section)."""
    _, header, rows = table
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows)
    return "\n".join(lines)
