"""The confluent backend's transactions when librdkafka does not keep to its timeout.

After connections were cut, librdkafka's ``send_offsets_to_transaction`` (and
``commit_transaction``) can block long past their timeout, or for good (librdkafka
issue 5456; ``tests/invariants/librdkafka_send_offsets_hang.py`` shows it with the
raw client). The exactly-once pipeline of the invariant checker found it: a member's
run loop stopped for good in its transaction's commit. Their caller must hear within
the timeout (and a second of grace) all the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from confluent_kafka import KafkaException, Producer

from qi.base.streaming import ErrorCode
from qi.base.streaming.backends.confluent._errors import translate_exception
from qi.base.streaming.backends.confluent._transactions import ConfluentTransactions
from qi.base.streaming.backends.confluent._worker import BlockingWorker

TIMEOUT = 0.2
BOUND = TIMEOUT + 1.0 + 0.5
"""The timeout, the grace the backend gives librdkafka, and slack for the test machine."""


class _StuckProducer:
    """Transactional calls that block until released, as librdkafka's can after a cut."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def send_offsets_to_transaction(self, *_: Any) -> None:
        self.release.wait(30)

    def commit_transaction(self, *_: Any) -> None:
        self.release.wait(30)


@pytest.fixture
async def stuck() -> AsyncIterator[tuple[_StuckProducer, ConfluentTransactions]]:
    producer = _StuckProducer()
    worker = BlockingWorker("qi-test-transactions")
    try:
        yield producer, ConfluentTransactions(cast(Producer, producer), worker, TIMEOUT)
    finally:
        producer.release.set()
        await worker.close(5.0)


async def test_send_offsets_that_librdkafka_never_returns_fails_abortable_after_its_timeout(
    stuck: tuple[_StuckProducer, ConfluentTransactions],
) -> None:
    _, transactions = stuck
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        await transactions.send_offsets({("t", 0): 5}, object())
    assert time.monotonic() - started < BOUND
    error = translate_exception(raised.value, "transaction.send_offsets", ErrorCode.PRODUCE_FAILED)
    assert error.code == ErrorCode.TRANSACTION_FAILED
    assert error.context["kafka_error"] == "_TIMED_OUT"


async def test_a_commit_that_librdkafka_never_returns_times_out_after_its_timeout(
    stuck: tuple[_StuckProducer, ConfluentTransactions],
) -> None:
    _, transactions = stuck
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        await transactions.commit()
    assert time.monotonic() - started < BOUND
    error = translate_exception(raised.value, "transaction.commit", ErrorCode.TRANSACTION_FAILED)
    assert error.code == ErrorCode.TIMEOUT  # the outcome is unknown: commit again
    assert error.context["retriable"] is True
