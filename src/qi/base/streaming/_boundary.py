"""The one boundary every public call goes through: nothing raises across it.

:func:`boundary` wraps each public method of the client, the connector, the
producer, consumer and admin, and the transaction. Whatever happens inside, the
call returns a Result:

- a call refused before it starts (an endpoint that is not connected, a
  transaction that ended) is the guarded object's ``_refusal``, asked only when
  its ``_accepts_calls`` flag is down;
- a call whose arguments do not fit the method's signature is
  STREAMING_INVALID_ARGUMENT (``_wrong_call``);
- any exception that escapes is turned into a QiError by ``_escaped``: an
  :class:`~qi.base.streaming.backend.OperationFailed` gives its error, anything
  else goes through the backend's one error table;
- cancellation of the calling task is let through, because swallowing it would break
  asyncio (a future cancelled under a call nobody cancelled is a failure instead).

A produce operation's failures all say whether the message may have been written
(``context["delivery"]``): refused calls certainly wrote nothing, and a failure
that does not say is "unknown" (:func:`with_verdict`).

The wrapper is the only coroutine a call adds. A method may also be a plain
function that returns the awaitable doing the work (``send`` returns the
backend's), so the hottest call costs one coroutine, not two.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

from qi.base import Failure, QiError, Success
from qi.base.streaming._codes import DELIVERY_UNKNOWN, NOT_WRITTEN, ErrorCode, streaming_error

M = TypeVar("M", bound=Callable[..., Any])


class Guarded(Protocol):
    """What the boundary asks of the object whose methods it wraps."""

    _accepts_calls: bool
    """True while every call may run: ``_refusal`` is asked only when this is False (it
    is read on every call, so it is a plain attribute, not a method)."""

    def _refusal(self, operation: str) -> QiError | None:
        """Why ``operation`` cannot run now, or None (needed where ``_accepts_calls`` can be
        False)."""

    def _wrong_call(self, operation: str, exc: TypeError) -> QiError:
        """The error of a call whose arguments do not fit the method."""

    def _escaped(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        """The error of an exception that escaped ``operation``."""


def with_verdict(error: QiError) -> QiError:
    """A produce failure that does not say whether its message was written may have been.

    A batch's partial failure says it per message, in ``context["results"]``.
    """
    if "delivery" in error.context or error.code == ErrorCode.BATCH_PARTIAL_FAILURE:
        return error
    return error.with_context(delivery=DELIVERY_UNKNOWN)


def _not_written(error: QiError) -> QiError:
    return error if "delivery" in error.context else error.with_context(delivery=NOT_WRITTEN)


def boundary(
    name: str, fallback: ErrorCode, *, refuse: bool = True, produces: bool = False
) -> Callable[[M], M]:
    """Make a public method total: it returns a Result whatever it is given or whatever fails.

    ``fallback`` is the code for an exception the backend's table does not know better
    (STREAMING_PRODUCE_FAILED for a send). ``refuse=False`` skips ``_refusal`` (connect
    and disconnect run in any state). ``produces`` marks an operation that sends messages.
    The method may be a coroutine function, or a plain function returning a Result or an
    awaitable of one; either way the wrapped method is a coroutine function.
    """

    def decorate(method: M) -> M:
        signature = inspect.signature(method)

        def wrong(self: Guarded, exc: BaseException, args: Any, kwargs: Any) -> QiError:
            if isinstance(exc, TypeError) and not _binds(signature, self, args, kwargs):
                error = self._wrong_call(name, exc)
                return _not_written(error) if produces else error
            error = _described(self, exc, name, fallback)
            return with_verdict(error) if produces else error

        @functools.wraps(method)
        async def guarded(self: Guarded, /, *args: Any, **kwargs: Any) -> Any:
            if refuse and not self._accepts_calls:
                refusal = self._refusal(name)
                if refusal is not None:
                    return Failure(_not_written(refusal) if produces else refusal)
            try:
                outcome = method(self, *args, **kwargs)
                if type(outcome) is not Failure and type(outcome) is not Success:
                    outcome = await outcome
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                # Nobody cancelled this call: a future it awaited was cancelled under it
                # (a backend's). Passed on, it would end a caller that never asked for it.
                return Failure(wrong(self, exc, args, kwargs))
            except Exception as exc:
                return Failure(wrong(self, exc, args, kwargs))
            if produces and type(outcome) is Failure:
                return Failure(with_verdict(outcome.error))
            return outcome

        return cast(M, guarded)

    return decorate


def sync_boundary(name: str, fallback: ErrorCode) -> Callable[[M], M]:
    """:func:`boundary` for a plain method that returns a Result (no refusal: it checks)."""

    def decorate(method: M) -> M:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def guarded(self: Guarded, /, *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if isinstance(exc, TypeError) and not _binds(signature, self, args, kwargs):
                    return Failure(self._wrong_call(name, exc))
                return Failure(_described(self, exc, name, fallback))

        return cast(M, guarded)

    return decorate


def answers_wrong_calls(answer: Callable[[TypeError], Any]) -> Callable[[M], M]:
    """For a public module function: a call whose arguments do not fit its signature gets
    ``answer(the binding's TypeError)`` instead of raising, as the methods' boundary does."""

    def decorate(function: M) -> M:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def total(*args: Any, **kwargs: Any) -> Any:
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                return answer(exc)
            return function(*args, **kwargs)

        return cast(M, total)

    return decorate


def _described(self: Guarded, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
    """``_escaped``, or, when describing the exception raised too (its ``__str__`` fails, the
    logger is broken), an error built from its type name alone: the boundary must not raise."""
    try:
        return self._escaped(exc, operation, fallback)
    except Exception as failed:
        # A transaction says its producer's implementation; every other guarded object its own.
        owner = getattr(self, "_producer", self)
        return streaming_error(
            fallback,
            f"{operation} failed: {type(exc).__name__} (describing it failed too: "
            f"{type(failed).__name__})",
            operation=operation,
            implementation=str(getattr(owner, "implementation", "unknown")),
            exception_type=type(exc).__name__,
        )


def _binds(
    signature: inspect.Signature, self: object, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> bool:
    try:
        signature.bind(self, *args, **kwargs)
    except TypeError:
        return False
    return True
