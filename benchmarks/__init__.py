"""Benchmark harness: qi-base backends against the raw clients they wrap.

Run ``python -m benchmarks`` (or ``make bench``); ``python -m benchmarks --help``
lists the options and ``python -m benchmarks compare A.json B.json`` compares two
runs. The picture::

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
