"""The examples as the tests see them: importable modules, and clients to run them on.

``example_client`` runs a test on the memory backend and, marked ``broker``, with
confluent on a noida-db development broker (correct transactions, end offsets and
group admin, which the examples rely on; see the README's broker quirks).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from qi.base.streaming import StreamingClient, create_streaming_client
from qi.base.streaming.testing import quick_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# The examples are scripts, not a package: their directory makes them importable.
sys.path.insert(0, str(EXAMPLES))


@pytest.fixture(params=["memory", pytest.param("confluent", marks=pytest.mark.broker)])
async def example_client(
    request: pytest.FixtureRequest, qi_memory_brokers: tuple[str, ...]
) -> AsyncIterator[StreamingClient]:
    if request.param == "memory":
        brokers = qi_memory_brokers
    else:
        brokers = (request.getfixturevalue("noida_bootstrap"),)
    async with create_streaming_client(request.param, quick_config(brokers)) as client:
        yield client
