"""The harness's command line: run (the default), ``compare A.json B.json`` and ``show X.json``.

``python -m benchmarks`` (the repository's entry point, which keeps results in
``benchmarks/results/``) and ``python -m qi.base.streaming.bench`` both end here;
``qi-stream bench`` runs the same :class:`Runner` with the CLI's options.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qi.base.streaming.bench._report import (
    compare_table,
    legend,
    markdown,
    render,
    results_table,
    targets_table,
)
from qi.base.streaming.bench._runner import (
    ClusterUnreachable,
    Runner,
    RunOptions,
    failed_measurements,
)
from qi.base.streaming.bench._scenarios import build_scenarios

BACKENDS = ("confluent", "aiokafka", "memory")
DEFAULT_PROG = "python -m qi.base.streaming.bench"


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def scenario_names() -> tuple[str, ...]:
    """Every scenario, in the order the harness runs them."""
    return tuple(scenario.name for scenario in build_scenarios(200_000, 100))


def _run_parser(prog: str, results_dir: Path | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="qi-base against the raw Kafka clients: throughput, latency, CPU, memory. "
        f"Also: '{prog} compare A.json B.json' and '{prog} show A.json'.",
    )
    parser.add_argument(
        "--messages",
        type=_positive,
        default=200_000,
        help="messages for (a), "
        "(d) and (f) (in whole transactions, at least one); (b), (e) use a tenth, "
        "(c) min(2000, a tenth) (default 200000)",
    )
    parser.add_argument("--size", type=_positive, default=100, help="value bytes (default 100)")
    parser.add_argument("--partitions", type=_positive, default=3, help="per topic (default 3)")
    parser.add_argument("--rounds", type=_positive, default=3, help="A/B rounds (default 3)")
    parser.add_argument(
        "--brokers",
        help="host:port[,host:port] of an external cluster (default: start a development broker)",
    )
    parser.add_argument(
        "--scenarios", type=_names, help=f"comma-separated: {', '.join(scenario_names())}"
    )
    parser.add_argument(
        "--backends",
        type=_names,
        help=f"qi backends to measure (default: every installed one of {', '.join(BACKENDS)})",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement")
    parser.add_argument(
        "--json",
        type=Path,
        help="where to write the results as JSON "
        + (f"(default {results_dir}/<timestamp>.json)" if results_dir else "(default: none)"),
    )
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    parser.add_argument(
        "--profile",
        type=Path,
        help="write a pyinstrument profile of every "
        "measurement to this directory (pyinstrument must be importable)",
    )
    return parser  # fmt: skip


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> None:
    unknown = set(arguments.scenarios or ()) - set(scenario_names())
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    wrong = set(arguments.backends or ()) - set(BACKENDS)
    if wrong:
        parser.error(f"unknown backend(s): {', '.join(sorted(wrong))}")


def show(report: dict[str, Any], as_markdown: bool) -> None:
    print(legend(report["scenarios"]))
    tables = [results_table(report["scenarios"]), targets_table(report["targets"])]
    for table in tables:
        render(table)
    if as_markdown:
        for table in tables:
            print(f"\n{markdown(table)}")


def save(report: dict[str, Any], path: Path) -> None:
    """Write a run's report as JSON (``compare`` and ``show`` read it back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def timestamped(results_dir: Path) -> Path:
    """A fresh result file name in ``results_dir``."""
    return results_dir / f"{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"


def run(argv: Sequence[str], prog: str = DEFAULT_PROG, results_dir: Path | None = None) -> int:
    parser = _run_parser(prog, results_dir)
    arguments = parser.parse_args(argv)
    _check(parser, arguments)
    options = RunOptions(
        messages=arguments.messages,
        size=arguments.size,
        partitions=arguments.partitions,
        rounds=arguments.rounds,
        brokers=arguments.brokers,
        scenarios=arguments.scenarios,
        backends=arguments.backends,
        timeout=arguments.timeout,
        profile=str(arguments.profile) if arguments.profile else None,
    )
    try:
        report = asyncio.run(Runner(options, _log).run())
    except ClusterUnreachable as exc:
        _log(f"error: {exc}")
        return 1
    report["command"] = " ".join([prog, *argv])
    path: Path | None = arguments.json or (timestamped(results_dir) if results_dir else None)
    if path is not None:
        save(report, path)
    show(report, arguments.markdown)
    where = f"results written to {path}" if path else "results not saved (use --json PATH)"
    print(f"\n{where}  ({report['seconds']:.0f}s; {report['command']})")
    failed = failed_measurements(report)
    if failed:
        _log(f"error: measurements that failed: {', '.join(failed)}")
        return 1
    return 0


def compare(argv: Sequence[str], prog: str = DEFAULT_PROG) -> int:
    parser = argparse.ArgumentParser(
        prog=f"{prog} compare", description="Compare two result files (A then B)."
    )
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--markdown", action="store_true")
    arguments = parser.parse_args(argv)
    before = json.loads(arguments.before.read_text())
    after = json.loads(arguments.after.read_text())
    table = compare_table(before, after)
    render(table)
    if arguments.markdown:
        print(markdown(table))
    return 0


def main(
    argv: Sequence[str] | None = None, prog: str = DEFAULT_PROG, results_dir: Path | None = None
) -> int:
    """Run the harness from a command line; ``results_dir`` is where runs are saved by default."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["compare"]:
        return compare(arguments[1:], prog)
    if arguments[:1] == ["show"]:
        # Re-print a saved run: ``<prog> show results/X.json``.
        as_markdown = "--markdown" in arguments
        for name in arguments[1:]:
            if name != "--markdown":
                show(json.loads(Path(name).read_text()), as_markdown)
        return 0
    return run(arguments, prog, results_dir)
