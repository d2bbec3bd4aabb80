"""The confluent backend's transactions: librdkafka's transactional producer.

Each call blocks until the transaction coordinator answered (or its timeout), so
it runs on the producer's worker thread, never on the event loop. Offsets go with
the consumer's ``ConsumerGroupMetadata`` (group id, generation, member id), so the
broker refuses those of a member that lost its partitions (KIP-447).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from confluent_kafka import Producer
from confluent_kafka import TopicPartition as NativePartition

from qi.base.streaming.backend import TopicPartition
from qi.base.streaming.backends.confluent._worker import BlockingWorker


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

    async def begin(self) -> None:
        if self._abort_owed:
            await self._worker.run(
                functools.partial(self._producer.abort_transaction, self._timeout)
            )
            self._abort_owed = False
        # Local to librdkafka: no request, so no need to leave the loop.
        self._producer.begin_transaction()

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group: object) -> None:
        positions = [
            NativePartition(topic, partition, offset)
            for (topic, partition), offset in offsets.items()
        ]
        await self._worker.run(
            functools.partial(
                self._producer.send_offsets_to_transaction, positions, group, self._timeout
            )
        )

    async def commit(self) -> None:
        await self._worker.run(functools.partial(self._producer.commit_transaction, self._timeout))

    async def abort(self) -> None:
        self._abort_owed = True
        await self._worker.run(functools.partial(self._producer.abort_transaction, self._timeout))
        self._abort_owed = False
