"""The aiokafka connector: builds the aiokafka-backed producers, consumers and admins."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from qi.base.streaming._admin import StreamingAdmin
from qi.base.streaming._config import ConsumerConfig, ProducerConfig
from qi.base.streaming._connector import StreamingConnector
from qi.base.streaming._consumer import StreamingConsumer
from qi.base.streaming._producer import StreamingProducer
from qi.base.streaming.backends.aiokafka._admin import AiokafkaAdmin
from qi.base.streaming.backends.aiokafka._consumer import AiokafkaConsumer
from qi.base.streaming.backends.aiokafka._producer import AiokafkaProducer
from qi.base.streaming.backends.aiokafka._settings import client_settings

# Seconds the probe client may take to close its sockets.
_CLOSE_GRACE: Final = 1.0


class AiokafkaConnector(StreamingConnector):
    """Producers, consumers and admins built on aiokafka (pure Python)."""

    implementation = "aiokafka"

    def _new_producer(self, config: ProducerConfig) -> StreamingProducer:
        return AiokafkaProducer(self._config, config, logger=self._logger)

    def _new_consumer(self, config: ConsumerConfig) -> StreamingConsumer:
        return AiokafkaConsumer(self._config, config, logger=self._logger)

    def _new_admin(self) -> StreamingAdmin:
        return AiokafkaAdmin(self._config, logger=self._logger)

    async def _probe(self) -> bool:
        client = AIOKafkaClient(**client_settings(self._config))
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
