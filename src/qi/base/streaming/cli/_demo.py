"""``qi-stream demo``: the main job end to end, on every installed backend, in a few seconds.

The round trip itself lives in :mod:`._workload`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Final

import click
from rich.table import Table
from rich.text import Text

from qi.base.streaming import ProducerConfig
from qi.base.streaming.cli._options import (
    BROKERS_ENV,
    MEMORY_BROKERS,
    CommonOptions,
    backend_installed,
    common_options,
)
from qi.base.streaming.cli._output import (
    EXIT_FAILURE,
    EXIT_OK,
    one_line,
    print_result,
    stderr,
    stdout,
)
from qi.base.streaming.cli._runner import Stop, exit_with, run_async
from qi.base.streaming.cli._workload import WorkloadReport, WorkloadSpec, run_workload
from qi.base.streaming.devbroker import DevBroker, DevBrokerError

DEMO_SPEC: Final = WorkloadSpec(
    messages=10_000, size=100, batch_size=10_000, latency_sends=200, consume_timeout=20.0
)
_KAFKA_BACKENDS: Final = ("confluent", "aiokafka")


def planned_backends(options: CommonOptions) -> list[str]:
    """The named backend, else memory plus each Kafka backend whose library is installed."""
    if options.backend is not None:
        return [options.backend]
    return ["memory", *(name for name in _KAFKA_BACKENDS if backend_installed(name))]


def _producer_config(backend: str) -> ProducerConfig:
    # Tansu 0.6 (the development broker) rejects aiokafka's InitProducerId request.
    return ProducerConfig(idempotent=False) if backend == "aiokafka" else ProducerConfig()


@contextlib.contextmanager
def _cluster(options: CommonOptions, needed: bool) -> Iterator[tuple[tuple[str, ...], str]]:
    """Brokers for the Kafka backends and a line saying where they are.

    Starts an embedded development broker when none was given; when it cannot
    start, the brokers are empty and the line says why (those rows then fail).
    """
    if not needed:
        yield (), "in-process memory broker"
        return
    if options.brokers:
        yield options.brokers, f"brokers {','.join(options.brokers)} (--brokers / {BROKERS_ENV})"
        return
    broker = DevBroker()
    try:
        with _status("starting the development broker"):
            broker.start()
    except DevBrokerError as exc:
        yield (), f"no broker: {one_line(str(exc).partition(chr(10))[0])}"
        return
    try:
        yield (broker.bootstrap,), f"embedded development broker on {broker.bootstrap}"
    finally:
        broker.stop()


@contextlib.contextmanager
def _status(text: str) -> Iterator[Callable[[str], None]]:
    """A spinner with ``text`` on a terminal; nothing otherwise. Yields a way to update it."""
    if not stderr.is_terminal:
        yield lambda _text: None
        return
    with stderr.status(text) as status:
        yield lambda new_text: status.update(new_text)


def run_round_trips(options: CommonOptions, spec: WorkloadSpec, title: str) -> int:
    """Run the round trip on each planned backend, print the table, return the exit status."""
    backends = planned_backends(options)
    reports: list[WorkloadReport] = []
    needed = any(name != "memory" for name in backends)
    with _cluster(options, needed) as (brokers, where):
        print_result(f"{title}; {where}")

        async def main(_stop: Stop) -> int:
            for backend in backends:
                with _status(f"{backend}: starting") as update:
                    if backend != "memory" and not brokers:
                        reports.append(_not_run(backend, where))
                        continue
                    config = options.streaming_config(
                        MEMORY_BROKERS if backend == "memory" else brokers
                    )
                    reports.append(
                        await run_workload(
                            backend,
                            config,
                            spec,
                            _producer_config(backend),
                            on_step=_prefixed(update, backend),
                        )
                    )
            return EXIT_OK

        exit_with(run_async(main))
    _print_table(reports, spec)
    return EXIT_OK if reports and all(report.verified for report in reports) else EXIT_FAILURE


def _prefixed(update: Callable[[str], None], backend: str) -> Callable[[str], None]:
    return lambda step: update(f"{backend}: {step}")


def _not_run(backend: str, why: str) -> WorkloadReport:
    return WorkloadReport(backend, 0, None, None, None, None, problem=why)


def _number(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:,.0f}{unit}"


def _milliseconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.3f} ms" if value < 0.001 else f"{value * 1000:.2f} ms"


def _print_table(reports: list[WorkloadReport], spec: WorkloadSpec) -> None:
    table = Table("backend")
    for heading in ("messages", "produce msg/s", "consume msg/s", "p50 send", "p99 send"):
        table.add_column(heading, justify="right")
    table.add_column("verified", justify="center")
    for report in reports:
        table.add_row(
            report.backend,
            f"{report.messages:,}",
            _number(report.produce_rate),
            _number(report.consume_rate),
            _milliseconds(report.latency_p50),
            _milliseconds(report.latency_p99),
            Text("✓", style="bold green") if report.verified else Text("✗", style="bold red"),
        )
    stdout.print(table)
    for report in reports:
        if report.problem is not None:
            stdout.print(
                Text.assemble(("✗ ", "bold red"), f"{report.backend}: {report.problem}"),
                soft_wrap=True,
            )
    notes = [
        f"{spec.messages:,} messages of {spec.size} B (64 keys, a header each) to a new "
        f"{spec.partitions}-partition topic via send_batch ({spec.batch_size:,} a call, one "
        "call in flight), read back via each_batch by a new group and checked one by one: "
        "exactly once, intact, at the acknowledged offset, in order per partition.",
        "consume msg/s: from the group's partition assignment (run() returning) to the last "
        "message handled, so the group join is left out; "
        f"p50/p99 send: {spec.latency_sends} sequential send() calls with linger=0.",
    ]
    if any(report.backend == "aiokafka" for report in reports):
        notes.append(
            "aiokafka ran with idempotent=False: the development broker (Tansu 0.6) "
            "rejects aiokafka's InitProducerId request."
        )
    for note in notes:
        stdout.print(Text(note, style="dim"), soft_wrap=True)


@click.command()
@common_options
def demo(options: CommonOptions) -> None:
    """Run the main job end to end on every installed backend and show what happened.

    Starts an embedded development broker (unless --brokers or QI_BROKERS names
    one), then for memory and each installed Kafka backend: creates a topic,
    sends 10,000 messages with send_batch, reads them back with a new consumer
    group, verifies every message, and times 200 single sends. Exits 1 if any
    backend failed or did not verify. --backend runs just that one.
    """
    status = run_round_trips(options, DEMO_SPEC, "qi-stream demo: produce, consume, verify")
    stdout.print(
        "\nNext: see [bold]Command line[/] (docs/cli.md) to produce and consume "
        "against your own broker ([bold]qi-stream broker[/]), and "
        "[bold]Getting started[/] (docs/getting-started.md) for the Python API."
    )
    exit_with(status)
