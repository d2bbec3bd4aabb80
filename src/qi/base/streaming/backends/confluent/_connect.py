"""What producer, consumer and admin share: proving a broker answers, and client logging."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._endpoint import OperationFailed
from qi.base.streaming.backends.confluent._errors import (
    contract_code,
    error_name,
    kafka_error,
)
from qi.base.streaming.backends.confluent._settings import Settings
from qi.base.streaming.backends.confluent._worker import BlockingWorker

_IDENTITY_CODES = frozenset({ErrorCode.AUTHENTICATION_FAILED, ErrorCode.AUTHORIZATION_FAILED})


class ClientErrors:
    """librdkafka's ``error_cb``: remembers the last client-wide error (auth, all brokers down).

    Connecting uses it to say *why* no broker answered: a refused SASL handshake
    is STREAMING_AUTHENTICATION_FAILED, not a mere connection failure.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self.last_identity_error: KafkaError | None = None
        self.last_error: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        name = error_name(error)
        if contract_code(name, ErrorCode.CONNECTION_FAILED) in _IDENTITY_CODES:
            self.last_identity_error = error
        if error.code() != KafkaError._ALL_BROKERS_DOWN:  # says less than what preceded it
            self.last_error = error
        self._logger.debug("librdkafka reported %s: %s", name, error.str())

    def explanation(self) -> KafkaError | None:
        """The most telling error seen: an identity problem, else the latest one."""
        return self.last_identity_error or self.last_error


class NativeLog:
    """Where librdkafka's log lines go: a child of the endpoint's logger, at DEBUG.

    librdkafka logs every failed connection attempt as an error, again and again,
    while this library already reports what failed as a Failure; so its lines are
    debugging detail, except the critical ones.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger.getChild("librdkafka")

    def log(self, level: int, message: str, *args: object) -> None:
        self._logger.log(
            logging.ERROR if level >= logging.CRITICAL else logging.DEBUG, message, *args
        )


def client_settings(
    settings: Settings, logger: logging.Logger, errors: ClientErrors
) -> dict[str, Any]:
    """``settings`` plus the callbacks: client-wide errors and librdkafka's log lines."""
    return {**settings, "error_cb": errors, "logger": NativeLog(logger)}


async def prove_broker(
    worker: BlockingWorker,
    list_topics: Callable[..., Any],
    wait: float,
    errors: ClientErrors,
    *,
    serve: Callable[[float], Any] | None = None,
) -> None:
    """Raise OperationFailed unless a broker answers a metadata request within ``wait`` s.

    ``serve`` (a client's ``poll``) runs the error callback when no other thread
    polls the client, so an authentication or TLS failure is reported as such.
    """
    try:
        await worker.run(functools.partial(list_topics, timeout=wait))
    except KafkaException as exc:
        if serve is not None:
            await worker.run(functools.partial(serve, 0))
        # The callback's error says why (a TLS handshake refused, say); the exception
        # only that the metadata request failed.
        error = errors.explanation()
        if error is None and exc.args and isinstance(exc.args[0], KafkaError):
            error = exc.args[0]
        if error is None:
            raise
        failure = kafka_error(error, "connect", ErrorCode.CONNECTION_FAILED)
        raise OperationFailed(failure.with_context(connection_timeout=wait)) from exc
