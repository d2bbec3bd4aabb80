"""The confluent connector: builds librdkafka-backed producers, consumers and admins."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient

from qi.base.streaming._admin import StreamingAdmin
from qi.base.streaming._config import ConsumerConfig, ProducerConfig
from qi.base.streaming._connector import StreamingConnector
from qi.base.streaming._consumer import StreamingConsumer
from qi.base.streaming._endpoint import OperationFailed
from qi.base.streaming._producer import StreamingProducer
from qi.base.streaming.backends.confluent._admin import ConfluentAdmin
from qi.base.streaming.backends.confluent._connect import (
    ClientErrors,
    client_settings,
    prove_broker,
)
from qi.base.streaming.backends.confluent._consumer import ConfluentConsumer
from qi.base.streaming.backends.confluent._errors import IMPLEMENTATION
from qi.base.streaming.backends.confluent._producer import ConfluentProducer
from qi.base.streaming.backends.confluent._settings import admin_settings
from qi.base.streaming.backends.confluent._worker import BlockingWorker


class ConfluentConnector(StreamingConnector):
    """The ``confluent`` backend: confluent-kafka, i.e. librdkafka."""

    implementation = IMPLEMENTATION

    def _new_producer(self, config: ProducerConfig) -> StreamingProducer:
        return ConfluentProducer(self._config, config, self._logger)

    def _new_consumer(self, config: ConsumerConfig) -> StreamingConsumer:
        return ConfluentConsumer(self._config, config, self._logger)

    def _new_admin(self) -> StreamingAdmin:
        return ConfluentAdmin(self._config, self._logger)

    async def _probe(self) -> bool:
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
