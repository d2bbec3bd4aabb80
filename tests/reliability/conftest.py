"""Fixtures of the reliability suite: faulty brokers and the backends to run against."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ._harness import Harness
from ._proxy import ProxiedBroker
from ._scenarios import Faults, MemoryFaults, ProxyFaults
from ._support import REAL_BACKENDS, backend_params


@pytest.fixture
def proxied_broker() -> Iterator[ProxiedBroker]:
    """A private development broker reachable only through a fault proxy."""
    with ProxiedBroker() as cluster:
        yield cluster


@pytest.fixture(params=backend_params())
def backend(request: pytest.FixtureRequest) -> str:
    """The implementation under test: memory, and the real backends whose library is installed."""
    name: str = request.param
    return name


@pytest.fixture
def brokers(backend: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, ...]]:
    """A private in-process broker for memory (dropped afterwards), else the session's
    development broker."""
    if backend not in REAL_BACKENDS:
        # The qi-base pytest plugin's fixture: a fresh broker, discarded after the test.
        memory: tuple[str, ...] = request.getfixturevalue("qi_memory_brokers")
        yield memory
        return
    bootstrap: str = request.getfixturevalue("kafka_bootstrap")
    yield tuple(address.strip() for address in bootstrap.split(",") if address.strip())


@pytest.fixture
def harness(backend: str, brokers: tuple[str, ...]) -> Iterator[Harness]:
    """A connected client, admin, producer and topic on a loop owned by the test."""
    opened = Harness.open(backend, brokers)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def faulty(
    backend: str, request: pytest.FixtureRequest
) -> Iterator[tuple[tuple[str, ...], Faults]]:
    """Brokers to connect to and the fault switches in front of them.

    Real backends get a private broker behind a fault proxy (clients cannot bypass
    it); memory gets a private in-process broker and its fault hooks.
    """
    if backend not in REAL_BACKENDS:
        # The qi-base pytest plugin's fixtures: a fresh broker, discarded after the test.
        brokers: tuple[str, ...] = request.getfixturevalue("qi_memory_brokers")
        yield brokers, MemoryFaults(request.getfixturevalue("qi_memory_broker"))
        return
    with ProxiedBroker() as cluster:
        yield (cluster.bootstrap,), ProxyFaults(cluster)
