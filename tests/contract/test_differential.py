"""The memory broker against real ones: the same script, the same observable outcomes.

Users test their services on ``memory`` and run them on a cluster, so every answer
that differs is a bug they meet in production. The script (``_script.py``: admin
answers, sends and every way they fail, tombstones, limits, compaction, topic
configs, timestamps, consuming, offsets, headers, partitions, seeks, deleted
topics) runs on the memory backend and on each real backend against a broker that
enforces Kafka's rules, and each step's observation must be equal. The only
differences allowed are listed below with their reason (and in the README's
backend caveats); a listed difference that no longer shows fails too, so the table
never outlives the behaviour it excuses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

import pytest

from qi.base.streaming import ConsumerConfig, StreamingConfig, create_streaming_client
from qi.base.streaming.backends.memory import discard_broker
from qi.base.streaming.testing._cluster import private_memory_brokers
from testkit import unique

from ._script import Observation, Script

KNOWN_DIFFERENCES: Final[Mapping[tuple[str, str], str]] = {
    ("confluent", "send: epoch timestamp"): (
        "librdkafka reads a timestamp of 0 ms as 'now' and cannot send 0: the confluent "
        "backend refuses the message (STREAMING_INVALID_MESSAGE) instead of changing it"
    ),
    ("aiokafka", "send_batch: most of an unkeyed burst on one partition"): (
        "aiokafka places unkeyed messages round robin; memory sticks to one partition for "
        "twice linger, as librdkafka and Kafka's Java client do (KIP-480)"
    ),
}
"""(backend, step) -> why that backend's observation differs from the memory broker's."""


def _real_backends() -> list[str]:
    raw = os.environ.get("QI_TEST_BACKENDS")
    names = [name.strip() for name in raw.split(",")] if raw else ["confluent", "aiokafka"]
    return [name for name in names if name in ("confluent", "aiokafka")]


async def _observe(implementation: str, brokers: tuple[str, ...]) -> Mapping[str, Observation]:
    config = StreamingConfig(unique("diff"), brokers, connection_timeout=5.0, request_timeout=10.0)
    group = ConsumerConfig(
        group_id="replaced per consumer",
        session_timeout=6.0,
        heartbeat_interval=0.5,
        auto_commit_interval=1.0,
    )
    async with create_streaming_client(implementation, config) as client:
        return await Script(client, group).run()


@pytest.mark.broker
@pytest.mark.kafka_rules
@pytest.mark.parametrize("backend", _real_backends())
async def test_memory_answers_as_the_real_backends_do(backend: str, noida_bootstrap: str) -> None:
    memory_brokers = private_memory_brokers()
    try:
        expected = await _observe("memory", memory_brokers)
    finally:
        discard_broker(memory_brokers)
    brokers = tuple(address.strip() for address in noida_bootstrap.split(","))
    observed = await _observe(backend, brokers)

    assert observed.keys() == expected.keys()
    unlisted = {
        step: {"memory": expected[step], backend: observed[step]}
        for step in expected
        if observed[step] != expected[step] and (backend, step) not in KNOWN_DIFFERENCES
    }
    stale = [
        step
        for (listed_backend, step) in KNOWN_DIFFERENCES
        if listed_backend == backend and observed[step] == expected[step]
    ]
    assert not unlisted, f"memory and {backend} differ where no reason is listed: {unlisted}"
    assert not stale, f"listed differences that no longer show on {backend}: {stale}"
