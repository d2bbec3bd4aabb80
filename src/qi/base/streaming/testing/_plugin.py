"""The pytest plugin of ``qi-base[testing]``: fixtures, the ``qi_backends`` marker, options.

pytest loads it through the ``pytest11`` entry point; the fixtures and helpers are
described in :mod:`qi.base.streaming.testing`.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Final

import pytest

from qi.base.streaming import StreamingConfig
from qi.base.streaming.backends.memory import MemoryBroker, broker_for, discard_broker
from qi.base.streaming.testing._cluster import (
    DevCluster,
    dev_cluster,
    private_memory_brokers,
    quick_config,
)

_BACKENDS_MARKER: Final = "qi_backends"
DEV_BACKEND_MARKER: Final = "qi_dev_backend"
"""The marker naming the backend of a test's qi_dev_client."""
_BACKEND_FIXTURE: Final = "qi_backend"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qi-base", "qi-base streaming test fixtures")
    group.addoption(
        "--qi-backends",
        default=None,
        help="comma-separated backends that tests using qi_backend run on "
        "(overrides the qi_backends ini option; a qi_backends marker overrides both)",
    )
    group.addoption(
        "--qi-dev-backend",
        default=None,
        help="backend of qi_dev_client (overrides the qi_dev_backend ini option)",
    )
    parser.addini(
        "qi_backends",
        type="args",
        default=["memory"],
        help="backends that tests using qi_backend run on (default: memory)",
    )
    parser.addini(
        "qi_dev_backend",
        default="confluent",
        help="backend of qi_dev_client (default: confluent)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{_BACKENDS_MARKER}(*names): run the test once per named backend through the "
        "qi_backend and qi_client fixtures (memory, confluent, aiokafka)",
    )
    config.addinivalue_line(
        "markers", f"{DEV_BACKEND_MARKER}(name): the backend of the test's qi_dev_client"
    )
    config.pluginmanager.register(_client_fixtures(), "qi-base-clients")


def _client_fixtures() -> ModuleType:
    # Every project that installs qi-base loads this plugin, with or without the testing
    # extra: without pytest-asyncio it must still let pytest start.
    try:
        from qi.base.streaming.testing import _clients
    except ImportError as missing:
        if missing.name != "pytest_asyncio":
            raise
        from qi.base.streaming.testing import _clients_missing

        return _clients_missing
    return _clients


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if _BACKEND_FIXTURE not in metafunc.fixturenames or _parametrized_by_test(metafunc):
        return
    names = _backends_for(metafunc)
    metafunc.parametrize(_BACKEND_FIXTURE, names, indirect=True, ids=names)


def _parametrized_by_test(metafunc: pytest.Metafunc) -> bool:
    for marker in metafunc.definition.iter_markers("parametrize"):
        argnames = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        names = argnames.split(",") if isinstance(argnames, str) else argnames
        if _BACKEND_FIXTURE in (name.strip() for name in names):
            return True
    return False


def _backends_for(metafunc: pytest.Metafunc) -> list[str]:
    marker = metafunc.definition.get_closest_marker(_BACKENDS_MARKER)
    if marker is not None:
        if not marker.args:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: qi_backends() names no backend")
        return [str(name) for name in marker.args]
    option = metafunc.config.getoption("--qi-backends")
    if option:
        return [name.strip() for name in str(option).split(",") if name.strip()]
    return [str(name) for name in metafunc.config.getini("qi_backends")]


@pytest.fixture
def qi_backend(request: pytest.FixtureRequest) -> str:
    """The backend this run of the test uses ("memory", "confluent" or "aiokafka")."""
    name: str = request.param
    return name


@pytest.fixture
def qi_memory_brokers() -> Iterator[tuple[str, ...]]:
    """A ``brokers`` value of this test alone: memory clients given it share a fresh broker."""
    brokers = private_memory_brokers()
    yield brokers
    discard_broker(brokers)


@pytest.fixture
def qi_memory_broker(qi_memory_brokers: tuple[str, ...]) -> MemoryBroker:
    """The test's memory broker, with its fault hooks (``fail_next_produces``, ...)."""
    return broker_for(qi_memory_brokers)


@pytest.fixture(scope="session")
def qi_dev_broker() -> Iterator[DevCluster]:
    """The run's shared cluster: ``$QI_TEST_BROKERS``, or a development broker of the kind
    ``$QI_DEV_BROKER`` names (Tansu by default, "noida" for noida-db), started once."""
    with dev_cluster() as cluster:
        yield cluster


@pytest.fixture
def qi_config(qi_backend: str, request: pytest.FixtureRequest) -> StreamingConfig:
    """A client config for ``qi_backend``: the test's private broker on memory, the shared
    cluster on a real backend (started only when a test needs it)."""
    if qi_backend == "memory":
        brokers: tuple[str, ...] = request.getfixturevalue("qi_memory_brokers")
    else:
        cluster: DevCluster = request.getfixturevalue("qi_dev_broker")
        brokers = cluster.brokers
    return quick_config(brokers)
