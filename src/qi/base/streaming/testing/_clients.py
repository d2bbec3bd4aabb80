"""The plugin's client fixtures: async, so they need pytest-asyncio (``qi-base[testing]``).

The plugin registers this module when pytest-asyncio can be imported, and
``_clients_missing`` (fixtures of the same names that say what to install) otherwise, so
that a project with qi-base but without pytest-asyncio still starts pytest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from qi.base.streaming import StreamingClient, StreamingConfig, create_streaming_client
from qi.base.streaming.testing._cluster import DevCluster, quick_config
from qi.base.streaming.testing._plugin import DEV_BACKEND_MARKER


@pytest_asyncio.fixture
async def qi_memory_client(qi_memory_brokers: tuple[str, ...]) -> AsyncIterator[StreamingClient]:
    """A memory client on the test's fresh broker, disconnected after the test."""
    async with create_streaming_client("memory", quick_config(qi_memory_brokers)) as client:
        yield client


@pytest_asyncio.fixture
async def qi_dev_client(
    qi_dev_broker: DevCluster, request: pytest.FixtureRequest
) -> AsyncIterator[StreamingClient]:
    """A client on the shared cluster; its backend is the test's ``qi_dev_backend`` marker,
    else the ``--qi-dev-backend`` option, else the ``qi_dev_backend`` ini option (confluent)."""
    marker = request.node.get_closest_marker(DEV_BACKEND_MARKER)
    option = request.config.getoption("--qi-dev-backend")
    backend = str(
        marker.args[0]
        if marker is not None and marker.args
        else option or request.config.getini("qi_dev_backend")
    )
    async with create_streaming_client(backend, quick_config(qi_dev_broker.brokers)) as client:
        yield client


@pytest_asyncio.fixture
async def qi_client(qi_backend: str, qi_config: StreamingConfig) -> AsyncIterator[StreamingClient]:
    """A client of ``qi_backend`` on ``qi_config``, disconnected after the test."""
    async with create_streaming_client(qi_backend, qi_config) as client:
        yield client
