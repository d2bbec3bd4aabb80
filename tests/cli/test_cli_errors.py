"""Mistakes get one ``error:`` line and the right exit status, with no traceback."""

from __future__ import annotations

import subprocess

import pytest

from qi.base.streaming.cli._options import backend_installed
from testkit import unique

from ._support import run_cli, stderr_lines


def kafka_installed() -> bool:
    return backend_installed("confluent") or backend_installed("aiokafka")


def _assert_one_error_line(
    completed: subprocess.CompletedProcess[bytes], status: int, *fragments: str
) -> str:
    lines = stderr_lines(completed)
    assert completed.returncode == status, completed.stderr.decode()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in completed.stderr.decode()
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["produce", "events", "--bogus"], "--bogus"),
        (["consume"], "TOPIC"),
        (["topics", "create"], "NAME"),
        (["topics", "create", "t", "--partitions", "0"], "--partitions"),
        (["topics", "create", "t", "--config", "no-equals-sign"], "key=value"),
        (["produce", "t", "--header", "no-equals-sign"], "name=value"),
        (["produce", "t", "--backend", "kafka-python"], "--backend"),
        (["consume", "t", "--format", "xml"], "--format"),
        (["produce", "t", "--file", "/no/such/file"], "/no/such/file"),
        (["nosuchcommand"], "nosuchcommand"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], fragment: str) -> None:
    completed = run_cli(*args)
    line = _assert_one_error_line(completed, 2, fragment)
    assert "--help" in line  # says where to look
    assert completed.stdout == b""


@pytest.mark.parametrize(
    "args",
    [
        ["topics", "list"],
        ["topics", "create", "t"],
        ["topics", "delete", "t"],
        ["topics", "describe", "t"],
        ["produce", "t"],
        ["consume", "t"],
    ],
)
@pytest.mark.skipif(not kafka_installed(), reason="only memory is installed: it needs no brokers")
def test_missing_brokers_exit_2_with_a_hint(args: list[str]) -> None:
    completed = run_cli(*args)  # the default backend is a Kafka one when one is installed
    _assert_one_error_line(completed, 2, "--brokers", "QI_BROKERS", "qi-stream broker")


def test_brokers_come_from_the_environment() -> None:
    # An invalid address proves QI_BROKERS was read; it is a usage mistake, so status 2.
    completed = run_cli("topics", "list", "--backend", "memory", env={"QI_BROKERS": "nohostport"})
    _assert_one_error_line(completed, 2, "STREAMING_INVALID_CONFIG")


def test_invalid_topic_name_is_a_usage_error() -> None:
    completed = run_cli("topics", "create", "no spaces allowed", "--backend", "memory")
    _assert_one_error_line(completed, 2, "STREAMING_INVALID_TOPIC")


def test_sasl_without_a_password_is_a_usage_error() -> None:
    completed = run_cli(
        "topics", "list", "--backend", "memory", "--sasl-mechanism", "plain", "--username", "u"
    )
    _assert_one_error_line(completed, 2, "--password-file", "QI_PASSWORD")


def test_produce_to_a_missing_topic_fails_with_status_1() -> None:
    completed = run_cli("produce", unique("cli"), "--backend", "memory", stdin=b"a\nb\n")
    _assert_one_error_line(completed, 1, "STREAMING_TOPIC_NOT_FOUND")


def test_consume_from_a_missing_topic_fails_with_status_1() -> None:
    completed = run_cli("consume", unique("cli"), "--backend", "memory", "--max", "1")
    _assert_one_error_line(completed, 1, "STREAMING_TOPIC_NOT_FOUND")
