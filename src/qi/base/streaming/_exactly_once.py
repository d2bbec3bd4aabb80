"""Exactly-once in the run loop: handler calls inside transactions of one producer.

With ``ConsumerRunConfig.transactional_producer`` set, the dispatcher begins a
transaction before a handler call, hands it to the handler in its payload (so
its sends join it), and ends it after ``transaction_max_messages`` messages,
after ``transaction_max_interval`` seconds, or as soon as no message is
waiting: it adds the consumed offsets (with this member's group metadata, so
the broker fences a member that lost its partitions) and commits. Outputs and
progress become visible together, or not at all. The offsets pass the invisible
records (markers, aborted records) the source moved over once a partition's buffer
drained; an idle partition whose fetches moved past such records only gets them
committed in a transaction of offsets alone, so the group's lag reaches 0.

- A handler failure aborts the open transaction. What it covered goes back to
  the front of its partitions' buffers, so every partition it touched resumes
  from its last committed offset; the failed one after ``retry_backoff``.
- A revocation waits until the open transaction is committed before the
  partitions go. A transaction that handled a partition this member lost
  meanwhile (a handler that outlived the revocation's patience) aborts.
- ``STREAMING_PRODUCER_FENCED`` stops the loop and is reported to ``on_error``:
  another producer with the same ``transactional_id`` owns the work now.

The at-least-once dispatcher's per-message path stays as it is: this subclass
has its own loop and delivery methods.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from qi.base import Failure, QiError, Result
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import ConsumerRunConfig
from qi.base.streaming._dispatch import Dispatcher, ErrorFactory, PartitionState, Report
from qi.base.streaming._types import ConsumedMessage, EachBatchPayload, EachMessagePayload
from qi.base.streaming.backend import PartitionSource, TopicPartition

if TYPE_CHECKING:
    from qi.base.streaming._producer import StreamingProducer
    from qi.base.streaming._transaction import Transaction

# How often a commit whose outcome is unknown (a timeout) is tried again before aborting.
_COMMIT_ATTEMPTS: Final = 3

Translate = Callable[[BaseException, str, ErrorCode], QiError]


@dataclass(slots=True, eq=False)
class _Covered:
    """What the open transaction covers of one partition."""

    part: PartitionState
    generation: int
    processed_before: int | None
    """The partition's processed offset when the transaction first handled it."""
    messages: list[ConsumedMessage] = field(default_factory=list)
    """Handled in the transaction, in offset order: handed back if it aborts."""


