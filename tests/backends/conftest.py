"""Fixtures of the backends' own tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def brokers(qi_memory_brokers: tuple[str, ...]) -> tuple[str, ...]:
    """A private in-process broker (its ``brokers`` value), discarded after the test: the
    qi-base pytest plugin's ``qi_memory_brokers``."""
    return qi_memory_brokers
