"""The aiokafka backend object: builds the aiokafka-backed producers, consumers and admins."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from qi.base import QiError
from qi.base.streaming import ConsumerConfig, ErrorCode, ProducerConfig, StreamingConfig
from qi.base.streaming.backend import (
    AdminBackend,
    ConnectorBackend,
    ConsumerBackend,
    ProducerBackend,
)
from qi.base.streaming.backends.aiokafka._admin import AiokafkaAdmin
from qi.base.streaming.backends.aiokafka._connect import bootstrap_to_its_end
from qi.base.streaming.backends.aiokafka._consumer import AiokafkaConsumer
from qi.base.streaming.backends.aiokafka._errors import IMPLEMENTATION, translate_native
from qi.base.streaming.backends.aiokafka._producer import AiokafkaProducer
from qi.base.streaming.backends.aiokafka._settings import client_settings

# Seconds the probe client may take to close its sockets.
_CLOSE_GRACE: Final = 1.0


class AiokafkaBackend(ConnectorBackend):
    """Producers, consumers and admins built on aiokafka (pure Python)."""

    implementation = IMPLEMENTATION

    def __init__(self, config: StreamingConfig, logger: logging.Logger) -> None:
        self._config = config
        self._logger = logger

    def producer(self, config: ProducerConfig) -> ProducerBackend:
        return AiokafkaProducer(self._config, config, self._logger)

    def consumer(self, config: ConsumerConfig) -> ConsumerBackend:
        return AiokafkaConsumer(self._config, config, self._logger)

    def admin(self) -> AdminBackend:
        return AiokafkaAdmin(self._config, self._logger)

    async def probe(self) -> bool:
        client = AIOKafkaClient(**client_settings(self._config))
        # A probe cut short by its timeout must not drop a connection (see _connect).
        bootstrap_to_its_end(client)
        try:
            async with asyncio.timeout(self._config.connection_timeout):
                await client.bootstrap()
            return True
        except (TimeoutError, KafkaError, OSError):
            return False
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_GRACE):
                    await client.close()

    def translate_error(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        return translate_native(exc, operation, fallback)
