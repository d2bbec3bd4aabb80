"""The confluent backend object: builds librdkafka-backed producers, consumers and admins."""

from __future__ import annotations

import logging

from confluent_kafka.admin import AdminClient

from qi.base import QiError
from qi.base.streaming import ConsumerConfig, ErrorCode, ProducerConfig, StreamingConfig
from qi.base.streaming.backend import (
    AdminBackend,
    ConnectorBackend,
    ConsumerBackend,
    OperationFailed,
    ProducerBackend,
)
from qi.base.streaming.backends.confluent._admin import ConfluentAdmin
from qi.base.streaming.backends.confluent._connect import (
    ClientErrors,
    client_settings,
    prove_broker,
)
from qi.base.streaming.backends.confluent._consumer import ConfluentConsumer
from qi.base.streaming.backends.confluent._errors import IMPLEMENTATION, translate_exception
from qi.base.streaming.backends.confluent._producer import ConfluentProducer
from qi.base.streaming.backends.confluent._settings import admin_settings
from qi.base.streaming.backends.confluent._worker import BlockingWorker


class ConfluentBackend(ConnectorBackend):
    """The ``confluent`` backend: confluent-kafka, i.e. librdkafka."""

    implementation = IMPLEMENTATION

    def __init__(self, config: StreamingConfig, logger: logging.Logger) -> None:
        self._config = config
        self._logger = logger

    def producer(self, config: ProducerConfig) -> ProducerBackend:
        return ConfluentProducer(self._config, config, self._logger)

    def consumer(self, config: ConsumerConfig) -> ConsumerBackend:
        return ConfluentConsumer(self._config, config, self._logger)

    def admin(self) -> AdminBackend:
        return ConfluentAdmin(self._config, self._logger)

    async def probe(self) -> bool:
        # A throw-away client: librdkafka clients are cheap, and a probe must not
        # depend on (or disturb) the endpoints in use.
        errors = ClientErrors(self._logger)
        client = AdminClient(client_settings(admin_settings(self._config), self._logger, errors))
        worker = BlockingWorker("qi-confluent-probe")
        try:
            await prove_broker(worker, client.list_topics, self._config.connection_timeout, errors)
        except OperationFailed:
            return False
        finally:
            await worker.close(patience=1.0)
        return True

    def translate_error(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        return translate_exception(exc, operation, fallback)
