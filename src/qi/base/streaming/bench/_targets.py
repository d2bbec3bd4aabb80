"""The performance targets (issues 4 and 16), judged on one run of the harness."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qi.base.streaming.bench._results import HIGHER_IS_BETTER, ScenarioResult, paired_ratio, subject


@dataclass(frozen=True, slots=True)
class Target:
    """A ratio (or an absolute rate) one subject must reach."""

    text: str
    scenario: str
    subject: str
    metric: str
    """``rate``, ``p50`` or ``p99``."""
    threshold: float
    against: str | None = None
    """Baseline subject in the same scenario; None means ``threshold`` is absolute (msg/s)."""
    floors: tuple[str, ...] = ()
    """Subjects doing only the work the target cannot avoid (per-message reports, one
    object per message, one coroutine per send), the last one with what the library's
    design cannot avoid either (a consumer's thread): their ratios are the best reachable."""


TARGETS: tuple[Target, ...] = (
    # Issue 16: lazy consumed messages (design 1).
    Target("confluent each_batch >= 0.8x raw consume(10000)", "consume",
           "qi-confluent/each_batch", "rate", 0.8, "raw-confluent",
           ("raw-confluent-views", "raw-confluent-thread-views")),
    Target("confluent each_message >= 0.6x raw consume(10000)", "consume",
           "qi-confluent/each_message", "rate", 0.6, "raw-confluent",
           ("raw-confluent-awaited", "raw-confluent-thread-awaited")),
    Target("aiokafka each_batch >= 1.0x raw getmany", "consume", "qi-aiokafka/each_batch",
           "rate", 1.0, "raw-aiokafka"),
    # Issue 16: delivery reports served on the event loop (design 2).
    Target("confluent send_batch >= 0.75x raw Producer loop", "produce-batch", "qi-confluent",
           "rate", 0.75, "raw-confluent", ("raw-confluent-reports",)),
    Target("confluent send_batch >= 0.9x loop + delivery callback", "produce-batch",
           "qi-confluent", "rate", 0.9, "raw-confluent-reports"),
    # Issue 16: batch results without a ProduceResult per message (design 3).
    Target("aiokafka send_batch >= 0.8x raw aiokafka send_batch", "produce-batch", "qi-aiokafka",
           "rate", 0.8, "raw-aiokafka-batch"),
    Target("memory send_batch >= 1.5M msg/s", "produce-batch", "qi-memory", "rate", 1_500_000),
    # Issue 16: concurrent sends coalesced per event-loop iteration (design 4).
    Target("confluent concurrent send >= 3x AIOProducer", "produce-concurrent", "qi-confluent",
           "rate", 3.0, "raw-aioproducer", ("raw-asyncio",)),
    Target("confluent concurrent send >= 0.7x asyncio alone", "produce-concurrent",
           "qi-confluent", "rate", 0.7, "raw-asyncio",
           ("raw-confluent-futures", "raw-confluent-futures-thread")),
    # Issue 4, still held.
    Target("confluent awaited send p50 <= 1.3x raw produce+flush", "send-latency", "qi-confluent",
           "p50", 1.3, "raw-confluent", ("raw-confluent-thread",)),
    Target("confluent awaited send p99 <= 2x raw produce+flush", "send-latency", "qi-confluent",
           "p99", 2.0, "raw-confluent", ("raw-confluent-thread",)),
    Target("memory each_batch >= 1M msg/s", "consume", "qi-memory/each_batch", "rate", 1_000_000),
)  # fmt: skip


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _ratio_target(target: Target, scenario: ScenarioResult) -> dict[str, Any]:
    row: dict[str, Any] = {"target": target.text, "measured": None, "verdict": "N/A", "note": ""}
    measured = subject(scenario, target.subject)
    if measured is None or measured.get("status") != "ok":
        if measured is None:
            row["note"] = f"{target.subject}: not measured in this run"
        else:
            status, reason = measured.get("status"), measured.get("reason", "")
            row["note"] = f"{target.subject}: {status}: {reason}"
        return row
    higher = HIGHER_IS_BETTER[target.metric]
    if target.against is None:
        value = measured["summary"].get(target.metric)
        if value is None:
            return row
        row["measured"] = f"{value:,.0f} msg/s"
        row["verdict"] = _verdict(
            value >= target.threshold if higher else value <= target.threshold
        )
        return row
    ratio = paired_ratio(scenario, target.subject, target.against, target.metric)
    if ratio is None:
        baseline = subject(scenario, target.against)
        status = baseline.get("status") if baseline else "not measured in this run"
        row["note"] = f"baseline {target.against}: {status}"
        return row
    row["measured"] = f"{ratio:.2f}x"
    row["verdict"] = _verdict(ratio >= target.threshold if higher else ratio <= target.threshold)
    reachable = [
        f"{floor}: {best:.2f}x"
        for floor in target.floors
        if (best := paired_ratio(scenario, floor, target.against, target.metric)) is not None
    ]
    if reachable:
        row["note"] = f"best reachable ({'; '.join(reachable)})"
    return row


def _bounded_rows(scenario: ScenarioResult) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    options = scenario.get("options", {})
    for entry in scenario.get("subjects", ()):
        label = entry["id"].removeprefix("qi-")
        if scenario["name"] == "outage":
            limit = float(options.get("rss_limit_mb", 300.0))
            text = (
                f"{label}: {scenario['messages']:,} sends, broker stopped: "
                f"RSS < {limit:.0f} MB, every message reported"
            )
        else:
            limit = float(options.get("growth_limit_mb", 64.0))
            text = f"{label}: slow handler holds a bounded amount (RSS growth < {limit:.0f} MB)"
        row: dict[str, Any] = {"target": text, "measured": None, "verdict": "N/A", "note": ""}
        rounds = [record for record in entry.get("rounds", ()) if record.get("status") == "ok"]
        if not rounds:
            row["note"] = f"{entry.get('status')}: {entry.get('reason', '')}"
            rows.append(row)
            continue
        extra = rounds[-1]["measurement"]["extra"]
        if scenario["name"] == "outage":
            peak = float(extra["rss_peak_mb"])
            accounted = int(extra["accounted"])
            failed = int(rounds[-1]["measurement"]["failed"])
            row["measured"] = (
                f"peak {peak:.0f} MB; {failed:,} failed, {extra['delivered']:,} delivered"
            )
            passed = peak < limit and accounted == scenario["messages"]
            row["verdict"] = _verdict(passed)
            built = extra.get("rss_messages_built_mb", 0.0) - extra.get("rss_before_mb", 0.0)
            row["note"] = (
                f"caller's messages {built:.0f} MB, library +{extra.get('library_growth_mb')} MB; "
                f"codes {extra['codes']}, delivery {extra['deliveries']}"
            )
        else:
            growth = float(extra["growth_mb"])
            row["measured"] = f"+{growth:.0f} MB (~{extra['held_estimate']:,} msgs)"
            row["verdict"] = _verdict(growth < limit)
            row["note"] = f"topic {extra['topic_mb']} MB, handled {extra['handled']:,}"
        rows.append(row)
    return rows


def evaluate(scenarios: Sequence[ScenarioResult]) -> list[dict[str, Any]]:
    """One row per target: what was measured and PASS, FAIL or N/A (not measured)."""
    by_name = {scenario["name"]: scenario for scenario in scenarios}
    rows: list[dict[str, Any]] = []
    for target in TARGETS:
        scenario = by_name.get(target.scenario)
        if scenario is None:
            rows.append(
                {
                    "target": target.text,
                    "measured": None,
                    "verdict": "N/A",
                    "note": "scenario not in this run",
                }
            )
            continue
        rows.append(_ratio_target(target, scenario))
    for name in ("outage", "slow-consumer"):
        if name in by_name:
            rows.extend(_bounded_rows(by_name[name]))
    return rows
