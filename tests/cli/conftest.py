"""Fixtures of the CLI tests."""

from __future__ import annotations

import pytest

from ._support import kafka_backend


@pytest.fixture(scope="module")
def backend() -> str:
    """The Kafka backend the CLI runs with; skips the test when none is installed and loads."""
    name = kafka_backend()
    if name is None:
        pytest.skip("neither the confluent nor the aiokafka backend is installed and loads")
    return name
