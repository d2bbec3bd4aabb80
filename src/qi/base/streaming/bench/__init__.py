"""Benchmark harness: qi-base backends against the raw clients they wrap.

Three ways in, one harness: ``python -m benchmarks`` from the repository (or
``make bench``; results saved in ``benchmarks/results/``),
``python -m qi.base.streaming.bench`` from any installation, and
``qi-stream bench`` (the main scenarios, through :class:`Runner`). ``--help``
lists the options; ``compare A.json B.json`` compares two saved runs. The picture::

    __main__ / _cli      parse options, print tables, write JSON
    _runner              owns the broker and the topics, runs every job in a fresh
                         subprocess (``_worker``), alternating subjects round by round
    _worker              one measurement: a raw client (``_raw``), a qi backend
                         (``_qi``) or a bounded-memory check (``_bounded``)
    _scenarios/_targets  what is measured, and the ratios the issue asks for
    _report              tables, target verdicts and the comparison of two runs

Each subject runs in its own process so that peak RSS (a process-wide high-water
mark) and CPU time belong to that subject alone.
"""

from qi.base.streaming.bench._cli import BACKENDS, main, save, scenario_names, show, timestamped
from qi.base.streaming.bench._runner import (
    ClusterUnreachable,
    Runner,
    RunOptions,
    failed_measurements,
)
from qi.base.streaming.bench._scenarios import MAIN_SCENARIOS

__all__ = [
    "BACKENDS",
    "ClusterUnreachable",
    "MAIN_SCENARIOS",
    "RunOptions",
    "failed_measurements",
    "Runner",
    "main",
    "save",
    "scenario_names",
    "show",
    "timestamped",
]
