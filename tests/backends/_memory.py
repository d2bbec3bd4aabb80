"""Helpers of the memory backend's own tests: private brokers, configs and Result checks."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from typing import TypeVar

from qi.base import Failure, QiError, Result
from qi.base.streaming import (
    StreamingClient,
    StreamingConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.testing import quick_config
from testkit import ok

T = TypeVar("T")


def config_for(
    brokers: tuple[str, ...], *, connection_timeout: float = 1.0, request_timeout: float = 1.0
) -> StreamingConfig:
    """A client config for ``brokers`` with short timeouts, so fault tests stay fast."""
    return dataclasses.replace(
        quick_config(brokers),
        connection_timeout=connection_timeout,
        request_timeout=request_timeout,
    )


def failed(result: Result[T, QiError], code: str) -> QiError:
    """The error of a Failure with ``code``; fails the test otherwise."""
    assert isinstance(result, Failure), f"expected a Failure {code}, got {result!r}"
    assert result.error.code == code, f"expected {code}, got {result.error!r}"
    assert result.error.context["implementation"] == "memory"
    return result.error


@contextlib.asynccontextmanager
async def client_with_topics(
    brokers: tuple[str, ...], *topics: TopicConfig
) -> AsyncIterator[StreamingClient]:
    """A memory client of ``brokers`` that created ``topics``; disconnected on leaving."""
    client = create_streaming_client("memory", config_for(brokers))
    ok(await ok(await client.get_admin()).create_topics(list(topics)))
    yield client
    await client.disconnect()
