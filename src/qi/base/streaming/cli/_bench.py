"""``qi-stream bench``: the benchmark harness's main scenarios, from the installed package.

A thin front for :mod:`qi.base.streaming.bench` (the harness behind
``python -m benchmarks``): the CLI's common options choose the backend and the
cluster, the harness starts its own development broker otherwise, runs every
measurement in a fresh process next to the raw client it is compared with, and
prints the same tables.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from qi.base.streaming import bench as harness
from qi.base.streaming.cli._options import CommonOptions, common_options
from qi.base.streaming.cli._output import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    print_error,
    print_note,
)
from qi.base.streaming.cli._runner import Stop, exit_with, run_async


def _scenario_list(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    known = harness.scenario_names()
    if value.strip() == "all":
        return known
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise click.BadParameter(
            f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(known)} or 'all'"
        )
    return chosen


@click.command()
@click.option(
    "--messages",
    type=click.IntRange(min=100),
    default=200_000,
    show_default=True,
    help="Messages for send_batch and consume; concurrent sends use a tenth, "
    "single awaited sends min(2000, a tenth).",
)
@click.option(
    "--size", type=click.IntRange(min=1), default=100, show_default=True, help="Value bytes."
)
@click.option(
    "--partitions", type=click.IntRange(min=1), default=3, show_default=True, help="Per topic."
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="A/B rounds; ratios are paired round by round and the table shows medians.",
)
@click.option(
    "--scenarios",
    default=",".join(harness.MAIN_SCENARIOS),
    show_default=True,
    callback=_scenario_list,
    help=f"Comma-separated scenarios, or 'all' ({', '.join(harness.scenario_names())}).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=300.0,
    show_default=True,
    help="Seconds one measurement may take.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the full results as JSON (read back with "
    "'python -m qi.base.streaming.bench show/compare').",
)
@click.option("--markdown", is_flag=True, help="Also print the tables as Markdown.")
@common_options
def bench(
    options: CommonOptions,
    messages: int,
    size: int,
    partitions: int,
    rounds: int,
    scenarios: tuple[str, ...],
    timeout: float,
    json_path: Path | None,
    markdown: bool,
) -> None:
    """Measure the qi backends against the raw clients they wrap (throughput, latency, CPU, RSS).

    Runs the benchmark harness's main scenarios: (a) send_batch, (b) concurrent
    sends, (c) one awaited send at a time, (d) consume with each_batch and
    each_message. Every qi backend runs next to its raw client in the same run,
    and the table shows ratios to raw confluent-kafka. Starts an embedded
    development broker unless --brokers or QI_BROKERS names a cluster (plaintext
    only); --backend measures just that qi backend. The defaults take a few
    minutes; '--messages 20000 --rounds 1' is a quick look.

    \b
    Examples:
      qi-stream bench --messages 20000 --rounds 1
      qi-stream bench --scenarios all --json run.json
    """
    if options.security is not None:
        raise CliError(
            "bench measures plaintext clusters only: drop the SASL/TLS options", EXIT_USAGE
        )
    run_options = harness.RunOptions(
        messages=messages,
        size=size,
        partitions=partitions,
        rounds=rounds,
        brokers=",".join(options.brokers) or None,
        scenarios=scenarios,
        backends=(options.backend,) if options.backend is not None else None,
        timeout=timeout,
    )
    command = " ".join(["qi-stream", *sys.argv[1:]])

    async def measure(_stop: Stop) -> int:
        try:
            report = await harness.Runner(run_options, print_note).run()
        except harness.ClusterUnreachable as exc:
            raise CliError(str(exc)) from None
        report["command"] = command
        if json_path is not None:
            harness.save(report, json_path)
        harness.show(report, markdown)
        saved = f"; results written to {json_path}" if json_path else ""
        print_note(f"\nfinished in {report['seconds']:.0f}s{saved}")
        failed = harness.failed_measurements(report)
        if failed:
            print_error(f"measurements that failed: {', '.join(failed)}")
            return EXIT_FAILURE
        return EXIT_OK

    exit_with(run_async(measure))
