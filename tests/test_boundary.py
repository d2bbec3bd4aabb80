"""The one boundary, with a producer backend that breaks the rules in the ways an awaitable can.

``ProducerBackend.send`` may return any awaitable; the boundary awaits it. Whatever the
backend does (raise at once, raise when awaited, hand back a future that someone else
cancelled), the producer's send returns a Failure that says its delivery verdict; only a
cancellation of the caller's own task passes through.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import pytest

from qi.base import Failure, QiError, Result
from qi.base.streaming import (
    ErrorCode,
    ProducerConfig,
    ProduceResult,
    StreamingConfig,
    StreamingMessage,
)
from qi.base.streaming._producer import StreamingProducer
from qi.base.streaming.backend import NativeTransactions, ProducerBackend, streaming_error
from testkit import ok

Send = Callable[[], Awaitable[Result[ProduceResult, QiError]]]


def _raises_at_once() -> Awaitable[Result[ProduceResult, QiError]]:
    raise RuntimeError("refused before any awaitable")


async def _raises_when_awaited() -> Result[ProduceResult, QiError]:
    raise RuntimeError("failed while awaited")


def _cancelled_future() -> Awaitable[Result[ProduceResult, QiError]]:
    future: asyncio.Future[Result[ProduceResult, QiError]] = (
        asyncio.get_running_loop().create_future()
    )
    future.cancel()  # as a backend's own task or future may be, by its shutdown
    return future


def _never_done() -> Awaitable[Result[ProduceResult, QiError]]:
    return asyncio.get_running_loop().create_future()


class _Backend(ProducerBackend):
    def __init__(self, send: Send) -> None:
        self._sender = send

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def native_client(self) -> object:
        return None

    def send(
        self, topic: str, message: StreamingMessage
    ) -> Awaitable[Result[ProduceResult, QiError]]:
        return self._sender()

    async def send_batch(
        self, topic: str, messages: Sequence[StreamingMessage]
    ) -> Sequence[ProduceResult | QiError]:
        raise NotImplementedError

    def transactions(self) -> NativeTransactions:
        raise NotImplementedError


def _translate(exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
    return streaming_error(
        fallback, f"{operation} failed: {exc!r}", operation=operation, implementation="stub"
    )


async def _producer(send: Send) -> StreamingProducer:
    producer = StreamingProducer(
        StreamingConfig("boundary-test", ("stub:1",)),
        ProducerConfig(),
        _Backend(send),
        implementation="stub",
        translate=_translate,
    )
    ok(await producer.connect())
    return producer


@pytest.mark.parametrize("send", [_raises_at_once, _raises_when_awaited, _cancelled_future])
async def test_a_send_whose_backend_fails_is_a_failure_with_a_verdict(send: Send) -> None:
    producer = await _producer(send)
    outcome = await producer.send("topic", StreamingMessage(b"x"))
    assert isinstance(outcome, Failure)
    assert outcome.error.code == ErrorCode.PRODUCE_FAILED
    assert outcome.error.context["delivery"] == "unknown"
    await producer.disconnect()


async def test_cancelling_the_caller_of_a_send_still_cancels_it() -> None:
    producer = await _producer(_never_done)
    sending = asyncio.ensure_future(producer.send("topic", StreamingMessage(b"x")))
    await asyncio.sleep(0)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await producer.disconnect()
