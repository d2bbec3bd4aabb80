"""Failing at once the queued batches of a topic the broker says was deleted.

A batch for a deleted topic gets UNKNOWN_TOPIC_OR_PARTITION, which aiokafka retries:
it refreshes the metadata, finds no leader for the partition and waits (asking for
metadata again and again) until the batch expires after ``request_timeout``, so a
send to a deleted topic would end as a timeout. Kafka's answer is final, though:
the topic is gone. So every metadata refresh is watched; when a topic (or a
partition) with queued batches is missing from it, a metadata request of our own
confirms that the broker does not know it, and those batches fail with
UnknownTopicOrPartitionError, never to be sent: their sends report
STREAMING_TOPIC_NOT_FOUND with ``delivery="not_written"``. An idempotent producer also
forgets its sequence numbers for the topic, which a topic created again under the same
name starts from 0.

The watch reads and takes out the producer's queued batches and forgets sequence
numbers through ``_private`` (aiokafka has no public call for either).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import Any, Final

from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.structs import TopicPartition

from qi.base.streaming.backends.aiokafka import _private
from qi.base.streaming.backends.aiokafka._metadata import topic_metadata

_UNKNOWN_TOPIC_OR_PARTITION: Final = UnknownTopicOrPartitionError.errno


class DeletedTopicWatch:
    """Watches one AIOKafkaProducer's metadata for topics deleted under its queued batches."""

    def __init__(self, producer: Any, logger: logging.Logger) -> None:
        self._producer = producer
        self._logger = logger
        self._checking: dict[str, asyncio.Task[None]] = {}

    def start(self) -> None:
        """Watch every metadata refresh of the producer's client from now on."""
        self._producer.client.cluster.add_listener(self._refreshed)

    def stop(self) -> None:
        """Stop watching; a confirmation still running is cancelled."""
        self._producer.client.cluster.remove_listener(self._refreshed)
        for task in self._checking.values():
            task.cancel()
        self._checking.clear()

    def _queued(self) -> dict[TopicPartition, Any]:
        return _private.queued_batches(self._producer)

    def _refreshed(self, cluster: Any) -> None:
        """Metadata listener: confirm each queued topic the refresh no longer shows whole."""
        missing: set[str] = set()
        for tp in self._queued():
            partitions = cluster.partitions_for_topic(tp.topic)
            if partitions is None or tp.partition not in partitions:
                missing.add(tp.topic)
        for topic in missing - set(self._checking):
            task = asyncio.ensure_future(self._confirm(topic))
            self._checking[topic] = task
            task.add_done_callback(functools.partial(self._checked, topic))

    def _checked(self, topic: str, _: object) -> None:
        self._checking.pop(topic, None)

    async def _confirm(self, topic: str) -> None:
        try:
            metadata = await topic_metadata(self._producer.client, [topic])
        except KafkaError:  # no answer: aiokafka's own retries and expiry go on
            return
        for entry in metadata["topics"]:
            if entry["topic"] != topic:
                continue
            if entry["error_code"] == _UNKNOWN_TOPIC_OR_PARTITION:
                self._fail(tp for tp in self._queued() if tp.topic == topic)
            elif entry["error_code"] == 0:
                exist = {partition["partition"] for partition in entry["partitions"]}
                self._fail(
                    tp for tp in self._queued() if tp.topic == topic and tp.partition not in exist
                )
            else:
                return
            # Deleted, or created again with fewer partitions (Kafka never removes one): a
            # broker knows no sequence numbers of this producer for the topic any more, so an
            # idempotent producer's next batch to it must start from 0 again.
            self._forget_sequences(topic)

    def _forget_sequences(self, topic: str) -> None:
        sequences = _private.sequence_numbers(self._producer)
        if sequences is not None:
            for tp in [tp for tp in sequences if tp.topic == topic]:
                del sequences[tp]

    def _fail(self, partitions: Iterable[TopicPartition]) -> None:
        queued = self._queued()
        for tp in list(partitions):
            failed = 0
            while tp in queued:
                # What aiokafka does with a batch that expired without a leader: take it out
                # as if to send it (its bookkeeping stays right), then fail it.
                batch = _private.take_out_batch(self._producer, tp)
                batch.failure(
                    exception=UnknownTopicOrPartitionError(
                        f"{tp.topic}[{tp.partition}] does not exist any more"
                    )
                )
                failed += 1
            if failed:
                self._logger.debug("failed %d batch(es) of deleted %s", failed, tp)
