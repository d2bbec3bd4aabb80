"""``qi-stream bench``: a quick built-in throughput run per backend.

Until the benchmark harness (``benchmarks/``) exists, this is the demo's round
trip with bigger, adjustable numbers. When the harness lands, ``bench`` should
call its main scenarios here instead of :func:`run_round_trips`, keeping these
options as the harness's knobs.
"""

from __future__ import annotations

import click

from qi.base.streaming.cli._demo import run_round_trips
from qi.base.streaming.cli._options import CommonOptions, common_options
from qi.base.streaming.cli._runner import exit_with
from qi.base.streaming.cli._workload import WorkloadSpec


@click.command()
@click.option(
    "--messages",
    type=click.IntRange(min=1),
    default=100_000,
    show_default=True,
    help="Messages to produce and consume back per backend.",
)
@click.option(
    "--size",
    type=click.IntRange(min=16),
    default=100,
    show_default=True,
    help="Bytes of each value.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Messages per send_batch call.",
)
@click.option(
    "--latency-sends",
    type=click.IntRange(min=0),
    default=1000,
    show_default=True,
    help="Sequential single sends timed for p50/p99 (0 to skip).",
)
@common_options
def bench(
    options: CommonOptions, messages: int, size: int, batch_size: int, latency_sends: int
) -> None:
    """Measure send_batch and each_batch throughput and send latency per backend.

    A built-in quick run, not the full benchmark harness: one topic of 3
    partitions, one send_batch call in flight, a single consumer, everything on
    this machine. Starts an embedded development broker unless --brokers or
    QI_BROKERS names one; --backend runs just that backend.

    \b
    Example:
      qi-stream bench --messages 200000 --size 1000
    """
    spec = WorkloadSpec(
        messages=messages,
        size=size,
        batch_size=batch_size,
        latency_sends=latency_sends,
        consume_timeout=max(60.0, messages / 1000),
    )
    title = (
        f"qi-stream bench (built-in quick run, not the benchmark harness): {messages:,} x {size} B"
    )
    exit_with(run_round_trips(options, spec, title))
