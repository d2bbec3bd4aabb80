"""``python -m benchmarks``: the harness, saving runs in ``benchmarks/results/``."""

from pathlib import Path

from qi.base.streaming.bench import main

raise SystemExit(main(prog="python -m benchmarks", results_dir=Path(__file__).parent / "results"))
