"""The confluent backend's transactions when librdkafka does not keep to its timeout.

After connections were cut, librdkafka's ``send_offsets_to_transaction`` (and
``commit_transaction``) can block long past their timeout, or for good (librdkafka
issue 5456; ``tests/invariants/librdkafka_send_offsets_hang.py`` shows it with the
raw client). The exactly-once pipeline of the invariant checker found it: a member's
run loop stopped for good in its transaction's commit. Their caller must hear within
the timeout (and a second of grace) all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from qi.base.streaming import ErrorCode
from qi.base.streaming.backends.confluent._errors import translate_exception
from qi.base.streaming.backends.confluent._transactions import ConfluentTransactions
from qi.base.streaming.backends.confluent._worker import BlockingWorker
from testkit import wait_until

TIMEOUT = 0.2
BOUND = TIMEOUT + 1.0 + 0.5
"""The timeout, the grace the backend gives librdkafka, and slack for the test machine."""


class _Releasable(Protocol):
    release: threading.Event


@contextlib.asynccontextmanager
async def _transactions_over(producer: _Releasable) -> AsyncIterator[ConfluentTransactions]:
    """ConfluentTransactions over a fake producer; releases its blocked calls at the end."""
    worker = BlockingWorker("qi-test-transactions")
    try:
        yield ConfluentTransactions(cast(Producer, producer), worker, TIMEOUT)
    finally:
        producer.release.set()
        await worker.close(5.0)


async def _raised_within_bound(call: Awaitable[None]) -> KafkaException:
    """The KafkaException ``call`` raises, which it must raise within BOUND seconds."""
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        await call
    assert time.monotonic() - started < BOUND
    return raised.value


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
    async with _transactions_over(producer) as transactions:
        yield producer, transactions


async def test_send_offsets_that_librdkafka_never_returns_fails_abortable_after_its_timeout(
    stuck: tuple[_StuckProducer, ConfluentTransactions],
) -> None:
    _, transactions = stuck
    raised = await _raised_within_bound(transactions.send_offsets({("t", 0): 5}, object()))
    error = translate_exception(raised, "transaction.send_offsets", ErrorCode.PRODUCE_FAILED)
    assert error.code == ErrorCode.TRANSACTION_FAILED
    assert error.context["kafka_error"] == "_TIMED_OUT"


async def test_a_commit_that_librdkafka_never_returns_times_out_after_its_timeout(
    stuck: tuple[_StuckProducer, ConfluentTransactions],
) -> None:
    _, transactions = stuck
    raised = await _raised_within_bound(transactions.commit())
    error = translate_exception(raised, "transaction.commit", ErrorCode.TRANSACTION_FAILED)
    assert error.code == ErrorCode.TIMEOUT  # the outcome is unknown: commit again
    assert error.context["retriable"] is True


class _LateProducer:
    """librdkafka's state machine where the first commit or abort blocks past its timeout,
    then completes: asked again afterwards, librdkafka answers ``_STATE`` ("Operation not
    valid in state Ready"), as it does on the development broker once a transaction ended."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.in_transaction = True
        self.blocked_once = False
        self.begun = 0

    def _end(self) -> None:
        if not self.blocked_once:
            self.blocked_once = True
            self.release.wait(30)
        if not self.in_transaction:
            ready = KafkaError(KafkaError._STATE, "Operation not valid in state Ready")
            raise KafkaException(ready)
        self.in_transaction = False

    def commit_transaction(self, *_: Any) -> None:
        self._end()

    def abort_transaction(self, *_: Any) -> None:
        self._end()

    def begin_transaction(self) -> None:
        assert not self.in_transaction
        self.in_transaction = True
        self.begun += 1


async def _times_out_then_completes(
    producer: _LateProducer, call: Awaitable[None], what: str
) -> None:
    """``call`` gives up on librdkafka's first, blocked end; librdkafka then completes it."""
    with pytest.raises(KafkaException):
        await call
    producer.release.set()
    await wait_until(lambda: not producer.in_transaction, what)


@pytest.fixture
async def late() -> AsyncIterator[tuple[_LateProducer, ConfluentTransactions]]:
    producer = _LateProducer()
    async with _transactions_over(producer) as transactions:
        yield producer, transactions


async def test_a_commit_tried_again_after_a_timeout_answers_what_the_late_commit_did(
    late: tuple[_LateProducer, ConfluentTransactions],
) -> None:
    # The exactly-once run loop commits again after a timeout; a second commit_transaction
    # would reach librdkafka after the first one committed and fail with _STATE, and the
    # loop would abort and redo work that is already committed.
    producer, transactions = late
    await _times_out_then_completes(producer, transactions.commit(), "the late call to complete")
    await transactions.commit()


async def test_a_commit_tried_again_while_the_first_is_blocked_waits_for_it(
    late: tuple[_LateProducer, ConfluentTransactions],
) -> None:
    producer, transactions = late
    with pytest.raises(KafkaException):
        await transactions.commit()
    again = asyncio.ensure_future(transactions.commit())
    await asyncio.sleep(TIMEOUT / 2)
    producer.release.set()
    await again


async def test_the_next_transaction_after_an_abort_that_finished_late_begins(
    late: tuple[_LateProducer, ConfluentTransactions],
) -> None:
    # begin() resumes an abort that failed; one that completed after its caller gave up
    # must not be asked again (librdkafka: _STATE), or no transaction would ever begin.
    producer, transactions = late
    await _times_out_then_completes(producer, transactions.abort(), "the late call to complete")
    await transactions.begin()
    assert producer.begun == 1


async def test_the_next_transaction_begins_after_an_abort_of_a_commit_that_completed_late(
    late: tuple[_LateProducer, ConfluentTransactions],
) -> None:
    # commit timed out (the outcome unknown), the caller aborted instead of committing
    # again, and the commit completed meanwhile: librdkafka has no transaction left to
    # abort (_STATE), so the abort owed to it is settled, not asked before every begin.
    producer, transactions = late
    await _times_out_then_completes(producer, transactions.commit(), "the late commit to complete")
    with pytest.raises(KafkaException):
        await transactions.abort()
    await transactions.begin()
    assert producer.begun == 1
