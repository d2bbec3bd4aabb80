"""The lifecycle shared by producers, consumers and admins, and what the boundary needs of them.

Every public method of an endpoint is wrapped by the one boundary
(:func:`~qi.base.streaming._boundary.boundary`): it refuses work on an endpoint
that is not connected, turns a call with the wrong arguments into
``STREAMING_INVALID_ARGUMENT``, and turns any exception that escapes a backend
into a QiError through the backend's own error table.

    UNOPENED --connect()--> CONNECTED --disconnect()--> CLOSED --connect()--> CONNECTED
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import logging
import warnings
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Final, ParamSpec, TypeVar

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._boundary import boundary, sync_boundary
from qi.base.streaming._codes import ErrorCode, streaming_error
from qi.base.streaming._config import StreamingConfig
from qi.base.streaming.backend import (
    EndpointBackend,
    ErrorTranslation,
    OperationFailed,
    not_connected,
)

P = ParamSpec("P")
T = TypeVar("T")
E = TypeVar("E", bound="Endpoint")

_LIBRARY_LOGGER: Final = logging.getLogger("qi.base.streaming")

# Extra seconds a lifecycle call may take beyond its configured timeout before the
# boundary gives up on it: backends enforce the real timeout, this is the safety net.
_GRACE: Final = 2.0


class State(enum.Enum):
    """Where an endpoint is in its life."""

    UNOPENED = "unopened"
    """Built but never connected; operations fail with STREAMING_NOT_CONNECTED."""
    CONNECTED = "connected"
    """connect() succeeded; operations run."""
    CLOSED = "closed"
    """disconnect() ran; operations fail until connect() opens it again."""


DISCONNECT_CALLER: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar(
    "qi_disconnect_caller", default=None
)
"""The task a disconnect() counts as called in, for the tasks it runs in others: set in the
context of an endpoint's close task, and by StreamingClient.disconnect() around the tasks it
closes its endpoints in."""


def disconnect_caller() -> asyncio.Task[Any] | None:
    """The task the running disconnect() counts as called in (see ``DISCONNECT_CALLER``)."""
    return DISCONNECT_CALLER.get() or asyncio.current_task()


class Endpoint(ABC):
    """What producers, consumers and admins share: a lifecycle, a logger, the backend object
    they hold and its error table."""

    _kind: str = "endpoint"

    def __init__(
        self,
        config: StreamingConfig,
        backend: EndpointBackend,
        *,
        implementation: str,
        translate: ErrorTranslation,
        logger: logging.Logger | None = None,
    ) -> None:
        self._config = config
        self._backend = backend
        self._implementation = implementation
        self._translate_native = translate
        self._logger = logger if logger is not None else _LIBRARY_LOGGER
        self._state = State.UNOPENED
        self._accepts_calls = False  # the boundary's fast path: connected, nothing to refuse
        self._lifecycle_lock = asyncio.Lock()

    @property
    def implementation(self) -> str:
        """Name of the backend behind this endpoint."""
        return self._implementation

    def is_connected(self) -> bool:
        """Whether the endpoint is connected and accepts operations."""
        return self._state is State.CONNECTED

    @boundary("connect", ErrorCode.CONNECTION_FAILED, refuse=False)
    async def connect(self) -> Result[None, QiError]:
        """Connect to the brokers; connecting a connected endpoint does nothing.

        Fails with STREAMING_CONNECTION_FAILED (or the backend's more precise
        code, such as STREAMING_AUTHENTICATION_FAILED) within about
        ``connection_timeout`` when no broker answers.
        """
        async with self._lifecycle_lock:
            if self._state is State.CONNECTED:
                return Success(None)
            bound = self._config.connection_timeout + _GRACE
            try:
                outcome = await self._guard(
                    "connect", ErrorCode.CONNECTION_FAILED, self._backend.open, bound
                )
            except asyncio.CancelledError:
                # Cancelled inside open(): what it created (threads, tasks, connections)
                # must not outlive the call, and connecting again would build another.
                await asyncio.shield(
                    self._guard("disconnect", ErrorCode.CONNECTION_FAILED, self._close, bound)
                )
                raise
            if outcome is None:
                self._set_state(State.CONNECTED)
                self._logger.debug("%s %s connected", self._implementation, self._kind)
                return Success(None)
            # A half-opened native client must not leak: close whatever open() created.
            await self._guard("disconnect", ErrorCode.CONNECTION_FAILED, self._close, bound)
            return Failure(outcome)

    @boundary("disconnect", ErrorCode.TIMEOUT, refuse=False)
    async def disconnect(self) -> Result[None, QiError]:
        """Flush and release everything; disconnecting twice does nothing."""
        if self._disconnect_called():
            # The close under way waits for this very call: it cannot wait for that close,
            # which already made the endpoint CLOSED.
            return Success(None)
        async with self._lifecycle_lock:
            if self._state is not State.CONNECTED:
                return Success(None)
            # Closed first, so operations started from now on fail fast instead of racing the close.
            self._set_state(State.CLOSED)
            bound = self._close_bound() + self._backend.close_grace + _GRACE
            # The close runs in a task of its own that counts as called in this one's caller
            # (a consumer's close asks whether that is the running handler).
            context = contextvars.copy_context()
            context.run(DISCONNECT_CALLER.set, disconnect_caller())
            closing = asyncio.get_running_loop().create_task(
                self._guard("disconnect", ErrorCode.TIMEOUT, self._close, bound), context=context
            )
            try:
                outcome = await asyncio.shield(closing)
            except asyncio.CancelledError:
                # A close cut short would leave a half-closed native client (threads, tasks,
                # connections) behind: it finishes (bounded) before a connect may start.
                await asyncio.wait({closing})
                raise
            self._logger.debug("%s %s disconnected", self._implementation, self._kind)
            return Success(None) if outcome is None else Failure(outcome)

    @sync_boundary("get_native_client", ErrorCode.INVALID_ARGUMENT)
    def get_native_client(self) -> Result[object, QiError]:
        """The backend's own client object, for what this API does not cover."""
        if self._state is not State.CONNECTED:
            return Failure(self._not_connected("get_native_client"))
        return Success(self._backend.native_client())

    def __del__(self) -> None:
        if getattr(self, "_state", None) is State.CONNECTED:
            warnings.warn(
                f"unclosed {self._implementation} {self._kind} {self!r}: call disconnect()",
                ResourceWarning,
                stacklevel=1,
                source=self,
            )

    # -- what each kind of endpoint provides ------------------------------------------------

    @abstractmethod
    async def _close(self) -> None:
        """Release the backend's native client; must tolerate a half-finished open."""

    def _translate(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        """A native error as a QiError, through the backend's error table."""
        return self._translate_native(exc, operation, fallback)

    def _disconnect_called(self) -> bool:
        """disconnect() was called, before it waits for a close under way (see the consumer's);
        True when that close waits for the caller. Nothing to do for most endpoints."""
        return False

    def _close_bound(self) -> float:
        """Seconds disconnect() may take; producers and consumers flush within request_timeout."""
        return self._config.request_timeout

    # -- helpers for subclasses --------------------------------------------------------------

    def _error(self, code: ErrorCode, message: str, operation: str, **context: Any) -> QiError:
        return streaming_error(
            code, message, operation=operation, implementation=self._implementation, **context
        )

    def _escaped(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        """The QiError for an exception that escaped ``operation``."""
        if isinstance(exc, OperationFailed):
            return exc.error
        self._logger.debug("%s failed", operation, exc_info=True)
        return self._translate(exc, operation, fallback)

    def _wrong_call(self, operation: str, exc: TypeError) -> QiError:
        """The QiError for a call whose arguments do not fit the method's signature."""
        return self._error(
            ErrorCode.INVALID_ARGUMENT, f"{operation}() was called wrongly: {exc}", operation
        )

    def _not_connected(self, operation: str) -> QiError:
        return not_connected(self._implementation, self._kind, operation)

    def _refusal(self, operation: str) -> QiError | None:
        """Operations run only on a connected endpoint."""
        return None if self._state is State.CONNECTED else self._not_connected(operation)

    def _set_state(self, state: State) -> None:
        self._state = state
        self._accepts_calls = state is State.CONNECTED and not self._refuses_some_calls

    # Whether _refusal refuses some calls even while connected (a transactional producer's
    # own sends): then the boundary asks it on every call.
    _refuses_some_calls = False

    async def _guard(
        self,
        operation: str,
        fallback: ErrorCode,
        step: Callable[[], Awaitable[None]],
        bound: float,
    ) -> QiError | None:
        """Run a lifecycle step within ``bound`` seconds; return its error instead of raising."""
        try:
            async with asyncio.timeout(bound):
                await step()
        except TimeoutError:
            code = ErrorCode.CONNECTION_FAILED if operation == "connect" else ErrorCode.TIMEOUT
            return self._error(code, f"{operation} did not finish within {bound:.1f}s", operation)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._escaped(exc, operation, fallback)
        return None
