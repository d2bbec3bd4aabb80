"""Fixtures of the backends' own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qi.base.streaming.backends.memory import discard_broker

from ._memory import private_brokers


@pytest.fixture
def brokers() -> Iterator[tuple[str, ...]]:
    """A private in-process broker (its ``brokers`` value), discarded after the test."""
    brokers = private_brokers()
    yield brokers
    discard_broker(brokers)
