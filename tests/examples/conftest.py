"""The examples as the tests see them: importable modules, and clients to run them on.

``example_run`` runs a test on the memory backend and, marked ``broker``, with
confluent on a noida-db development broker (correct transactions, end offsets and
group admin, which the examples rely on; see the README's broker quirks).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qi.base.streaming import create_streaming_client
from qi.base.streaming.backends.memory import broker_for
from qi.base.streaming.testing import quick_config

from ._support import ExampleRun

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# The examples are scripts, not a package: their directory makes them importable.
sys.path.insert(0, str(EXAMPLES))


@pytest.fixture(params=["memory", pytest.param("confluent", marks=pytest.mark.broker)])
async def example_run(
    request: pytest.FixtureRequest, qi_memory_brokers: tuple[str, ...]
) -> AsyncIterator[ExampleRun]:
    memory = request.param == "memory"
    brokers = qi_memory_brokers if memory else (request.getfixturevalue("noida_bootstrap"),)
    async with create_streaming_client(request.param, quick_config(brokers)) as client:
        yield ExampleRun(client, broker_for(brokers) if memory else None)


@pytest.fixture
async def memory_run(qi_memory_brokers: tuple[str, ...]) -> AsyncIterator[ExampleRun]:
    """The memory half of ``example_run`` alone, for tests of its fault hooks."""
    config = quick_config(qi_memory_brokers)
    async with create_streaming_client("memory", config) as client:
        yield ExampleRun(client, broker_for(qi_memory_brokers))
