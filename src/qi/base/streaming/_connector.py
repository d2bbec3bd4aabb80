"""The connector: what the client gets a backend's producers, consumers and admins from."""

from __future__ import annotations

import asyncio
import logging
from typing import Final, final

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._admin import StreamingAdmin
from qi.base.streaming._boundary import boundary, sync_boundary
from qi.base.streaming._codes import ErrorCode, streaming_error
from qi.base.streaming._config import ConsumerConfig, ProducerConfig, StreamingConfig
from qi.base.streaming._consumer import StreamingConsumer
from qi.base.streaming._producer import StreamingProducer
from qi.base.streaming._validation import consumer_config_problem, producer_config_problem
from qi.base.streaming.backend import ConnectorBackend, OperationFailed

_LIBRARY_LOGGER: Final = logging.getLogger("qi.base.streaming")


@final
class StreamingConnector:
    """A backend: it builds producers, consumers and admins that are not yet connected.

    It holds the backend's :class:`~qi.base.streaming.backend.ConnectorBackend`
    (``create_connector`` builds it by name). The configs are validated here, so a
    backend only ever builds valid ones.
    """

    def __init__(
        self,
        config: StreamingConfig,
        backend: ConnectorBackend,
        logger: logging.Logger | None = None,
    ) -> None:
        self._config = config
        self._backend = backend
        self._logger = logger if logger is not None else _LIBRARY_LOGGER
        # Nothing to connect, nothing to refuse: the boundary never asks for a refusal.
        self._accepts_calls = True

    @property
    def implementation(self) -> str:
        """The backend's name, as given to ``create_connector``."""
        return self._backend.implementation

    @property
    def config(self) -> StreamingConfig:
        """The client-wide configuration this connector was built with."""
        return self._config

    @sync_boundary("create_producer", ErrorCode.INVALID_CONFIG)
    def create_producer(
        self, config: ProducerConfig | None = None
    ) -> Result[StreamingProducer, QiError]:
        """A new, unconnected producer; STREAMING_INVALID_CONFIG if ``config`` is invalid."""
        config = ProducerConfig() if config is None else config
        problem = producer_config_problem(config)
        if problem is not None:
            return Failure(self._invalid_config(problem, "create_producer"))
        return self._create_valid_producer(config)

    @sync_boundary("create_consumer", ErrorCode.INVALID_CONFIG)
    def create_consumer(self, config: ConsumerConfig) -> Result[StreamingConsumer, QiError]:
        """A new, unconnected consumer; STREAMING_INVALID_CONFIG if ``config`` is invalid."""
        problem = consumer_config_problem(config)
        if problem is not None:
            return Failure(self._invalid_config(problem, "create_consumer"))
        return self._create_valid_consumer(config)

    # A StreamingClient validates a config before it looks in its cache (an invalid
    # config may compare equal to a valid one), so it creates through these two, which
    # do not check it a second time.

    @sync_boundary("create_producer", ErrorCode.INVALID_CONFIG)
    def _create_valid_producer(self, config: ProducerConfig) -> Result[StreamingProducer, QiError]:
        return Success(self._new_producer(config))

    @sync_boundary("create_consumer", ErrorCode.INVALID_CONFIG)
    def _create_valid_consumer(self, config: ConsumerConfig) -> Result[StreamingConsumer, QiError]:
        return Success(self._new_consumer(config))

    @sync_boundary("create_admin", ErrorCode.INVALID_CONFIG)
    def create_admin(self) -> Result[StreamingAdmin, QiError]:
        """A new, unconnected admin."""
        return Success(self._new_admin())

    @boundary("is_healthy", ErrorCode.CONNECTION_FAILED)
    async def is_healthy(self) -> Result[bool, QiError]:
        """Success(True) if a broker answered within ``connection_timeout``, else Success(False)."""
        try:
            async with asyncio.timeout(self._config.connection_timeout + 1.0):
                return Success(await self._backend.probe())
        except TimeoutError:
            return Success(False)

    # -- what the boundary needs -----------------------------------------------------------

    def _wrong_call(self, operation: str, exc: TypeError) -> QiError:
        return self._error(
            ErrorCode.INVALID_ARGUMENT, f"{operation}() was called wrongly: {exc}", operation
        )

    def _escaped(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        if isinstance(exc, OperationFailed):
            return exc.error
        self._logger.debug("%s failed", operation, exc_info=True)
        return self._backend.translate_error(exc, operation, fallback)

    # -- building endpoints around the backend's objects ----------------------------------

    def _new_producer(self, config: ProducerConfig) -> StreamingProducer:
        backend = self._backend
        return StreamingProducer(
            self._config,
            config,
            backend.producer(config),
            implementation=backend.implementation,
            translate=backend.translate_error,
            logger=self._logger,
        )

    def _new_consumer(self, config: ConsumerConfig) -> StreamingConsumer:
        backend = self._backend
        return StreamingConsumer(
            self._config,
            config,
            backend.consumer(config),
            implementation=backend.implementation,
            translate=backend.translate_error,
            logger=self._logger,
        )

    def _new_admin(self) -> StreamingAdmin:
        backend = self._backend
        return StreamingAdmin(
            self._config,
            backend.admin(),
            implementation=backend.implementation,
            translate=backend.translate_error,
            logger=self._logger,
        )

    def _invalid_config(self, problem: str, operation: str) -> QiError:
        return self._error(ErrorCode.INVALID_CONFIG, problem, operation)

    def _error(self, code: ErrorCode, message: str, operation: str) -> QiError:
        return streaming_error(
            code, message, operation=operation, implementation=self.implementation
        )
