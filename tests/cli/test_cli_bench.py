"""``qi-stream bench``: the benchmark harness's scenarios from the installed command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qi.base.streaming.cli._options import backend_installed
from qi.base.streaming.devbroker import BROKER_BIN_ENV

from ._support import cli_env, run_cli, stderr_lines


@pytest.mark.broker
def test_bench_runs_the_harness_and_saves_its_report(tmp_path: Path) -> None:
    report_path = tmp_path / "run.json"
    completed = run_cli(
        "bench",
        "--backend",
        "memory",
        "--messages",
        "2000",
        "--size",
        "64",
        "--rounds",
        "1",
        "--scenarios",
        "produce-batch,send-latency",
        "--json",
        str(report_path),
        timeout=300,
    )
    output = completed.stdout.decode()
    assert completed.returncode == 0, output + completed.stderr.decode()
    assert "development broker (Tansu) on 127.0.0.1:" in completed.stderr.decode()
    assert "qi memory send_batch" in output and "Targets (issues 4 and 16)" in output

    report = json.loads(report_path.read_text())
    assert report["command"].startswith("qi-stream bench")
    assert report["options"]["messages"] == 2000 and report["options"]["size"] == 64
    assert [scenario["name"] for scenario in report["scenarios"]] == [
        "produce-batch",
        "send-latency",
    ]
    for scenario in report["scenarios"]:
        subjects = {entry["id"]: entry for entry in scenario["subjects"]}
        # --backend memory: the other qi backends are left out, the raw clients stay.
        assert not any(name.startswith(("qi-confluent", "qi-aiokafka")) for name in subjects)
        assert subjects["qi-memory"]["status"] == "ok", subjects["qi-memory"]
        # Telemetry on (the OpenTelemetry SDK, a dev dependency), next to the plain row.
        assert subjects["qi-memory/traced"]["status"] == "ok", subjects["qi-memory/traced"]
        if backend_installed("confluent"):
            assert subjects["raw-confluent"]["status"] == "ok", subjects["raw-confluent"]
            # Paired with the raw baseline, round by round.
            metric = "p50" if scenario["kind"] == "latency" else "rate"
            assert subjects["qi-memory"]["ratio"][metric] > 0, subjects["qi-memory"]
    batch = report["scenarios"][0]["subjects"]
    memory = next(entry for entry in batch if entry["id"] == "qi-memory")
    assert memory["rounds"][0]["measurement"]["messages"] == 2000

    # The saved report reads back through the harness's own command line.
    shown = subprocess.run(
        [sys.executable, "-m", "qi.base.streaming.bench", "show", str(report_path)],
        capture_output=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr.decode()
    assert "qi memory send_batch" in shown.stdout.decode()
    assert "traced: +" in shown.stdout.decode()  # the overhead per message, in the note


@pytest.mark.broker
def test_bench_measures_transactions_on_noida_db_next_to_raw_confluent(tmp_path: Path) -> None:
    report_path = tmp_path / "transactions.json"
    completed = run_cli(
        "bench",
        "--messages",
        "2200",
        "--rounds",
        "1",
        "--scenarios",
        "transactions-100,transactions-1k",
        "--json",
        str(report_path),
        timeout=300,
    )
    output = completed.stdout.decode()
    assert completed.returncode == 0, output + completed.stderr.decode()
    assert "development broker (noida) on 127.0.0.1:" in completed.stderr.decode()

    report = json.loads(report_path.read_text())
    hundreds, thousands = report["scenarios"]
    # --messages, rounded down to whole transactions.
    assert (hundreds["messages"], thousands["messages"]) == (2200, 2000)
    for scenario in (hundreds, thousands):
        assert scenario["broker"] == "DevBroker (noida)"
        subjects = {entry["id"]: entry for entry in scenario["subjects"]}
        assert subjects["qi-memory"]["status"] == "ok", subjects["qi-memory"]
        # Telemetry on (the OpenTelemetry SDK, a dev dependency), next to the plain row.
        assert subjects["qi-memory/traced"]["status"] == "ok", subjects["qi-memory/traced"]
        for name in ("qi-confluent", "qi-aiokafka"):
            if backend_installed(name.removeprefix("qi-")):
                assert subjects[name]["status"] == "ok", subjects[name]
        if backend_installed("confluent"):
            assert subjects["raw-confluent"]["status"] == "ok", subjects["raw-confluent"]
            assert subjects["qi-confluent"]["ratio"]["rate"] > 0, subjects["qi-confluent"]


def test_bench_rejects_an_unknown_scenario() -> None:
    completed = run_cli("bench", "--scenarios", "produce-batch,warp-speed")
    assert completed.returncode == 2
    lines = stderr_lines(completed)
    assert len(lines) == 1 and "warp-speed" in lines[0], lines


def test_bench_refuses_security_options() -> None:
    completed = run_cli("bench", "--tls", "--brokers", "127.0.0.1:9")
    assert completed.returncode == 2
    lines = stderr_lines(completed)
    assert len(lines) == 1 and "plaintext" in lines[0], lines


def test_bench_against_a_cluster_that_does_not_answer_fails_at_once() -> None:
    completed = run_cli("bench", "--brokers", "127.0.0.1:1", timeout=30)
    assert completed.returncode == 1
    lines = stderr_lines(completed)
    assert len(lines) == 1 and "no Kafka broker answers at 127.0.0.1:1" in lines[0], lines


def test_bench_without_a_development_broker_fails_in_one_line() -> None:
    completed = run_cli("bench", env={BROKER_BIN_ENV: "/nonexistent/tansu"}, timeout=30)
    assert completed.returncode == 1
    lines = stderr_lines(completed)
    assert len(lines) == 1 and "could not start the development broker" in lines[0], lines
