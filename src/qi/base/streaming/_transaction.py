"""Transactions: what a transactional producer hands out (contract section 9).

A :class:`Transaction` is begun by ``StreamingProducer.transaction()`` and ends
with ``commit()`` or ``abort()``; as an async context manager it aborts when the
block is left without a commit. Its records, and the consumer offsets sent with
it, become visible to ``read_committed`` consumers together or not at all.

The producer's backend does the work through a :class:`NativeTransactions`:
begin, add a consumer group's offsets (with the group metadata that lets the
broker fence a member that lost its partitions), commit, abort.

    OPEN --commit()--> COMMITTED
    OPEN --abort()---> ABORTED      (also when a context manager block is left open)
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._boundary import boundary
from qi.base.streaming._codes import NOT_WRITTEN, ErrorCode
from qi.base.streaming._consumer import StreamingConsumer
from qi.base.streaming._types import (
    BatchProduceResult,
    MessageBatch,
    ProduceResult,
    StreamingMessage,
)
from qi.base.streaming.backend import NativeTransactions, TopicPartition

if TYPE_CHECKING:
    from qi.base.streaming._producer import StreamingProducer

P = ParamSpec("P")
T = TypeVar("T")


class TransactionState(enum.Enum):
    """Where a transaction is in its life."""

    OPEN = "open"
    """Begun; sends, offsets, commit and abort are accepted."""
    COMMITTED = "committed"
    """commit() succeeded; every call is refused."""
    ABORTED = "aborted"
    """abort() ran (even if the broker could not be told); every call is refused."""


class Transaction:
    """A producer's open transaction: its sends and offsets commit or abort together.

    Also an async context manager: leaving the block without ``commit()`` (or by an
    exception) aborts. Every call on a transaction that ended is
    STREAMING_INVALID_ARGUMENT.
    """

    def __init__(
        self,
        producer: StreamingProducer,
        native: NativeTransactions,
        on_end: Callable[[Transaction], None],
    ) -> None:
        self._producer = producer
        self._native = native
        self._on_end = on_end
        self._state = TransactionState.OPEN
        # Whether a call may run depends on the producer too: the boundary always asks.
        self._accepts_calls = False

    def __repr__(self) -> str:
        return f"Transaction(state={self._state.value!r})"

    if TYPE_CHECKING:
        # What type checkers see: the boundary makes the plain function below a coroutine.

        async def send(
            self, topic: str, message: StreamingMessage
        ) -> Result[ProduceResult, QiError]:
            raise NotImplementedError

    else:

        @boundary("transaction.send", ErrorCode.PRODUCE_FAILED, produces=True)
        def send(
            self, topic: str, message: StreamingMessage
        ) -> Failure[QiError] | Awaitable[Result[ProduceResult, QiError]]:
            """Send one message within the transaction; read_committed readers see it on commit.

            Failures: those of ``StreamingProducer.send``, STREAMING_TRANSACTION_FAILED
            (abort and retry), STREAMING_PRODUCER_FENCED, STREAMING_INVALID_ARGUMENT (ended).
            """
            return self._producer._send_in_transaction(topic, message)

    @boundary("transaction.send_batch", ErrorCode.PRODUCE_FAILED, produces=True)
    async def send_batch(self, batch: MessageBatch) -> Result[BatchProduceResult, QiError]:
        """Send a batch within the transaction, with ``StreamingProducer.send_batch``'s outcomes."""
        return await self._producer._send_batch_checked(batch, "transaction.send_batch")

    @boundary("transaction.send_offsets", ErrorCode.TRANSACTION_FAILED)
    async def send_offsets(
        self,
        consumer: StreamingConsumer,
        offsets: Mapping[tuple[str, int], int] | None = None,
    ) -> Result[None, QiError]:
        """Commit ``consumer``'s group offsets (next offset to read) with this transaction.

        ``offsets=None`` means what the consumer's run loop has processed so far. The
        group metadata goes along, so the broker refuses the offsets of a member that
        lost its partitions. From now on the consumer commits nothing by itself.
        Failures: STREAMING_INVALID_ARGUMENT (not a running consumer of this backend,
        bad offsets), STREAMING_TRANSACTION_FAILED (the group fenced the member: abort),
        STREAMING_PRODUCER_FENCED.
        """
        producer = self._producer
        if not isinstance(consumer, StreamingConsumer):
            return Failure(
                producer._error(
                    ErrorCode.INVALID_ARGUMENT,
                    f"send_offsets needs a StreamingConsumer, got {type(consumer).__name__}",
                    "transaction.send_offsets",
                )
            )
        handed = await consumer._offsets_for_transaction(producer.implementation, offsets)
        if isinstance(handed, Failure):
            return handed
        group, chosen = handed.value
        if chosen:
            await self._native.send_offsets(chosen, group)
        return Success(None)

    @boundary("transaction.send_offsets", ErrorCode.TRANSACTION_FAILED)
    async def _send_group_offsets(
        self, offsets: Mapping[TopicPartition, int], group: object
    ) -> Result[None, QiError]:
        """send_offsets for the run loop, which has the offsets and the group metadata."""
        await self._native.send_offsets(offsets, group)
        return Success(None)

    @boundary("transaction.commit", ErrorCode.TRANSACTION_FAILED)
    async def commit(self) -> Result[None, QiError]:
        """Commit: the transaction's records and offsets become visible together.

        Failures: STREAMING_TRANSACTION_FAILED (call ``abort()``, then retry the work),
        STREAMING_PRODUCER_FENCED (the transaction is over: disconnect the producer),
        STREAMING_TIMEOUT (the outcome is unknown: commit again).
        """
        try:
            await self._native.commit()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = self._producer._escaped(exc, "transaction.commit", ErrorCode.TRANSACTION_FAILED)
            if error.code == ErrorCode.PRODUCER_FENCED:
                # Nothing can complete it any more: the broker aborts it (or already did).
                self._end(TransactionState.ABORTED)
            return Failure(error)
        self._end(TransactionState.COMMITTED)
        return Success(None)

    @boundary("transaction.abort", ErrorCode.TRANSACTION_FAILED)
    async def abort(self) -> Result[None, QiError]:
        """Abort: nothing of the transaction is ever shown to read_committed readers.

        The transaction ends even when the broker could not be told (a fenced producer,
        say): the broker then aborts it by itself. Failures: STREAMING_PRODUCER_FENCED,
        STREAMING_TRANSACTION_FAILED, STREAMING_TIMEOUT.
        """
        try:
            await self._native.abort()
        finally:
            self._end(TransactionState.ABORTED)
        return Success(None)

    async def __aenter__(self) -> Transaction:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._state is TransactionState.OPEN:
            aborted = await self.abort()
            if isinstance(aborted, Failure):
                self._producer._logger.warning("aborting a transaction failed: %s", aborted.error)

    # -- helpers -------------------------------------------------------------------------------

    # -- what the boundary needs: the producer's lifecycle and error table -------------------

    def _refusal(self, operation: str) -> QiError | None:
        producer = self._producer
        if self._state is not TransactionState.OPEN:
            return producer._error(
                ErrorCode.INVALID_ARGUMENT,
                f"the transaction is {self._state.value}: begin another with transaction()",
                operation,
                delivery=NOT_WRITTEN,
            )
        return producer._refusal(operation)

    def _wrong_call(self, operation: str, exc: TypeError) -> QiError:
        return self._producer._wrong_call(operation, exc)

    def _escaped(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        return self._producer._escaped(exc, operation, fallback)

    def _aborted_already(self) -> bool:
        """For the run loop: whether this transaction was aborted already (by its producer's
        ``disconnect()``, say, called from ``on_error``), so that aborting it has nothing
        left to do and nothing to report."""
        return self._state is TransactionState.ABORTED

    def _end(self, state: TransactionState) -> None:
        self._state = state
        self._on_end(self)
