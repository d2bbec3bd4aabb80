"""``demo``: the round trip on every backend, with a table of what happened."""

from __future__ import annotations

import pytest

from qi.base.streaming.cli._options import backend_installed

from ._support import run_cli


def _row(output: str, backend: str) -> str:
    rows = [line for line in output.splitlines() if line.startswith(f"│ {backend} ")]
    assert len(rows) == 1, output
    return rows[0]


@pytest.mark.broker
def test_demo_verifies_every_installed_backend() -> None:
    # What `make demo` runs: no brokers given, so it starts its own development broker.
    completed = run_cli("demo", timeout=120)
    output = completed.stdout.decode()
    assert completed.returncode == 0, output + completed.stderr.decode()
    assert "embedded development broker on 127.0.0.1:" in output
    for backend in ("memory", "confluent", "aiokafka"):
        if backend_installed(backend):
            row = _row(output, backend)
            assert "10,000" in row and "✓" in row, row
    assert "Command line" in output  # where to go next


def test_demo_on_memory_alone_needs_no_broker() -> None:
    completed = run_cli("demo", "--backend", "memory")
    output = completed.stdout.decode()
    assert completed.returncode == 0, output + completed.stderr.decode()
    assert "in-process memory broker" in output
    assert "✓" in _row(output, "memory")
    assert len([line for line in output.splitlines() if line.startswith("│ ")]) == 1
