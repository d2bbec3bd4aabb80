"""A group the broker will not let a member into: ``run()`` says why, at once.

noida-db enforces Kafka's ``group.min.session.timeout.ms`` (6 s by default), as a
Kafka cluster does; Tansu takes any session timeout. Each test gets a private
noida-db broker, whatever ``QI_DEV_BROKER`` says.
"""

from __future__ import annotations

import time

import pytest

from qi.base import Failure
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from testkit import unique

from ._support import REAL_BACKENDS, backend_params, bounded, check_error, streaming_config

# Below the broker's minimum, and short enough that waiting out run()'s bound shows.
_REFUSED_SESSION = 3.0


@pytest.mark.parametrize("backend", backend_params(tuple(sorted(REAL_BACKENDS))))
async def test_a_session_timeout_the_broker_refuses_fails_run_at_once(
    backend: str, noida_bootstrap: str
) -> None:
    config = streaming_config((noida_bootstrap,))
    async with create_streaming_client(backend, config) as client:
        admin = (await client.get_admin()).unwrap()
        topic = unique("refused")
        (await admin.create_topics([TopicConfig(topic)])).unwrap()
        group = ConsumerConfig(
            group_id=unique("group"), session_timeout=_REFUSED_SESSION, heartbeat_interval=0.3
        )
        consumer = (await client.get_consumer(group)).unwrap()
        (await consumer.subscribe(SubscriptionConfig(topics=(topic,)))).unwrap()

        async def handle(payload: EachMessagePayload) -> None:
            raise AssertionError("no message can reach a member the group refused")

        began = time.monotonic()
        bound = 2 * _REFUSED_SESSION + config.connection_timeout
        result = await bounded(consumer.run(ConsumerRunConfig(each_message=handle)), bound, "run")
        elapsed = time.monotonic() - began
    assert isinstance(result, Failure), "run() succeeded in a group that refused the member"
    error = check_error(result.error, "run")
    assert error.code == "STREAMING_INVALID_CONFIG", error
    assert error.context["kafka_error"] == "INVALID_SESSION_TIMEOUT", error
    assert error.context["operation"] == "run"
    # The broker's answer, not the bound run() waits for an assignment.
    assert elapsed < _REFUSED_SESSION, f"run() took {elapsed:.1f}s to say it was refused"
