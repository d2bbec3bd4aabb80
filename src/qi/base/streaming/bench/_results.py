"""From per-round worker answers to medians and paired ratios (plain JSON-able dicts).

A round record is what the runner stores per worker run::

    {"round": 0, "status": "ok", "reason": "", "rss_peak_mb": 81.2, "elapsed": 3.1,
     "measurement": {"messages": ..., "seconds": ..., "cpu_seconds": ..., "value_bytes": ...,
                     "failed": 0, "extra": {...}}}

Ratios are taken round by round (the subject against its baseline in the same round,
which ran next to it), then the median of those ratios: drift of a busy machine
hits both sides of each pair alike.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

_MIB = 1024 * 1024

Round = dict[str, Any]
SubjectResult = dict[str, Any]
ScenarioResult = dict[str, Any]

HIGHER_IS_BETTER = {"rate": True, "mb_s": True, "p50": False, "p99": False, "cpu_100k": False}


def metric(round_record: Round, name: str) -> float | None:
    """One metric of one ok round, or None."""
    if round_record.get("status") != "ok":
        return None
    found = round_record.get("measurement") or {}
    seconds = float(found.get("seconds") or 0.0)
    messages = int(found.get("messages") or 0)
    extra = found.get("extra") or {}
    if name == "rate":
        return messages / seconds if seconds > 0 else None
    if name == "mb_s":
        return float(found.get("value_bytes") or 0) / _MIB / seconds if seconds > 0 else None
    if name == "cpu_100k":
        return float(found.get("cpu_seconds") or 0.0) / messages * 100_000 if messages else None
    if name == "rss":
        return float(round_record.get("rss_peak_mb") or 0.0)
    if name in ("p50", "p99"):
        value = extra.get(f"{name}_ms")
        return float(value) if isinstance(value, int | float) and not math.isnan(value) else None
    raise KeyError(name)


def _median(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def summarise(rounds: Sequence[Round]) -> dict[str, float | int | None]:
    """Medians over the ok rounds."""
    names = ("rate", "mb_s", "cpu_100k", "rss", "p50", "p99")
    summary: dict[str, float | int | None] = {
        name: _median([metric(record, name) for record in rounds]) for name in names
    }
    summary["ok_rounds"] = sum(1 for record in rounds if record.get("status") == "ok")
    summary["rounds"] = len(rounds)
    return summary


def subject(scenario: ScenarioResult, subject_id: str) -> SubjectResult | None:
    for candidate in scenario.get("subjects", ()):
        if candidate.get("id") == subject_id:
            found: SubjectResult = candidate
            return found
    return None


def paired_ratio(
    scenario: ScenarioResult, subject_id: str, baseline_id: str, name: str
) -> float | None:
    """Median over rounds of subject/baseline for ``name``, pairing rounds by number."""
    measured = subject(scenario, subject_id)
    baseline = subject(scenario, baseline_id)
    if measured is None or baseline is None:
        return None
    base_by_round = {record["round"]: record for record in baseline.get("rounds", ())}
    ratios: list[float | None] = []
    for record in measured.get("rounds", ()):
        partner = base_by_round.get(record["round"])
        if partner is None:
            continue
        value, reference = metric(record, name), metric(partner, name)
        if value is not None and reference:
            ratios.append(value / reference)
    return _median(ratios)


def subject_status(rounds: Sequence[Round]) -> tuple[str, str]:
    """ok when any round succeeded; else the last round's status and reason."""
    if any(record.get("status") == "ok" for record in rounds):
        errors = [record["reason"] for record in rounds if record.get("status") == "error"]
        return "ok", (f"{len(errors)} round(s) failed: {errors[0]}" if errors else "")
    if not rounds:
        return "unavailable", "not run"
    last = rounds[-1]
    return str(last.get("status", "error")), str(last.get("reason", ""))


def finish_scenario(scenario: ScenarioResult) -> None:
    """Fill in each subject's status, summary and ratios to the scenario's baseline."""
    baseline = scenario.get("baseline")
    for entry in scenario["subjects"]:
        rounds = entry.get("rounds", [])
        if entry.get("status") != "unavailable" or rounds:
            entry["status"], entry["reason"] = subject_status(rounds)
        entry["summary"] = summarise(rounds)
        entry["ratio"] = {}
        if baseline and entry["id"] != baseline and entry["status"] == "ok":
            names = (
                ("p50", "p99", "cpu_100k")
                if scenario["kind"] == "latency"
                else ("rate", "cpu_100k")
            )
            entry["ratio"] = {
                name: paired_ratio(scenario, entry["id"], baseline, name) for name in names
            }
