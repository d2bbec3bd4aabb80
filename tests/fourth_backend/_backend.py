"""The fourth backend's objects: proxies over the memory backend's, through the interface.

Each method hands its plain inputs to the wrapped object and gives back its plain
outputs with the errors renamed to this backend (``context["implementation"]``):
the per-message outcomes and per-topic error maps it returns, and the
``OperationFailed`` it raises. Native errors pass through unchanged, for
:meth:`FourthBackend.translate_error` to map at the boundary.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Collection, Mapping, Sequence
from typing import Final, Generic, TypeVar

from qi.base import Failure, QiError, Result
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    ErrorCode,
    GroupDescription,
    PartitionOffsets,
    ProducerConfig,
    ProduceResult,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    TopicMetadata,
)
from qi.base.streaming.backend import (
    AdminBackend,
    ConnectorBackend,
    ConsumerBackend,
    EndpointBackend,
    NativeTransactions,
    OperationFailed,
    PartitionSource,
    ProducerBackend,
    RebalanceListener,
    SeekTarget,
    TopicPartition,
)
from qi.base.streaming.backends import memory

IMPLEMENTATION: Final = "fourth"

T = TypeVar("T")
E = TypeVar("E", bound=EndpointBackend)


def _ours(error: QiError) -> QiError:
    return error.with_context(implementation=IMPLEMENTATION)


async def _renamed(step: Awaitable[T]) -> T:
    """Await a step of the wrapped backend; a QiError it raises is renamed to this one."""
    try:
        return await step
    except OperationFailed as failed:
        raise OperationFailed(_ours(failed.error)) from failed


def _outcomes(outcomes: Sequence[ProduceResult | QiError]) -> list[ProduceResult | QiError]:
    return [_ours(outcome) if isinstance(outcome, QiError) else outcome for outcome in outcomes]


def _per_topic(errors: Mapping[str, QiError]) -> dict[str, QiError]:
    return {name: _ours(error) for name, error in errors.items()}


class FourthBackend(ConnectorBackend):
    """Builds proxies around the memory backend's producer, consumer and admin."""

    implementation = IMPLEMENTATION

    def __init__(self, config: StreamingConfig, logger: logging.Logger) -> None:
        self._wrapped = memory.backend(config, logger)

    def producer(self, config: ProducerConfig) -> ProducerBackend:
        return _Producer(self._wrapped.producer(config))

    def consumer(self, config: ConsumerConfig) -> ConsumerBackend:
        return _Consumer(self._wrapped.consumer(config))

    def admin(self) -> AdminBackend:
        return _Admin(self._wrapped.admin())

    async def probe(self) -> bool:
        return await self._wrapped.probe()

    def translate_error(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        return _ours(self._wrapped.translate_error(exc, operation, fallback))


class _Wrapping(Generic[E]):
    """What every endpoint of this backend does alike: open and expose the wrapped one."""

    def __init__(self, wrapped: E) -> None:
        self._wrapped = wrapped
        self.close_grace = wrapped.close_grace

    async def open(self) -> None:
        await _renamed(self._wrapped.open())

    def native_client(self) -> object:
        return self._wrapped.native_client()


class _Producer(_Wrapping[ProducerBackend], ProducerBackend):
    async def close(self) -> None:
        await _renamed(self._wrapped.close())

    async def send(self, topic: str, message: StreamingMessage) -> Result[ProduceResult, QiError]:
        outcome = await _renamed(self._wrapped.send(topic, message))
        return Failure(_ours(outcome.error)) if isinstance(outcome, Failure) else outcome

    async def send_batch(
        self, topic: str, messages: Sequence[StreamingMessage]
    ) -> Sequence[ProduceResult | QiError]:
        return _outcomes(await _renamed(self._wrapped.send_batch(topic, messages)))

    def transactions(self) -> NativeTransactions:
        return _Transactions(self._wrapped.transactions())


class _Transactions:
    def __init__(self, wrapped: NativeTransactions) -> None:
        self._wrapped = wrapped

    async def begin(self) -> None:
        await _renamed(self._wrapped.begin())

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group: object) -> None:
        await _renamed(self._wrapped.send_offsets(offsets, group))

    async def commit(self) -> None:
        await _renamed(self._wrapped.commit())

    async def abort(self) -> None:
        await _renamed(self._wrapped.abort())