class TransactionalDispatcher(Dispatcher):
    """Calls the handler within transactions of ``producer``; see the module docstring."""

    def __init__(
        self,
        partitions: dict[TopicPartition, PartitionState],
        run_config: ConsumerRunConfig,
        source: PartitionSource,
        *,
        producer: StreamingProducer,
        batch_size: int,
        buffer_limit: int,
        error: ErrorFactory,
        report: Report,
        translate: Translate,
    ) -> None:
        super().__init__(
            partitions,
            run_config,
            source,
            batch_size=batch_size,
            buffer_limit=buffer_limit,
            error=error,
            report=report,
        )
        self._producer = producer
        self._translate = translate
        self._max_messages = run_config.transaction_max_messages
        self._max_interval = run_config.transaction_max_interval
        self._transaction: Transaction | None = None
        self._deadline = 0.0
        self._count = 0
        self._covered: dict[TopicPartition, _Covered] = {}
        # Set while a revocation waits for the open transaction to end.
        self._settled: asyncio.Future[None] | None = None
        self._running = False
        self.fenced = False
        """Set when the producer was fenced: the loop stopped for good."""

    # -- what the engine calls ---------------------------------------------------------------

    async def before_revocation(
        self, keys: Collection[TopicPartition], patience: float
    ) -> TopicPartition | None:
        """Wait (``patience`` s) until the open transaction ended, committed if it can be.

        Returns the partition of a handler call still running then, else None.
        """
        if not self._running:
            return None
        if self._settled is None:
            self._settled = asyncio.get_running_loop().create_future()
        self.work.set()
        try:
            async with asyncio.timeout(patience):
                await asyncio.shield(self._settled)
        except TimeoutError:
            return self._busy
        return None

    def handler_awaits_stop(self) -> None:
        """As the at-least-once loop's; here the revocation waits for the open transaction,
        which ``after_stop`` aborted."""
        super().handler_awaits_stop()
        self._release_settled()

    async def after_stop(self) -> None:
        """A loop cancelled in the middle of a transaction leaves it open: abort it."""
        transaction, self._transaction = self._transaction, None
        self._covered = {}
        if transaction is not None and not transaction._aborted_already():
            await self._tell(await transaction.abort())

    async def run(self) -> None:
        """Call the handler in transactions until ``stopping``; commit what was handled then."""
        self._running = True
        try:
            while not self.stopping:
                if self._settled is not None:
                    await self._end_transaction()
                    self._release_settled()
                    continue
                part, wait = self._next_ready()
                if part is None:
                    if self._transaction is not None:
                        await self._end_transaction()  # nothing is waiting: no reason to wait
                        continue
                    if await self._commit_skipped():
                        continue
                    self.work.clear()
                    try:
                        async with asyncio.timeout(wait):
                            await self.work.wait()
                    except TimeoutError:
                        pass
                    continue
                covered = self._covered.get(part.key)
                if covered is not None and covered.part is not part:
                    await self._end_transaction()  # it covers a lost partition: it aborts
                if self._transaction is None and not await self._begin():
                    continue
                if self._run.each_batch is not None:
                    await self._deliver_batch_in_transaction(part)
                else:
                    await self._deliver_messages_in_transaction(part)
                if part.paused and len(part.buffer) < self._buffer_limit // 2:
                    part.paused = False
                    self._source.resume([part.key])
                if self._count >= self._max_messages or time.monotonic() >= self._deadline:
                    await self._end_transaction()
                # As in the at-least-once loop: a handler that never awaits would otherwise
                # hold the event loop for a whole transaction (the fetches, the service's
                # other tasks and aiokafka's group heartbeat among them).
                await asyncio.sleep(0)
            if not self.fenced:
                await self._end_transaction()
        finally:
            self._running = False
            self._release_settled()

    # -- delivery ----------------------------------------------------------------------------

    async def _deliver_messages_in_transaction(self, part: PartitionState) -> None:
        handler = self._run.each_message
        transaction = self._transaction
        assert handler is not None and transaction is not None
        topic, partition = part.key
        generation = part.generation
        buffer = part.buffer
        covered = self._cover(part)
        for _ in range(min(self._batch_size, self._max_messages - self._count)):
            if part.generation != generation or not self._may_deliver(part):
                return
            message = buffer[0]
            payload = EachMessagePayload(topic, partition, message, transaction)
            failure = await self._call(handler, payload, part)
            if part.generation != generation:
                return
            if failure is not None:
                await self._abort_open()
                await self._handler_failed(part, failure, message)
                return
            buffer.popleft()
            covered.messages.append(message)
            part.processed = message.offset + 1
            part.attempts = 0
            self._count += 1

    async def _deliver_batch_in_transaction(self, part: PartitionState) -> None:
        handler = self._run.each_batch
        transaction = self._transaction
        assert handler is not None and transaction is not None
        if not self._may_deliver(part):
            return
        topic, partition = part.key
        generation = part.generation
        room = min(self._batch_size, self._max_messages - self._count)
        messages = tuple(itertools.islice(part.buffer, room))
        covered = self._cover(part)
        payload = EachBatchPayload(topic, partition, messages, transaction)
        failure = await self._call(handler, payload, part)
        if part.generation != generation:
            return
        if failure is not None:
            await self._abort_open()
            await self._handler_failed(part, failure, messages[0], batch_size=len(messages))
            return
        for _ in messages:
            part.buffer.popleft()
        covered.messages.extend(messages)
        part.processed = messages[-1].offset + 1
        part.attempts = 0
        self._count += len(messages)

    def _may_deliver(self, part: PartitionState) -> bool:
        """Whether a handler call on ``part`` may start in the open transaction. Checked
        again after every await: beginning the transaction, or the last handler call."""
        return (
            bool(part.buffer)
            and not self.stopping
            and not part.revoking
            and self._settled is None
            and time.monotonic() < self._deadline
        )

    def _cover(self, part: PartitionState) -> _Covered:
        """Record, before its handler runs, that the open transaction handles ``part``."""
        covered = self._covered.get(part.key)
        if covered is None:
            covered = self._covered[part.key] = _Covered(part, part.generation, part.processed)
        return covered

    # -- transactions ------------------------------------------------------------------------

    async def _begin(self) -> bool:
        began = await self._producer.transaction()
        if isinstance(began, Failure):
            await self._tell(began)
            if not self.stopping:
                await asyncio.sleep(self._run.retry_backoff)
            return False
        self._transaction = began.value
        self._deadline = time.monotonic() + self._max_interval
        self._count = 0
        return True

    async def _end_transaction(self) -> None:
        """Commit the open transaction with the offsets it covers; abort it if it cannot."""
        transaction, covered = self._transaction, self._covered
        if transaction is None:
            return
        self._transaction, self._covered = None, {}
        if any(self._partitions.get(key) is not entry.part for key, entry in covered.items()):
            # It handled a partition this member lost: without its offsets, committing
            # would publish outputs that the partition's next owner produces again.
            await self._abort(transaction, covered)
            return
        # Past the markers the source moved over too, once a partition's buffer drained.
        offsets: dict[TopicPartition, int] = {}
        for key, entry in covered.items():
            progress = entry.part.progress()
            if progress is not None and (entry.messages or progress != entry.part.committed):
                offsets[key] = progress
        if offsets:
            sent = await self._send_offsets(transaction, offsets)
            if isinstance(sent, Failure):
                await self._tell(sent)
                await self._abort(transaction, covered)
                return
        committed = await transaction.commit()
        for _ in range(_COMMIT_ATTEMPTS - 1):
            if not (isinstance(committed, Failure) and committed.error.code == ErrorCode.TIMEOUT):
                break
            await self._tell(committed)
            committed = await transaction.commit()
        if isinstance(committed, Failure):
            await self._tell(committed)
            if not self.fenced:
                await self._abort(transaction, covered)
            return
        for key, offset in offsets.items():
            covered[key].part.committed = offset

    async def _commit_skipped(self) -> bool:
        """Send, in a transaction of their own, the offsets of idle partitions whose fetches
        moved past invisible records only (a marker, an aborted transaction) since their
        last commit; True when there were any. Without it a group would stay behind them
        until its next message. A failure waits ``retry_backoff`` before the next try."""
        skipped = [
            part
            for part in self._partitions.values()
            if not part.buffer
            and not part.revoking
            and part.fetched_to is not None
            and part.progress() != part.committed
        ]
        if not skipped or not await self._begin():
            return False
        for part in skipped:
            self._cover(part)
        await self._end_transaction()
        if any(part.progress() != part.committed for part in skipped) and not self.stopping:
            await asyncio.sleep(self._run.retry_backoff)
        return True

    async def _send_offsets(
        self, transaction: Transaction, offsets: dict[TopicPartition, int]
    ) -> Result[None, QiError]:
        operation = "transaction.send_offsets"
        try:
            group = await self._source.group_metadata()
        except Exception as exc:
            return Failure(self._translate(exc, operation, ErrorCode.TRANSACTION_FAILED))
        return await transaction._send_group_offsets(offsets, group)

    async def _abort_open(self) -> None:
        transaction, covered = self._transaction, self._covered
        self._transaction, self._covered = None, {}
        if transaction is not None:
            await self._abort(transaction, covered)

    async def _abort(
        self, transaction: Transaction, covered: dict[TopicPartition, _Covered]
    ) -> None:
        """Abort, and hand what it covered back to the partitions that are still ours."""
        if not transaction._aborted_already():
            await self._tell(await transaction.abort())
        for key, entry in covered.items():
            part = entry.part
            if self._partitions.get(key) is not part or part.generation != entry.generation:
                continue  # revoked or sought: its next owner, or its new position, decides
            part.buffer.extendleft(reversed(entry.messages))
            part.processed = entry.processed_before
        self.work.set()

    async def _tell(self, outcome: Result[object, QiError]) -> None:
        """Report a failed transaction call; a fenced producer stops the loop for good."""
        if not isinstance(outcome, Failure):
            return
        if outcome.error.code == ErrorCode.PRODUCER_FENCED:
            self.fenced = self.stopping = True
        await self._report(outcome.error)

    def _release_settled(self) -> None:
        waiter, self._settled = self._settled, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def dispatcher_for(
    partitions: dict[TopicPartition, PartitionState],
    run_config: ConsumerRunConfig,
    source: PartitionSource,
    *,
    batch_size: int,
    buffer_limit: int,
    error: ErrorFactory,
    report: Report,
    translate: Translate,
) -> Dispatcher:
    """The at-least-once dispatcher, or the transactional one when the run names a producer."""
    producer = run_config.transactional_producer
    if producer is None:
        return Dispatcher(
            partitions,
            run_config,
            source,
            batch_size=batch_size,
            buffer_limit=buffer_limit,
            error=error,
            report=report,
        )
    return TransactionalDispatcher(
        partitions,
        run_config,
        source,
        producer=producer,
        batch_size=batch_size,
        buffer_limit=buffer_limit,
        error=error,
        report=report,
        translate=translate,
    )
