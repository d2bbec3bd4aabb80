"""Order under faults: within a partition, a batch is written and acknowledged in input
order, also when a request is lost and retried while later ones went through."""

from __future__ import annotations

import asyncio
from typing import Final

import pytest

from qi.base.streaming import (
    MessageBatch,
    StreamingMessage,
    TopicConfig,
    create_streaming_client,
)
from testkit import Collector, ok, unique, wait_until

from ._proxy import ProxiedBroker
from ._scenarios import start_consumer, until_seen
from ._support import REAL_BACKENDS, backend_params, producer_config_for, streaming_config

# A produce request holds at most one message this large (librdkafka's batch.size is
# 1,000,000 bytes; aiokafka starts a new record batch past 16 KiB), so each message of the
# batch travels in a request of its own.
_LARGE: Final = 600_000
_MESSAGES: Final = 3


@pytest.mark.parametrize("backend", backend_params(tuple(sorted(REAL_BACKENDS))))
async def test_a_lost_request_retried_after_later_ones_keeps_the_partition_order(
    backend: str, proxied_broker: ProxiedBroker
) -> None:
    proxy = proxied_broker.proxy
    config = streaming_config((proxied_broker.bootstrap,), request_timeout=10.0)
    topic = unique("order")
    run = unique("run").encode()
    async with create_streaming_client(backend, config) as client:
        admin = ok(await client.get_admin())
        ok(await admin.create_topics([TopicConfig(topic)]))
        # Not idempotent, so nothing but the in-flight limit keeps retries in order; the
        # default max_in_flight (5) and retries.
        producer = ok(await client.get_producer(producer_config_for(backend, idempotent=False)))
        ok(await producer.send(topic, StreamingMessage(b"metadata known")))
        proxy.drop_produce_requests(1)
        values = [b"%s:%d:" % (run, i) + b"x" * _LARGE for i in range(_MESSAGES)]
        batch = MessageBatch(topic, tuple(StreamingMessage(value) for value in values))
        sending = asyncio.ensure_future(producer.send_batch(batch))
        await wait_until(lambda: proxy.dropped == 1, "the first request to be lost", within=10.0)
        # Time for requests sent behind the lost one to be written and answered (none may
        # be), then the connection goes and the lost request is retried.
        await asyncio.sleep(0.5)
        proxy.cut()
        results = ok(await sending).results
        offsets = [result.offset for result in results]
        assert offsets == sorted(offsets), f"acknowledged out of input order: {offsets}"

        collector = Collector()
        await start_consumer(client, topic, collector)
        await until_seen([collector], set(values), 30.0, "the batch")
    first_seen: list[bytes] = []
    for _, message in collector.seen:
        if message.value in values and message.value not in first_seen:
            first_seen.append(message.value)
    assert first_seen == values, "written out of input order"