class _Consumer(_Wrapping[ConsumerBackend], ConsumerBackend):
    async def close(self, deadline: float) -> None:
        await _renamed(self._wrapped.close(deadline))

    def partition_source(self, subscription: SubscriptionConfig) -> PartitionSource:
        return _Source(self._wrapped.partition_source(subscription))


class _Source(PartitionSource):
    def __init__(self, wrapped: PartitionSource) -> None:
        self._wrapped = wrapped

    async def start(self, listener: RebalanceListener) -> None:
        await _renamed(self._wrapped.start(listener))

    async def fetch(
        self, max_messages: int, max_wait: float
    ) -> Mapping[TopicPartition, Sequence[ConsumedMessage]]:
        return await _renamed(self._wrapped.fetch(max_messages, max_wait))

    def fetch_positions(self) -> Mapping[TopicPartition, int]:
        return self._wrapped.fetch_positions()

    def end_offsets(self) -> Mapping[TopicPartition, int]:
        return self._wrapped.end_offsets()

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        await _renamed(self._wrapped.commit(offsets))

    async def seek(self, partition: TopicPartition, target: SeekTarget) -> None:
        await _renamed(self._wrapped.seek(partition, target))

    async def rewind(self, positions: Mapping[TopicPartition, int | None]) -> None:
        await _renamed(self._wrapped.rewind(positions))

    def pause(self, partitions: Collection[TopicPartition]) -> None:
        self._wrapped.pause(partitions)

    def resume(self, partitions: Collection[TopicPartition]) -> None:
        self._wrapped.resume(partitions)

    async def group_metadata(self) -> object:
        return await _renamed(self._wrapped.group_metadata())

    async def stop(self, patience: float) -> None:
        await _renamed(self._wrapped.stop(patience))


class _Admin(_Wrapping[AdminBackend], AdminBackend):
    async def close(self) -> None:
        await _renamed(self._wrapped.close())

    async def create_topics(self, topics: Sequence[TopicConfig]) -> Mapping[str, QiError]:
        return _per_topic(await _renamed(self._wrapped.create_topics(topics)))

    async def delete_topics(self, names: Sequence[str]) -> Mapping[str, QiError]:
        return _per_topic(await _renamed(self._wrapped.delete_topics(names)))

    async def list_topics(self) -> Sequence[str]:
        return await _renamed(self._wrapped.list_topics())

    async def describe_topics(self, names: Sequence[str]) -> Mapping[str, TopicMetadata]:
        return await _renamed(self._wrapped.describe_topics(names))

    async def topic_offsets(self, topic: str) -> tuple[PartitionOffsets, ...] | None:
        return await _renamed(self._wrapped.topic_offsets(topic))

    async def list_groups(self) -> Sequence[str]:
        return await _renamed(self._wrapped.list_groups())

    async def describe_group(self, group_id: str) -> GroupDescription:
        return await _renamed(self._wrapped.describe_group(group_id))

    async def committed_offsets(self, group_id: str) -> Mapping[TopicPartition, int]:
        return await _renamed(self._wrapped.committed_offsets(group_id))

    async def offsets_at(self, topic: str, timestamp_ms: int) -> Mapping[int, int | None]:
        return await _renamed(self._wrapped.offsets_at(topic, timestamp_ms))

    async def alter_offsets(self, group_id: str, offsets: Mapping[TopicPartition, int]) -> None:
        await _renamed(self._wrapped.alter_offsets(group_id, offsets))

    async def delete_group(self, group_id: str) -> None:
        await _renamed(self._wrapped.delete_group(group_id))
