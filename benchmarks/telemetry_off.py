"""The path with telemetry off, for a before/after comparison across commits.

The same public-API workload on the memory backend; prints one JSON line. Run it
alternately against two checkouts (``PYTHONPATH=<other checkout>/src``), as README
Performance ("Tracing's cost") did.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    MessageBatch,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)

SENDS = 20_000
BATCHES = 20
BATCH_SIZE = 10_000
WARM_UP = 1_000


async def main() -> None:
    config = StreamingConfig("telemetry-off", (f"memory-{uuid.uuid4().hex}:9092",))
    async with create_streaming_client("memory", config) as client:
        admin = (await client.get_admin()).unwrap()
        (await admin.create_topics([TopicConfig("t", num_partitions=3)])).unwrap()
        producer = (await client.get_producer()).unwrap()
        message = StreamingMessage(b"x" * 100)
        for _ in range(WARM_UP):
            (await producer.send("t", message)).unwrap()
        started = time.perf_counter()
        for _ in range(SENDS):
            await producer.send("t", message)
        send_us = (time.perf_counter() - started) / SENDS * 1e6
        batch = MessageBatch("t", tuple(message for _ in range(BATCH_SIZE)))
        started = time.perf_counter()
        for _ in range(BATCHES):
            (await producer.send_batch(batch)).unwrap()
        batch_rate = BATCHES * BATCH_SIZE / (time.perf_counter() - started)

        total = WARM_UP + SENDS + BATCHES * BATCH_SIZE
        handled = 0
        done = asyncio.Event()

        async def handle(payload: EachMessagePayload) -> None:
            nonlocal handled
            handled += 1
            if handled == total:
                done.set()

        consumer_config = ConsumerConfig("telemetry-off", max_batch_size=BATCH_SIZE)
        consumer = (await client.get_consumer(consumer_config)).unwrap()
        await consumer.subscribe(SubscriptionConfig(("t",), from_beginning=True))
        started = time.perf_counter()
        await consumer.run(ConsumerRunConfig(each_message=handle))
        await done.wait()
        consume_rate = total / (time.perf_counter() - started)
    shown = {"send_us": send_us, "batch_rate": batch_rate, "each_message_rate": consume_rate}
    print(json.dumps(shown))


if __name__ == "__main__":
    asyncio.run(main())
