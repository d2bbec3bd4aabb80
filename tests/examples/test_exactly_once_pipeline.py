"""examples/exactly_once_pipeline.py: one invoice per order, even when a send fails."""

from __future__ import annotations

import json

import exactly_once_pipeline as pipeline
from qi.base.streaming import MessageBatch, StreamingMessage, TopicConfig
from qi.base.streaming.testing import read_topic, wait_for_group
from testkit import unique

from ._support import ExampleRun, quick_group


def test_an_order_becomes_its_invoice() -> None:
    order = json.dumps({"order_id": "order-1", "total": 19.99}).encode()

    invoice = json.loads(pipeline.invoice_for(order))

    assert invoice == {"order_id": "order-1", "amount_cents": 1999}


async def test_each_order_has_exactly_one_invoice_though_a_send_was_refused(
    example_run: ExampleRun,
) -> None:
    client = example_run.client
    topics = pipeline.Topics(unique("orders"), unique("invoices"), unique("invoicing"))
    admin = (await client.get_admin()).unwrap()
    (
        await admin.create_topics([TopicConfig(topics.orders, 3), TopicConfig(topics.invoices, 3)])
    ).unwrap()
    orders = tuple(
        StreamingMessage(json.dumps({"order_id": f"o-{n}", "total": n}).encode(), key=f"o-{n}")
        for n in range(8)
    )
    producer = (await client.get_producer()).unwrap()
    (await producer.send_batch(MessageBatch(topics.orders, orders))).unwrap()
    if example_run.memory_broker is not None:
        # The first invoice is refused: its transaction aborts and its orders come again.
        example_run.memory_broker.fail_next_produces(topics.invoices)

    config = quick_group(topics.group, auto_commit=False)
    (await pipeline.start_invoicing(client, unique("instance"), topics, config)).unwrap()
    await wait_for_group(client, topics.group, [topics.orders], within=30)

    # Transaction markers hold offsets no reader sees: the read lasts its whole `within`.
    invoices = await read_topic(client, topics.invoices, within=2)
    order_ids = sorted(json.loads(message.value or b"")["order_id"] for message in invoices)
    assert order_ids == sorted(f"o-{n}" for n in range(8))
