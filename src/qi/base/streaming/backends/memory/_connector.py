"""The memory backend object: builds endpoint backends bound to the broker of ``brokers``."""

from __future__ import annotations

import logging

from qi.base import QiError
from qi.base.streaming import ConsumerConfig, ErrorCode, ProducerConfig, StreamingConfig
from qi.base.streaming.backend import (
    AdminBackend,
    ConnectorBackend,
    ConsumerBackend,
    ProducerBackend,
)
from qi.base.streaming.backends.memory._admin import MemoryAdmin
from qi.base.streaming.backends.memory._broker import broker_for
from qi.base.streaming.backends.memory._consumer import MemoryConsumer
from qi.base.streaming.backends.memory._errors import IMPLEMENTATION, translate
from qi.base.streaming.backends.memory._producer import MemoryProducer


class MemoryBackend(ConnectorBackend):
    """The ``memory`` backend: an in-process broker shared by equal ``brokers`` values."""

    implementation = IMPLEMENTATION

    def __init__(self, config: StreamingConfig, logger: logging.Logger | None = None) -> None:
        self._config = config

    def producer(self, config: ProducerConfig) -> ProducerBackend:
        return MemoryProducer(self._config, config)

    def consumer(self, config: ConsumerConfig) -> ConsumerBackend:
        return MemoryConsumer(self._config, config)

    def admin(self) -> AdminBackend:
        return MemoryAdmin(self._config)

    async def probe(self) -> bool:
        return broker_for(self._config.brokers).reachable

    def translate_error(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        return translate(exc, operation, fallback)
