"""The memory consumer: a group member of the in-process broker, run by the shared engine.

:func:`crash` ends one as if its process were killed, for tests of what the group
and the other members do then.
"""

from __future__ import annotations

import itertools
from typing import Final

from qi.base.streaming import ConsumerConfig, StreamingConfig, StreamingConsumer, SubscriptionConfig
from qi.base.streaming.backend import (
    ConsumerBackend,
    OperationFailed,
    PartitionSource,
    abandon,
)
from qi.base.streaming.backends.memory._broker import MemoryBroker, broker_for
from qi.base.streaming.backends.memory._errors import IMPLEMENTATION, unreachable
from qi.base.streaming.backends.memory._member import MemberSource

# Member ids only need to be unique within the process's brokers.
_MEMBER_NUMBERS: Final = itertools.count(1)


class MemoryConsumer(ConsumerBackend):
    """Reads from the in-process broker of its ``brokers`` value as a group member."""

    def __init__(self, config: StreamingConfig, consumer_config: ConsumerConfig) -> None:
        self._config = config
        self._consumer_config = consumer_config
        self._broker: MemoryBroker | None = None
        self._member: MemberSource | None = None

    async def open(self) -> None:
        broker = broker_for(self._config.brokers)
        if not await broker.wait_reachable(self._config.connection_timeout):
            raise OperationFailed(unreachable(self._config, "connect"))
        self._broker = broker

    async def close(self, deadline: float) -> None:
        self._broker = None

    def native_client(self) -> object:
        return self._broker

    def partition_source(self, subscription: SubscriptionConfig) -> PartitionSource:
        broker = self._broker
        assert broker is not None
        self._member = MemberSource(
            broker,
            self._consumer_config.group_id,
            f"{self._config.client_id}-{next(_MEMBER_NUMBERS)}",
            subscription,
            self._config.request_timeout,
            self._consumer_config.session_timeout,
            read_committed=self._consumer_config.isolation_level == "read_committed",
            client_id=self._config.client_id,
        )
        return self._member

    def crash(self) -> None:
        """Vanish from the broker without a word: the group keeps the member until its
        session times out."""
        if self._member is not None:
            self._member.crash()
        self._broker = None


def crash(consumer: StreamingConsumer) -> None:
    """End a memory consumer as if its process were killed (SIGKILL), for tests.

    Its run loop stops at once (a running handler is cancelled), it commits nothing
    more and does not leave its group: the group keeps it, and its partitions, until
    ``session_timeout`` has passed without a heartbeat, as Kafka does; a rebalance then
    evicts it and the other members share its partitions from the committed offsets.
    The consumer counts as disconnected afterwards. Raises TypeError for a consumer of
    another backend.
    """
    if not isinstance(consumer, StreamingConsumer) or consumer.implementation != IMPLEMENTATION:
        raise TypeError(f"crash() needs a memory consumer, got {type(consumer).__name__}")
    backend = abandon(consumer)
    assert isinstance(backend, MemoryConsumer)
    backend.crash()
