"""The real CLI against a Kafka-protocol broker (the development broker or QI_TEST_BROKERS).

Consumers use ``--session-timeout 6``: a group join on the development broker takes
about half the session timeout.
"""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from testkit import unique

from ._support import (
    CLI,
    cli_env,
    cluster_env,
    created_topic,
    run_on_cluster,
    start_cli,
    stderr_lines,
)

pytestmark = pytest.mark.broker

FAST_GROUP = ("--session-timeout", "6")


@pytest.fixture
def cluster(kafka_bootstrap: str, backend: str) -> dict[str, str]:
    """Environment pointing the CLI at the broker (QI_BROKERS) with a Kafka backend."""
    return cluster_env(kafka_bootstrap, backend)


def cli(
    cluster: dict[str, str], *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    # Tansu 0.6 rejects aiokafka's InitProducerId.
    not_idempotent = args[0] == "produce" and cluster["QI_TEST_BACKEND"] == "aiokafka"
    extra = ["--no-idempotent"] if not_idempotent else []
    return run_on_cluster(cluster, *args, stdin=stdin, extra=extra)


@pytest.fixture
def topic(cluster: dict[str, str]) -> Iterator[str]:
    yield from created_topic(functools.partial(cli, cluster), unique("cli"))


def test_topics_create_describe_list_delete(cluster: dict[str, str]) -> None:
    name = unique("cli")
    created = cli(
        cluster, "topics", "create", name, "--partitions", "3", "--config", "retention.ms=600000"
    )
    assert created.returncode == 0, created.stderr.decode()
    assert f"created topic {name} (3 partitions)" in created.stdout.decode()

    described = cli(cluster, "topics", "describe", name)
    assert described.returncode == 0, described.stderr.decode()
    rows = [line for line in described.stdout.decode().splitlines() if name in line]
    assert len(rows) == 3
    assert [row.split("│")[2].strip() for row in rows] == ["0", "1", "2"]
    assert "leader" in described.stdout.decode() and "isr" in described.stdout.decode()

    listed = cli(cluster, "topics", "list")
    assert listed.returncode == 0 and name in listed.stdout.decode().splitlines()

    again = cli(cluster, "topics", "create", name)
    assert again.returncode == 1
    assert stderr_lines(again) == [stderr_lines(again)[0]]
    assert "STREAMING_TOPIC_ALREADY_EXISTS" in stderr_lines(again)[0]

    deleted = cli(cluster, "topics", "delete", name)
    assert deleted.returncode == 0, deleted.stderr.decode()
    assert f"deleted topic {name}" in deleted.stdout.decode()
    assert name not in cli(cluster, "topics", "list").stdout.decode().splitlines()

    missing = cli(cluster, "topics", "describe", name)
    assert missing.returncode == 1
    assert (
        len(stderr_lines(missing)) == 1 and "STREAMING_TOPIC_NOT_FOUND" in missing.stderr.decode()
    )


def test_produce_a_file_then_consume_it_back(
    cluster: dict[str, str], topic: str, tmp_path: Path
) -> None:
    lines = [f"message {index} ✓".encode() for index in range(18)] + [b"", b"bad \xff byte"]
    source = tmp_path / "messages.txt"
    source.write_bytes(b"\n".join(lines) + b"\n")
    produced = cli(
        cluster,
        "produce",
        topic,
        "--file",
        str(source),
        "--key",
        "k1",
        "--header",
        "h=v",
        "--batch-size",
        "7",
    )
    assert produced.returncode == 0, produced.stderr.decode()
    assert stderr_lines(produced)[-1] == "acknowledged 20, failed 0"

    group = unique("group")
    first = cli(
        cluster,
        "consume",
        topic,
        "--group",
        group,
        "--from-beginning",
        "--max",
        "12",
        "--format",
        "json",
        *FAST_GROUP,
    )
    assert first.returncode == 0, first.stderr.decode()
    records = [json.loads(line) for line in first.stdout.decode().splitlines()]
    assert [record["value"] for record in records] == [line.decode() for line in lines[:12]]
    assert [record["offset"] for record in records] == list(range(12))
    for record in records:
        assert record["topic"] == topic and record["partition"] == 0
        assert record["key"] == "k1" and record["headers"] == {"h": "v"}
        assert datetime.fromisoformat(record["timestamp"]).tzinfo is not None

    # The same group resumes after the 12 printed: --max never commits past them.
    rest = cli(cluster, "consume", topic, "--group", group, "--timeout", "2", *FAST_GROUP)
    assert rest.returncode == 0, rest.stderr.decode()
    assert rest.stdout == b"\n".join(lines[12:]) + b"\n"
    assert stderr_lines(rest)[-1] == f"consumed 8 messages (group {group})"


def test_produce_json_lines(cluster: dict[str, str], tmp_path: Path) -> None:
    name = unique("cli")
    assert cli(cluster, "topics", "create", name, "--partitions", "2").returncode == 0
    source = tmp_path / "messages.jsonl"
    source.write_text(
        '{"key": "a", "value": "first", "headers": {"x": "1"}, "partition": 1}\n'
        "not json\n"
        '{"value": {"nested": true}, "partition": 0}\n'
        "\n"
        '{"value": "third", "partition": 1}\n'
        '{"key": "a", "value": null, "partition": 1}\n',  # a tombstone
        encoding="utf-8",
    )
    produced = cli(cluster, "produce", name, "--format", "json", "--file", str(source))
    assert produced.returncode == 1
    errors = stderr_lines(produced)
    assert errors[-1] == "acknowledged 4, failed 1"
    assert errors[0].startswith("error: line 2: not valid JSON")

    consumed = cli(
        cluster, "consume", name, "--from-beginning", "--max", "4", "--format", "json", *FAST_GROUP
    )
    assert consumed.returncode == 0, consumed.stderr.decode()
    records = sorted(
        (json.loads(line) for line in consumed.stdout.decode().splitlines()),
        key=lambda record: (record["partition"], record["offset"]),
    )
    assert [(r["partition"], r["key"], r["value"], r["headers"]) for r in records] == [
        (0, None, '{"nested":true}', {}),
        (1, "a", "first", {"x": "1"}),
        (1, None, "third", {}),
        (1, "a", None, {}),
    ]
    cli(cluster, "topics", "delete", name)


def test_ctrl_c_stops_consume_cleanly_and_commits(cluster: dict[str, str], topic: str) -> None:
    assert cli(cluster, "produce", topic, stdin=b"one\ntwo\nthree\n").returncode == 0
    group = unique("group")
    args = ["consume", topic, "--group", group, "--from-beginning", *FAST_GROUP]
    with start_cli(cluster, *args) as consumer:
        assert consumer.stdout is not None
        received = [consumer.stdout.readline() for _ in range(3)]
        consumer.send_signal(signal.SIGINT)
        _, error_output = consumer.communicate(timeout=40)
    assert received == [b"one\n", b"two\n", b"three\n"]
    assert consumer.returncode == 130, error_output.decode()
    assert error_output.decode().strip().splitlines()[-1] == f"consumed 3 messages (group {group})"

    # Everything printed was committed on the way out: the group has nothing left.
    after = cli(cluster, "consume", topic, "--group", group, "--timeout", "1", *FAST_GROUP)
    assert after.returncode == 0, after.stderr.decode()
    assert after.stdout == b""


def test_produce_to_a_missing_topic_is_one_line_and_status_1(cluster: dict[str, str]) -> None:
    produced = cli(cluster, "produce", unique("missing"), stdin=b"x\n")
    assert produced.returncode == 1
    assert len(stderr_lines(produced)) == 1
    assert stderr_lines(produced)[0].startswith("error: [STREAMING_TOPIC_NOT_FOUND]")


@pytest.mark.parametrize("kind_args", [(), ("--kind", "noida")], ids=["tansu", "noida"])
def test_broker_command_runs_until_interrupted(kind_args: tuple[str, ...]) -> None:
    from qi.base.streaming.devbroker import probe

    with subprocess.Popen(
        [*CLI, "broker", *kind_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env()
    ) as broker:
        assert broker.stdout is not None
        first_line = broker.stdout.readline().decode()
        assert first_line.startswith("development broker listening on 127.0.0.1:")
        address = first_line.rsplit(" ", 1)[1].strip()
        assert probe(address, timeout=5.0)
        broker.send_signal(signal.SIGINT)
        _, error_output = broker.communicate(timeout=20)
    assert broker.returncode == 0, error_output.decode()
    assert f"export QI_BROKERS={address}" in error_output.decode()
    deadline = time.monotonic() + 5
    while probe(address, timeout=0.5) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not probe(address, timeout=0.5)
