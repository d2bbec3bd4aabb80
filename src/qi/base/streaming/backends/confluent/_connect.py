"""What producer, consumer and admin share: proving a broker answers, and client logging."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from qi.base import QiError
from qi.base.streaming import ErrorCode
from qi.base.streaming.backend import OperationFailed, streaming_error
from qi.base.streaming.backends.confluent._errors import (
    IMPLEMENTATION,
    contract_code,
    error_name,
    kafka_error,
)
from qi.base.streaming.backends.confluent._settings import Settings
from qi.base.streaming.backends.confluent._worker import BlockingWorker

_IDENTITY_CODES = frozenset({ErrorCode.AUTHENTICATION_FAILED, ErrorCode.AUTHORIZATION_FAILED})
# Connecting asks for metadata in slices this long, to notice a refused login early.
_PROBE_SLICE = 0.5
_MIN_SLICE = 0.05


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
    The wait is cut into slices: a refused login will not succeed on retry, so it
    fails the connect as soon as librdkafka reports it, not after ``wait``.
    """
    deadline = time.monotonic() + wait
    while True:
        remaining = deadline - time.monotonic()
        try:
            slice_ = max(_MIN_SLICE, min(_PROBE_SLICE, remaining))
            await worker.run(functools.partial(list_topics, timeout=slice_))
            return
        except KafkaException as exc:
            if serve is not None:
                await worker.run(functools.partial(serve, 0))
            if errors.last_identity_error is None and time.monotonic() < deadline:
                continue
            failure = _connect_failure(exc, errors, wait)
            raise OperationFailed(failure) from exc


def _connect_failure(exc: KafkaException, errors: ClientErrors, wait: float) -> QiError:
    """Why connecting failed: the error callback's verdict, else the exception's."""
    # The callback's error says why (a TLS handshake refused, say); the exception
    # only that the metadata request failed.
    error = errors.explanation()
    if error is None and exc.args and isinstance(exc.args[0], KafkaError):
        error = exc.args[0]
    if error is None:
        return streaming_error(
            ErrorCode.CONNECTION_FAILED,
            f"no broker answered within {wait:.1f}s: {exc}",
            operation="connect",
            implementation=IMPLEMENTATION,
            connection_timeout=wait,
        )
    failure = kafka_error(error, "connect", ErrorCode.CONNECTION_FAILED)
    return failure.with_context(connection_timeout=wait)
