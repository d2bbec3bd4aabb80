"""The confluent backend's transactions: librdkafka's transactional producer.

Each call blocks until the transaction coordinator answered (or its timeout), so
it runs on the producer's worker thread, never on the event loop. Offsets go with
the consumer's ``ConsumerGroupMetadata`` (group id, generation, member id), so the
broker refuses those of a member that lost its partitions (KIP-447).

librdkafka does not always keep to its own timeout: after connections were cut,
``send_offsets_to_transaction`` (and ``commit_transaction``) can block for tens of
seconds or for good (librdkafka issue 5456: its coordinator requests never time out;
``tests/invariants/librdkafka_send_offsets_hang.py`` shows it with the raw client).
So the caller stops waiting after the timeout and ``_GRACE``, with librdkafka's own
``_TIMED_OUT``; the native call goes on on the worker thread. The next call of the same
kind (a commit tried again, the abort ``begin`` resumes) waits for that one instead of
asking librdkafka again: once the first completed, librdkafka answers a second with
``_STATE`` ("Operation not valid in state Ready"), and a transaction that committed would
be reported failed, then aborted and redone.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from typing import Final

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as NativePartition

from qi.base.streaming.backend import TopicPartition
from qi.base.streaming.backends.confluent._worker import BlockingWorker

_GRACE: Final = 1.0
"""Seconds past a call's own timeout that its caller still waits for librdkafka."""


class ConfluentTransactions:
    """A transactional ``confluent_kafka.Producer``'s begin, offsets, commit and abort."""

    def __init__(self, producer: Producer, worker: BlockingWorker, timeout: float) -> None:
        self._producer = producer
        self._worker = worker
        self._timeout = timeout
        # An abort that failed (timed out, say): librdkafka goes on with it only when asked
        # again ("retry call to resume") and refuses to begin meanwhile, while the
        # Transaction has ended. The next begin asks.
        self._abort_owed = False
        # A call whose caller stopped waiting (its name, its future): the next call of that
        # name waits for it rather than asking librdkafka a second time.
        self._late: tuple[str, asyncio.Future[object]] | None = None

    async def begin(self) -> None:
        if self._abort_owed:
            abort = functools.partial(self._producer.abort_transaction, self._timeout)
            try:
                await self._bounded("abort", abort, abortable=False)
            except KafkaException as exc:
                # _STATE: librdkafka has no transaction to abort (a commit that timed out
                # completed meanwhile): nothing is owed; begin_transaction says if it can.
                if not (exc.args and isinstance(exc.args[0], KafkaError)):
                    raise
                if exc.args[0].code() != KafkaError._STATE:
                    raise
            self._abort_owed = False
        # Local to librdkafka: no request, so no need to leave the loop.
        self._producer.begin_transaction()

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group: object) -> None:
        positions = [
            NativePartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
        ]
        send = functools.partial(
            self._producer.send_offsets_to_transaction, positions, group, self._timeout
        )
        # As librdkafka says of its own offset-commit timeouts: abort the transaction.
        await self._bounded("send_offsets", send, abortable=True)

    async def commit(self) -> None:
        commit = functools.partial(self._producer.commit_transaction, self._timeout)
        # A timeout leaves the outcome unknown: commit again (which waits for this call).
        await self._bounded("commit", commit, abortable=False)

    async def abort(self) -> None:
        self._abort_owed = True
        abort = functools.partial(self._producer.abort_transaction, self._timeout)
        await self._bounded("abort", abort, abortable=False)
        self._abort_owed = False

    async def _bounded(self, name: str, call: Callable[[], object], *, abortable: bool) -> None:
        """Run ``call`` on the worker, or wait for the late call of the same ``name``; raise
        ``_TIMED_OUT`` if it outlives its timeout."""
        late, self._late = self._late, None
        if late is not None and late[0] == name:
            running = late[1]
        else:
            running = self._worker.submit(call)
            running.add_done_callback(_retrieved)
        try:
            async with asyncio.timeout(self._timeout + _GRACE):
                await asyncio.shield(running)
        except asyncio.CancelledError:
            self._late = (name, running)
            raise
        except TimeoutError:
            self._late = (name, running)
            reason = f"librdkafka did not return within its timeout of {self._timeout:g}s"
            error = KafkaError(
                KafkaError._TIMED_OUT,
                reason,
                retriable=not abortable,
                txn_requires_abort=abortable,
            )
            raise KafkaException(error) from None


def _retrieved(call: asyncio.Future[object]) -> None:
    """Take a finished call's exception, so one nobody waits for any more is not logged."""
    if not call.cancelled():
        call.exception()
