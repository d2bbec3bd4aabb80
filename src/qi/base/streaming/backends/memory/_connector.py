"""The memory connector: builds endpoints bound to the process's broker for ``brokers``."""

from __future__ import annotations

from qi.base.streaming._admin import StreamingAdmin
from qi.base.streaming._config import ConsumerConfig, ProducerConfig
from qi.base.streaming._connector import StreamingConnector
from qi.base.streaming._consumer import StreamingConsumer
from qi.base.streaming._producer import StreamingProducer
from qi.base.streaming.backends.memory._admin import MemoryAdmin
from qi.base.streaming.backends.memory._broker import broker_for
from qi.base.streaming.backends.memory._consumer import MemoryConsumer
from qi.base.streaming.backends.memory._errors import IMPLEMENTATION
from qi.base.streaming.backends.memory._producer import MemoryProducer


class MemoryConnector(StreamingConnector):
    """The ``memory`` backend: an in-process broker shared by equal ``brokers`` values."""

    implementation = IMPLEMENTATION

    def _new_producer(self, config: ProducerConfig) -> StreamingProducer:
        return MemoryProducer(self._config, config, self._logger)

    def _new_consumer(self, config: ConsumerConfig) -> StreamingConsumer:
        return MemoryConsumer(self._config, config, self._logger)

    def _new_admin(self) -> StreamingAdmin:
        return MemoryAdmin(self._config, self._logger)

    async def _probe(self) -> bool:
        return broker_for(self._config.brokers).reachable
