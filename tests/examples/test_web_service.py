"""examples/web_service.py: one message per request, and what a failed send answers."""

from __future__ import annotations

import json

import httpx
import pytest

import web_service
from qi.base.streaming import StreamingClient, TopicConfig
from qi.base.streaming.backends.memory import MemoryBroker
from qi.base.streaming.testing import assert_produced, read_topic
from testkit import unique


async def post(client: StreamingClient, topic: str, **request: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=web_service.create_app(client, topic))
    async with httpx.AsyncClient(transport=transport, base_url="http://orders") as http:
        return await http.post("/orders", **request)  # type: ignore[arg-type]


async def create(client: StreamingClient, topic: str) -> None:
    admin = (await client.get_admin()).unwrap()
    (await admin.create_topics([TopicConfig(topic, num_partitions=3)])).unwrap()


@pytest.mark.qi_backends("memory", "confluent")
async def test_each_request_publishes_one_message_keyed_by_its_order(
    qi_client: StreamingClient,
) -> None:
    topic = unique("web-orders")
    await create(qi_client, topic)

    response = await post(qi_client, topic, json={"order_id": "order-7", "total": 12})

    assert response.status_code == 202
    written = response.json()
    order = {"order_id": "order-7", "total": 12}
    await assert_produced(
        qi_client,
        topic,
        key="order-7",
        partition=written["partition"],
        where=lambda message: json.loads(message.value or b"") == order,
        within=30,
    )


async def test_a_refused_send_answers_503_with_the_delivery_verdict(
    qi_memory_client: StreamingClient, qi_memory_broker: MemoryBroker
) -> None:
    topic = unique("web-orders")
    await create(qi_memory_client, topic)
    qi_memory_broker.fail_next_produces(topic)

    response = await post(qi_memory_client, topic, json={"order_id": "order-1"})

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {"error": "STREAMING_PRODUCE_FAILED", "delivery": "not_written"}


async def test_a_send_that_retrying_cannot_help_answers_500(
    qi_memory_client: StreamingClient,
) -> None:
    response = await post(qi_memory_client, "bad topic name", json={"order_id": "order-1"})

    assert response.status_code == 500
    assert response.json()["error"] == "STREAMING_INVALID_TOPIC"


async def test_a_body_without_an_order_id_answers_400_and_sends_nothing(
    qi_memory_client: StreamingClient,
) -> None:
    topic = unique("web-orders")
    await create(qi_memory_client, topic)

    not_json = await post(qi_memory_client, topic, content=b"{")
    no_id = await post(qi_memory_client, topic, json={"total": 3})

    assert (not_json.status_code, no_id.status_code) == (400, 400)
    assert await read_topic(qi_memory_client, topic) == ()
