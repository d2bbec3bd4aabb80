"""Shared helpers of the reliability suite: backends, Result checks, a per-test event loop.

The error table is copied from the contract (section 6) on purpose, as the contract
suite does: these tests check the library against the document, not against itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import os
from collections.abc import Awaitable, Mapping
from typing import Any, Final, TypeVar

import pytest

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming import ErrorCode, ProducerConfig, StreamingConfig
from qi.base.streaming.devbroker import kind_from_environment
from qi.base.streaming.testing import quick_config

T = TypeVar("T")

ALL_BACKENDS: Final = ("memory", "confluent", "aiokafka")
REAL_BACKENDS: Final = frozenset({"confluent", "aiokafka"})
_LIBRARY_OF: Final = {"confluent": "confluent_kafka", "aiokafka": "aiokafka"}

DELIVERY_VALUES: Final = ("not_written", "unknown")


def backend_params(
    names: tuple[str, ...] = ALL_BACKENDS, xfail: Mapping[str, str] | None = None
) -> list[Any]:
    """pytest params for ``names``, restricted by ``$QI_TEST_BACKENDS`` like the contract suite.

    A backend whose native library is not installed is skipped; one that is installed
    but broken fails, because that is a finding. ``xfail`` names backends expected to
    fail, with the reason (strict: a pass is reported).
    """
    raw = os.environ.get("QI_TEST_BACKENDS")
    wanted = {name.strip() for name in raw.split(",")} if raw else set(ALL_BACKENDS)
    params = []
    for name in names:
        if name not in wanted:
            continue
        marks: list[Any] = []
        if name in REAL_BACKENDS:
            marks.append(pytest.mark.broker)
            if importlib.util.find_spec(_LIBRARY_OF[name]) is None:
                marks.append(pytest.mark.skip(reason=f"{_LIBRARY_OF[name]} is not installed"))
        if xfail and name in xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=xfail[name]))
        params.append(pytest.param(name, id=name, marks=marks))
    return params


def session_broker_is_tansu() -> bool:
    """Whether the session's broker is Tansu (``QI_DEV_BROKER``, unless QI_TEST_BROKERS is set)."""
    return not os.environ.get("QI_TEST_BROKERS") and kind_from_environment() == "tansu"


NOIDA_KEEPS_GONE_LEADERS: Final = (
    "noida-db 0.2.3 keeps a member that crashed, or that rejoined under a new member id, "
    "as the group's leader: the other members' SyncGroup never completes and the group "
    "never settles (README, Development brokers)"
)


def skip_on_noida(reason: str) -> None:
    """Skip the running test when the session's broker is noida-db, saying why."""
    if not os.environ.get("QI_TEST_BROKERS") and kind_from_environment() == "noida":
        pytest.skip(reason)


def short_session_timeout() -> float:
    """A short consumer session: 3 s on Tansu, where a join takes about half of it; else
    6 s, the least Kafka's group.min.session.timeout.ms allows (noida-db enforces it)."""
    return 3.0 if session_broker_is_tansu() else 6.0


def producer_config_for(backend: str, **changes: Any) -> ProducerConfig:
    """Defaults, except idempotence for aiokafka on Tansu (it rejects InitProducerId)."""
    if backend == "aiokafka" and session_broker_is_tansu():
        changes.setdefault("idempotent", False)
    return ProducerConfig(**changes)


def streaming_config(
    brokers: tuple[str, ...], *, connection_timeout: float = 3.0, request_timeout: float = 5.0
) -> StreamingConfig:
    """Short timeouts: a misbehaving call fails the test fast instead of hitting its timeout."""
    return dataclasses.replace(
        quick_config(brokers),
        connection_timeout=connection_timeout,
        request_timeout=request_timeout,
    )


def check_result(result: object, where: str) -> Result[Any, QiError]:
    """Assert ``result`` is a Result whose error, if any, follows the contract's error rules."""
    assert isinstance(result, Success | Failure), f"{where} returned {result!r}, not a Result"
    if isinstance(result, Failure):
        check_error(result.error, where)
    return result


def check_error(error: object, where: str) -> QiError:
    """Assert ``error`` is a QiError with a contract code, its category and the required context."""
    assert isinstance(error, QiError), f"{where} failed with {error!r}, not a QiError"
    # The library's table is pinned to the contract's by tests/contract/test_error_codes.py.
    known = {code.value: code for code in ErrorCode}
    assert error.code in known, f"{where}: unknown code {error.code}"
    assert error.category == known[error.code].category, (
        f"{where}: {error.code} has {error.category}"
    )
    assert isinstance(error.message, str) and error.message, f"{where}: empty message"
    for key in ("operation", "implementation"):
        assert key in error.context, f"{where}: {error.code} context lacks {key!r}: {error}"
    return error


def code_of(result: Result[Any, QiError]) -> str | None:
    """The error code of a Failure, None for a Success."""
    return result.error.code if isinstance(result, Failure) else None


async def bounded(awaitable: Awaitable[T], seconds: float, where: str) -> T:
    """Await within ``seconds``; a call that takes longer is a hang, and fails the test."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"{where} did not return within {seconds:.1f}s (a hang)") from None


class LoopRunner:
    """An event loop owned by a synchronous test, so hypothesis can drive async calls."""

    def __init__(self) -> None:
        self._runner = asyncio.Runner()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Run ``awaitable`` to completion on this runner's loop."""

        async def wait() -> T:
            return await awaitable

        return self._runner.run(wait())

    def close(self) -> None:
        """Close the loop (cancelling anything left on it)."""
        self._runner.close()
