"""Shared fixtures: brokers for tests that need a real Kafka-protocol server.

``$QI_DEV_BROKER`` ("tansu", the default, or "noida") picks the development broker
the fixtures start; ``$QI_TEST_BROKERS`` points them at running brokers instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from qi.base.streaming.devbroker import DevBroker, kind_from_environment


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers for the session: ``$QI_TEST_BROKERS`` or one development broker."""
    external = os.environ.get("QI_TEST_BROKERS")
    if external:
        yield external
        return
    with DevBroker(kind=kind_from_environment()) as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def noida_bootstrap(request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker that enforces Kafka's rules (sizes, compaction, topic configs, session
    bounds), which Tansu lets through: ``$QI_TEST_BROKERS``, the session's broker when it
    is noida-db already, or a noida-db development broker of its own."""
    if os.environ.get("QI_TEST_BROKERS") or kind_from_environment() == "noida":
        bootstrap: str = request.getfixturevalue("kafka_bootstrap")
        yield bootstrap
        return
    with DevBroker(kind="noida") as broker:
        yield broker.bootstrap


@pytest.fixture
def dev_broker() -> Iterator[DevBroker]:
    """A private development broker for one test, free to be stopped or restarted."""
    with DevBroker(kind=kind_from_environment()) as broker:
        yield broker
