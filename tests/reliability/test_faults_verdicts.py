"""Verdicts under faults: a produce failure says ``not_written`` only when no attempt of
its message can have been written."""

from __future__ import annotations

import asyncio
import time

import pytest

from qi.base import Failure
from qi.base.streaming import StreamingMessage, TopicConfig, create_streaming_client
from testkit import ok, unique

from ._proxy import ProxiedBroker
from ._support import REAL_BACKENDS, backend_params, producer_config_for, streaming_config

_LATENCY = 1.0  # seconds the proxy holds every chunk, each way


@pytest.mark.parametrize("backend", backend_params(tuple(sorted(REAL_BACKENDS))))
async def test_a_refused_retry_of_a_message_that_may_be_written_is_unknown(
    backend: str, proxied_broker: ProxiedBroker
) -> None:
    proxy = proxied_broker.proxy
    config = streaming_config((proxied_broker.bootstrap,), request_timeout=8.0)
    topic = unique("verdict")
    async with create_streaming_client(backend, config) as client:
        admin = ok(await client.get_admin())
        ok(await admin.create_topics([TopicConfig(topic)]))
        producer = ok(await client.get_producer(producer_config_for(backend, idempotent=False)))
        ok(await producer.send(topic, StreamingMessage(b"metadata known")))
        proxy.add_latency(_LATENCY)
        began = time.monotonic()
        sending = asyncio.ensure_future(producer.send(topic, StreamingMessage(b"written")))
        # The broker writes the message when its request arrives (after one latency), then
        # deletes the topic (its request left just after). The connection is cut while the
        # answer is on its way back: the client retries, and finds the topic gone.
        deleting = asyncio.ensure_future(admin.delete_topics([topic]))
        await asyncio.sleep(1.5 * _LATENCY - (time.monotonic() - began))
        proxy.cut()
        proxy.restore()
        outcome = await sending
        await deleting  # its answer was cut too: only the deletion matters
        assert isinstance(outcome, Failure), outcome
        assert outcome.error.context["delivery"] == "unknown", outcome
