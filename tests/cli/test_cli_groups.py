"""``qi-stream groups`` and ``topics describe`` offsets against a broker with full group admin.

The broker is noida-db (``noida_bootstrap``): Tansu answers part of the group admin
wrongly (see the README's broker quirks).
"""

from __future__ import annotations

import functools
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from testkit import unique

from ._support import cluster_env, created_topic, run_cli, run_on_cluster, start_cli, stderr_lines

FAST_GROUP = ("--session-timeout", "6")


@pytest.fixture
def cluster(noida_bootstrap: str, backend: str) -> dict[str, str]:
    """Environment pointing the CLI at noida-db (QI_BROKERS) with a Kafka backend."""
    return cluster_env(noida_bootstrap, backend)


def cli_json(cluster: dict[str, str], *args: str) -> Any:
    completed = run_on_cluster(cluster, *args, "--format", "json")
    assert completed.returncode == 0, completed.stderr.decode()
    return json.loads(completed.stdout)


@pytest.fixture
def topic(cluster: dict[str, str]) -> Iterator[str]:
    yield from created_topic(
        functools.partial(run_on_cluster, cluster), unique("cli"), "--partitions", "2"
    )


def _partitions(described: Any) -> list[tuple[int, int | None, int, int]]:
    return [
        (row["partition"], row["committed"], row["end"], row["lag"])
        for row in described["partitions"]
    ]


@pytest.mark.broker
def test_describe_reset_and_delete_a_stopped_group(cluster: dict[str, str], topic: str) -> None:
    messages = b"".join(f"m{index}\n".encode() for index in range(5))
    assert run_on_cluster(cluster, "produce", topic, "--key", "k", stdin=messages).returncode == 0
    group = unique("group")
    consumed = run_on_cluster(
        cluster, "consume", topic, "--group", group, "--from-beginning", "--max", "3", *FAST_GROUP
    )
    assert consumed.returncode == 0, consumed.stderr.decode()

    offsets = cli_json(cluster, "topics", "describe", topic)
    ends = {row["partition"]: row["end"] for row in offsets}
    assert sorted(ends.values()) == [0, 5] and {row["start"] for row in offsets} == {0}
    keyed = next(partition for partition, end in ends.items() if end == 5)
    assert "start" in run_on_cluster(cluster, "topics", "describe", topic).stdout.decode()

    assert group in run_on_cluster(cluster, "groups", "list").stdout.decode().splitlines()
    assert group in cli_json(cluster, "groups", "list")
    described = cli_json(cluster, "groups", "describe", group)
    assert described["state"] == "empty" and described["members"] == []
    assert (keyed, 3, 5, 2) in _partitions(described)
    assert described["total_lag"] == 2
    table = run_on_cluster(cluster, "groups", "describe", group)
    assert table.returncode == 0 and "total lag 2" in table.stdout.decode()

    declined = run_on_cluster(
        cluster, "groups", "reset", group, "--topic", topic, "--to", "earliest", stdin=b"n\n"
    )
    assert declined.returncode == 1
    assert "committed 3, log 0..5 -> 0" in declined.stderr.decode()
    assert stderr_lines(declined)[-1].endswith("reset cancelled: nothing changed")
    assert cli_json(cluster, "groups", "describe", group)["total_lag"] == 2

    reset = cli_json(cluster, "groups", "reset", group, "--topic", topic, "--to", "1", "--yes")
    assert {"partition": keyed, "from": 3, "to": 1} in reset["partitions"]
    assert cli_json(cluster, "groups", "describe", group)["total_lag"] == 4
    to_time = run_on_cluster(
        cluster, "groups", "reset", group, "--topic", topic, "--to", "2999-01-01T00:00", "--yes"
    )
    assert to_time.returncode == 0, to_time.stderr.decode()
    assert f"{topic}[{keyed}]: 1 -> 5" in to_time.stdout.decode()

    deleted = run_on_cluster(cluster, "groups", "delete", group)
    assert deleted.returncode == 0 and f"deleted group {group}" in deleted.stdout.decode()
    assert group not in cli_json(cluster, "groups", "list")
    gone = run_on_cluster(cluster, "groups", "describe", group)
    assert gone.returncode == 1 and "does not exist" in gone.stderr.decode()


@pytest.mark.broker
def test_a_group_with_an_active_member_is_shown_and_not_reset(
    cluster: dict[str, str], topic: str
) -> None:
    group = unique("group")
    with start_cli(cluster, "consume", topic, "--group", group, *FAST_GROUP) as consumer:
        try:
            described = _wait_for_member(cluster, group)
            member = described["members"][0]
            assert member["client_id"] == "qi-stream"
            assert sorted((held["topic"], held["partition"]) for held in member["assignment"]) == [
                (topic, 0),
                (topic, 1),
            ]
            assert {row["member_id"] for row in described["partitions"]} == {member["member_id"]}
            assert (
                member["member_id"]
                in run_on_cluster(cluster, "groups", "describe", group).stdout.decode()
            )

            refused = run_on_cluster(
                cluster, "groups", "reset", group, "--topic", topic, "--to", "latest", "--yes"
            )
            assert refused.returncode == 1
            assert "active members" in refused.stderr.decode()
            not_deleted = run_on_cluster(cluster, "groups", "delete", group)
            assert not_deleted.returncode == 1
            assert "STREAMING_INVALID_ARGUMENT" in not_deleted.stderr.decode()
        finally:
            consumer.send_signal(signal.SIGINT)
            consumer.communicate(timeout=40)


def _wait_for_member(cluster: dict[str, str], group: str) -> Any:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        completed = run_on_cluster(cluster, "groups", "describe", group, "--format", "json")
        if completed.returncode == 0:
            described = json.loads(completed.stdout)
            if described["state"] == "stable" and described["members"]:
                return described
        time.sleep(0.5)
    raise AssertionError(f"group {group} never showed a stable member")


def test_a_reset_target_that_is_no_time_is_a_usage_error() -> None:
    completed = run_cli(
        "groups", "reset", "g", "--topic", "t", "--to", "yesterday", "--backend", "memory"
    )
    assert completed.returncode == 2
    assert "expected earliest, latest, an offset or an ISO time" in completed.stderr.decode()


def test_a_reset_to_the_first_day_of_datetimes_range_is_a_time() -> None:
    # Its local time cannot be computed: that was an unexpected ValueError, not a reset.
    completed = run_cli(
        "groups", "reset", "g", "--topic", "t", "--to", "0001-01-01", "--yes", "--backend", "memory"
    )
    assert completed.returncode == 1
    assert "consumer group 'g' does not exist" in completed.stderr.decode()
