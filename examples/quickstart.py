"""The main job through the public API, on the in-process memory backend.

Creates a topic, sends a batch, consumes it back with a consumer group and
prints what happened. Run it with ``make quickstart`` or
``python examples/quickstart.py``; swap "memory" for "confluent" or
"aiokafka" and point ``brokers`` at a cluster to do the same over the wire.
"""

from __future__ import annotations

import asyncio

from qi.base import Failure, Success
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachBatchPayload,
    MessageBatch,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)


async def main() -> int:
    config = StreamingConfig(client_id="quickstart", brokers=("localhost:9092",))
    async with create_streaming_client("memory", config) as client:
        admin = (await client.get_admin()).unwrap()
        created = await admin.create_topics([TopicConfig("orders", num_partitions=3)])
        if isinstance(created, Failure):
            print(f"create_topics failed: {created.error}")
            return 1

        producer = (await client.get_producer()).unwrap()
        batch = MessageBatch(
            topic="orders",
            messages=tuple(
                StreamingMessage(value=f"order {n}".encode(), key=f"customer-{n % 4}")
                for n in range(12)
            ),
        )
        match await producer.send_batch(batch):
            case Success(value=sent):
                partitions = sorted({result.partition for result in sent.results})
                print(f"sent {len(sent.results)} messages to partitions {partitions}")
            case Failure(error=error):
                print(f"send_batch failed: {error}")
                return 1

        received: list[str] = []
        all_received = asyncio.Event()

        async def handle(payload: EachBatchPayload) -> None:
            for message in payload.messages:
                received.append(f"p{message.partition}@{message.offset}: {message.value!r}")
            if len(received) == len(batch.messages):
                all_received.set()

        consumer = (await client.get_consumer(ConsumerConfig(group_id="quickstart"))).unwrap()
        await consumer.subscribe(SubscriptionConfig(topics=("orders",), from_beginning=True))
        started = await consumer.run(ConsumerRunConfig(each_batch=handle))
        if isinstance(started, Failure):
            print(f"run failed: {started.error}")
            return 1
        await asyncio.wait_for(all_received.wait(), timeout=10)
        print(f"consumed {len(received)} messages with group 'quickstart':")
        for line in received:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
