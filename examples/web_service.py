"""A web service that publishes one message per request (Starlette, on any backend).

``POST /orders`` with a JSON object holding an ``"order_id"``: the service sends it to
the ``orders`` topic, keyed by the order id (so one order's messages stay in order on
one partition), and answers 202 with where it was written once the broker acknowledged
it. A send that failed answers 503 with ``Retry-After`` when the error is worth
retrying (its ``retry_strategy``), 500 when it is not; both bodies carry the error code
and the delivery verdict, which tells the caller whether a resend may write the order
twice. A body that is no such object answers 400.

``python examples/web_service.py`` sends a few requests to the app on the memory
backend through httpx's ASGI transport: no server and no port. In production, serve
``create_app(client)`` with any ASGI server (uvicorn, hypercorn) and a client on
``confluent`` or ``aiokafka``.
"""

from __future__ import annotations

import asyncio
import json

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from qi.base import Failure, QiError, Success, is_failure
from qi.base.streaming import (
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    TopicConfig,
    create_streaming_client,
)


def create_app(client: StreamingClient, topic: str = "orders") -> Starlette:
    """The order service: each ``POST /orders`` sends one message to ``topic``."""

    async def place_order(request: Request) -> JSONResponse:
        try:
            order = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(order, dict) or not isinstance(order.get("order_id"), str):
            return JSONResponse({"error": 'expected an object with an "order_id"'}, 400)
        # The client caches its producer: every request shares one connected instance.
        producer = await client.get_producer()
        if is_failure(producer):
            return _send_failed(producer.error)
        message = StreamingMessage(json.dumps(order).encode(), key=order["order_id"])
        match await producer.value.send(topic, message):
            case Success(value=sent):
                return JSONResponse({"partition": sent.partition, "offset": sent.offset}, 202)
            case Failure(error=error):
                return _send_failed(error)

    return Starlette(routes=[Route("/orders", place_order, methods=["POST"])])


def _send_failed(error: QiError) -> JSONResponse:
    body = {"error": error.code, "delivery": error.context.get("delivery")}
    if error.retry_strategy == "never":
        return JSONResponse(body, status_code=500)
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


async def main() -> int:
    config = StreamingConfig(client_id="order-service", brokers=("memory-web:9092",))
    async with create_streaming_client("memory", config) as client:
        admin = (await client.get_admin()).unwrap()
        (await admin.create_topics([TopicConfig("orders", num_partitions=3)])).unwrap()
        transport = httpx.ASGITransport(app=create_app(client))
        async with httpx.AsyncClient(transport=transport, base_url="http://orders") as http:
            for number in range(3):
                order = {"order_id": f"order-{number}", "total": 10 * number}
                response = await http.post("/orders", json=order)
                print(response.status_code, response.json())
            response = await http.post("/orders", content=b"no order here")
            print(response.status_code, response.json())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
