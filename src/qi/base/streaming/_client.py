"""The client: one place to get cached, connected producers, consumers and admins."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Final, ParamSpec, TypeVar, cast

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._admin import StreamingAdmin
from qi.base.streaming._boundary import answers_wrong_calls, boundary
from qi.base.streaming._codes import ErrorCode, streaming_error
from qi.base.streaming._config import ConsumerConfig, ProducerConfig, StreamingConfig
from qi.base.streaming._connector import StreamingConnector
from qi.base.streaming._consumer import StreamingConsumer
from qi.base.streaming._endpoint import DISCONNECT_CALLER, Endpoint, disconnect_caller
from qi.base.streaming._factory import Implementation, create_connector
from qi.base.streaming._producer import StreamingProducer
from qi.base.streaming._validation import consumer_config_problem, producer_config_problem

_LIBRARY_LOGGER: Final = logging.getLogger("qi.base.streaming")

EndpointT = TypeVar("EndpointT", bound=Endpoint)
Key = TypeVar("Key")
P = ParamSpec("P")
T = TypeVar("T")


class StreamingClient:
    """Hands out connected producers, consumers and admins, cached by configuration.

    Equal configs give the same instance; ``disconnect()`` closes them all, after
    which the client hands out fresh ones. Use it as ``async with`` to
    disconnect on exit. Nothing here raises: errors come back as Failures.
    """

    def __init__(
        self,
        implementation: Implementation | str,
        config: StreamingConfig,
        logger: logging.Logger | None = None,
    ) -> None:
        self._implementation = implementation
        self._config = config
        self._logger = logger if logger is not None else _LIBRARY_LOGGER
        self._connector: Result[StreamingConnector, QiError] | None = None
        self._producers: dict[ProducerConfig, StreamingProducer] = {}
        self._consumers: dict[ConsumerConfig, StreamingConsumer] = {}
        self._admin: StreamingAdmin | None = None
        self._lock = asyncio.Lock()
        # A client takes every call in any state (it connects what it hands out): the
        # boundary never asks it for a refusal.
        self._accepts_calls = True

    @property
    def implementation(self) -> str:
        """The backend name this client was created with."""
        return str(self._implementation)

    @boundary("get_producer", ErrorCode.CONNECTION_FAILED)
    async def get_producer(
        self, config: ProducerConfig | None = None
    ) -> Result[StreamingProducer, QiError]:
        """A connected producer for ``config`` (the defaults when None), cached by config.

        Failures: STREAMING_UNKNOWN_IMPLEMENTATION, STREAMING_INVALID_CONFIG,
        STREAMING_CONNECTION_FAILED.
        """
        config = ProducerConfig() if config is None else config
        return await self._get(
            "get_producer",
            self._producers,
            config,
            producer_config_problem(config),
            lambda connector: connector._create_valid_producer(config),
        )

    @boundary("get_consumer", ErrorCode.CONNECTION_FAILED)
    async def get_consumer(self, config: ConsumerConfig) -> Result[StreamingConsumer, QiError]:
        """A connected consumer for ``config``, cached by config.

        Failures: STREAMING_UNKNOWN_IMPLEMENTATION, STREAMING_INVALID_CONFIG,
        STREAMING_CONNECTION_FAILED.
        """
        return await self._get(
            "get_consumer",
            self._consumers,
            config,
            consumer_config_problem(config),
            lambda connector: connector._create_valid_consumer(config),
        )

    @boundary("get_admin", ErrorCode.CONNECTION_FAILED)
    async def get_admin(self) -> Result[StreamingAdmin, QiError]:
        """The client's one connected admin.

        Failures: STREAMING_UNKNOWN_IMPLEMENTATION, STREAMING_INVALID_CONFIG,
        STREAMING_CONNECTION_FAILED.
        """
        admins: dict[None, StreamingAdmin] = {} if self._admin is None else {None: self._admin}
        result = await self._get(
            "get_admin", admins, None, None, lambda connector: connector.create_admin()
        )
        if isinstance(result, Success):
            self._admin = result.value
        return result

    @boundary("disconnect", ErrorCode.TIMEOUT)
    async def disconnect(self) -> Result[None, QiError]:
        """Disconnect every instance handed out; the first failure is returned, all are tried."""
        async with self._lock:
            endpoints: list[Endpoint] = [*self._producers.values(), *self._consumers.values()]
            if self._admin is not None:
                endpoints.append(self._admin)
            self._producers.clear()
            self._consumers.clear()
            self._admin = None
            # Consumers first would be nicer for pipelines, but they are independent here:
            # close everything concurrently so one slow flush does not serialise the rest.
            # Each in a task of its own, which counts as this one (a handler awaiting this
            # disconnect() awaits its consumer's: that one cannot wait for the handler).
            marked = DISCONNECT_CALLER.set(disconnect_caller())
            try:
                outcomes = await asyncio.gather(*(endpoint.disconnect() for endpoint in endpoints))
            finally:
                DISCONNECT_CALLER.reset(marked)
        for outcome in outcomes:
            if isinstance(outcome, Failure):
                return outcome
        return Success(None)

    @boundary("is_healthy", ErrorCode.CONNECTION_FAILED)
    async def is_healthy(self) -> Result[bool, QiError]:
        """Success(True) if a broker answered within ``connection_timeout``, else Success(False).

        Failures: STREAMING_UNKNOWN_IMPLEMENTATION, STREAMING_INVALID_CONFIG.
        """
        connector = self._get_connector()
        if isinstance(connector, Failure):
            return connector
        return await connector.value.is_healthy()

    async def __aenter__(self) -> StreamingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.disconnect()

    # -- internals -----------------------------------------------------------------------------

    def _wrong_call(self, operation: str, exc: TypeError) -> QiError:
        return self._client_error(ErrorCode.INVALID_ARGUMENT, f"{operation}(): {exc}", operation)

    def _escaped(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        self._logger.debug("%s failed", operation, exc_info=True)
        return self._client_error(
            fallback, f"{operation} failed: {type(exc).__name__}: {exc}", operation
        )

    def _client_error(self, code: ErrorCode, message: str, operation: str) -> QiError:
        return streaming_error(
            code, message, operation=operation, implementation=str(self._implementation)[:100]
        )

    def _get_connector(self) -> Result[StreamingConnector, QiError]:
        if self._connector is None:
            self._connector = create_connector(self._implementation, self._config, self._logger)
        return self._connector

    async def _get(
        self,
        operation: str,
        cache: dict[Key, EndpointT],
        key: Key,
        problem: str | None,
        create: Callable[[StreamingConnector], Result[EndpointT, QiError]],
    ) -> Result[EndpointT, QiError]:
        connector = self._get_connector()
        if isinstance(connector, Failure):
            return Failure(connector.error.with_context(operation=operation))
        if problem is not None:
            # Checked before the cache: an invalid config may compare equal to a valid
            # one (idempotent=1 == True) and must not be handed the valid one's instance.
            return Failure(
                streaming_error(
                    ErrorCode.INVALID_CONFIG,
                    problem,
                    operation=operation,
                    implementation=connector.value.implementation,
                )
            )
        async with self._lock:
            cached = cache.get(key)
            if cached is not None and cached.is_connected():
                return Success(cached)
            created = create(connector.value)
            if isinstance(created, Failure):
                return created
            endpoint = created.value
            connected = await endpoint.connect()
            if isinstance(connected, Failure):
                return connected
            cache[key] = endpoint
            return Success(endpoint)


def _refusing_client(exc: TypeError) -> StreamingClient:
    """The client of a call that did not fit: its first use reports the call."""
    client = StreamingClient("unknown", cast(StreamingConfig, None))
    client._connector = Failure(
        streaming_error(
            ErrorCode.INVALID_ARGUMENT,
            f"create_streaming_client() was called wrongly: {exc}",
            operation="create_streaming_client",
            implementation="unknown",
        )
    )
    return client


@answers_wrong_calls(_refusing_client)
def create_streaming_client(
    implementation: Implementation | str,
    config: StreamingConfig,
    logger: logging.Logger | None = None,
) -> StreamingClient:
    """A client for the named backend; never raises (problems surface on first use)."""
    return StreamingClient(implementation, config, logger)
