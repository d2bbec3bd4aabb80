"""The repository's entry point to the benchmark harness (``qi.base.streaming.bench``).

``python -m benchmarks`` runs the harness and keeps every run's JSON in
``benchmarks/results/``; see ``benchmarks/README.md``.
"""
