"""A consume-transform-produce service, exactly once: each order becomes one invoice.

The run loop does the transactions (``ConsumerRunConfig.transactional_producer``): it
hands each handler the open transaction as ``payload.transaction``, and commits what
the handlers sent there together with the consumed offsets of the ``orders`` topic.
A handler that fails (here: a send the broker refused) aborts the transaction, and
its messages are handled again, so a ``read_committed`` reader of ``invoices`` sees
each invoice once, whatever failed on the way.

Each running instance needs a ``transactional_id`` of its own (``invoicing-1``,
``invoicing-2``, ...); a second producer started with the same one fences the first.
``python examples/exactly_once_pipeline.py`` runs it on the memory backend.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from qi.base import QiError, Result, Success, is_failure
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingConsumer,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)


@dataclass(frozen=True, slots=True)
class Topics:
    """Where the service reads and writes, and the consumer group it reads with."""

    orders: str = "orders"
    invoices: str = "invoices"
    group: str = "invoicing"


def invoice_for(order: bytes) -> bytes:
    """The transformation: an order's JSON in, its invoice's JSON out."""
    fields = json.loads(order)
    invoice = {"order_id": fields["order_id"], "amount_cents": round(fields["total"] * 100)}
    return json.dumps(invoice).encode()


async def start_invoicing(
    client: StreamingClient,
    instance: str,
    topics: Topics = Topics(),
    consumer_config: ConsumerConfig | None = None,
) -> Result[StreamingConsumer, QiError]:
    """Start one instance; it runs until its consumer is disconnected."""
    producer = await client.get_producer(ProducerConfig(transactional_id=f"invoicing-{instance}"))
    if is_failure(producer):
        return producer
    # The transactions commit the offsets: the consumer must not commit by itself.
    config = consumer_config or ConsumerConfig(topics.group, auto_commit=False)
    consumer = await client.get_consumer(config)
    if is_failure(consumer):
        return consumer

    async def invoice(payload: EachMessagePayload) -> None:
        assert payload.transaction is not None  # the loop's open transaction
        message = payload.message
        invoice = StreamingMessage(invoice_for(message.value or b"{}"), key=message.key)
        # Raising aborts the transaction: the loop hands these orders over again.
        (await payload.transaction.send(topics.invoices, invoice)).unwrap()

    subscription = SubscriptionConfig((topics.orders,), from_beginning=True)
    subscribed = await consumer.value.subscribe(subscription)
    if is_failure(subscribed):
        return subscribed
    run = ConsumerRunConfig(each_message=invoice, transactional_producer=producer.value)
    started = await consumer.value.run(run)
    if is_failure(started):
        return started
    return Success(consumer.value)


async def main() -> int:
    config = StreamingConfig(client_id="invoicing", brokers=("memory-pipeline:9092",))
    async with create_streaming_client("memory", config) as client:
        admin = (await client.get_admin()).unwrap()
        (await admin.create_topics([TopicConfig("orders", 3), TopicConfig("invoices", 3)])).unwrap()
        (await start_invoicing(client, instance="1")).unwrap()

        orders = (await client.get_producer()).unwrap()
        for number in range(5):
            order_id = f"order-{number}"
            order = json.dumps({"order_id": order_id, "total": 9.99 + number}).encode()
            (await orders.send("orders", StreamingMessage(order, key=order_id))).unwrap()

        invoices: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def collect(payload: EachMessagePayload) -> None:
            await invoices.put(payload.message.value)

        reader = (await client.get_consumer(ConsumerConfig("invoice-reader"))).unwrap()
        await reader.subscribe(SubscriptionConfig(("invoices",), from_beginning=True))
        await reader.run(ConsumerRunConfig(each_message=collect))  # read_committed
        for _ in range(5):
            print((await asyncio.wait_for(invoices.get(), timeout=10) or b"").decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
