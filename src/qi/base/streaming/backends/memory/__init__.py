"""The ``memory`` backend: a Kafka-like broker inside this process.

Every client configured with the same ``brokers`` value talks to one
:class:`MemoryBroker` holding topics, partitions, offsets and consumer groups,
so tests and examples run without a server. Keyed messages are partitioned by
Kafka's murmur2 of the key, as the Java client does; unkeyed ones stick to one
partition for a while, as Kafka's clients do (KIP-480). It refuses what a Kafka
broker with default settings refuses: record batches over ``message.max.bytes``
or the topic's ``max.message.bytes``, keyless records on compacted topics,
unknown or invalid topic configs and more than one replica. Groups share
partitions with a sticky, balanced assignment and rebalance when members come
and go or matching topics appear.

:func:`broker_for` returns the broker of a ``brokers`` value: the hook for
injecting faults in tests (``fail_next_produces``, ``fail_next_commits``,
``fail_next_fetches``, ``delay_deliveries``, ``set_unreachable``, ``reset``,
``append_record``) and for watching its groups
(``observe_groups``); :func:`crash` kills a consumer as SIGKILL would, and the
group evicts it after its session timeout. ``get_native_client()`` of a memory
producer, consumer or admin returns the same broker.
"""

from __future__ import annotations

import logging

from qi.base.streaming import StreamingConfig
from qi.base.streaming.backend import ConnectorBackend, partition_for_key
from qi.base.streaming.backends.memory._broker import MemoryBroker, broker_for, discard_broker
from qi.base.streaming.backends.memory._connector import MemoryBackend
from qi.base.streaming.backends.memory._consumer import crash
from qi.base.streaming.backends.memory._errors import BrokerError
from qi.base.streaming.backends.memory._group import GroupEvent

__all__ = [
    "BrokerError",
    "GroupEvent",
    "MemoryBackend",
    "MemoryBroker",
    "backend",
    "broker_for",
    "crash",
    "discard_broker",
    "partition_for_key",
]


def backend(config: StreamingConfig, logger: logging.Logger) -> ConnectorBackend:
    """The memory backend for ``config`` (called by ``create_connector``)."""
    return MemoryBackend(config, logger)
