"""A connected client, producer, admin and topic on one event loop, for hypothesis tests.

Hypothesis drives synchronous functions, so each test owns a :class:`LoopRunner` and
runs every call on it; the endpoints live on that loop for the whole test.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Final, TypeVar

from hypothesis import HealthCheck, settings

from qi.base import QiError, Result, Success
from qi.base.streaming import (
    StreamingAdmin,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    StreamingProducer,
    TopicConfig,
    create_streaming_client,
)
from testkit import unique

from ._support import (
    REAL_BACKENDS,
    LoopRunner,
    bounded,
    check_result,
    producer_config_for,
    streaming_config,
)

T = TypeVar("T")

PARTITIONS: Final = 2


def examples(backend: str, memory: int, real: int) -> settings:
    """Deterministic, database-less hypothesis settings: many cases on memory, fewer on brokers."""
    return settings(
        max_examples=real if backend in REAL_BACKENDS else memory,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


@dataclass(eq=False)
class Harness:
    """Everything a hostile-input test needs, connected, plus a bound on every call."""

    backend: str
    brokers: tuple[str, ...]
    runner: LoopRunner
    config: StreamingConfig
    client: StreamingClient
    producer: StreamingProducer
    admin: StreamingAdmin
    topic: str
    bound: float

    def call(self, awaitable: Awaitable[Result[T, QiError]], where: str) -> Result[T, QiError]:
        """Run one public call within the bound and check it returned a contract Result."""
        return check_result(self.runner.run(bounded(awaitable, self.bound, where)), where)

    def assert_still_works(self) -> None:
        """A real send on the harness topic succeeds: hostile calls broke nothing."""
        value = uuid.uuid4().bytes
        result = self.call(self.producer.send(self.topic, StreamingMessage(value)), "send")
        assert isinstance(result, Success), f"the producer no longer works: {result}"

    @classmethod
    def open(cls, backend: str, brokers: tuple[str, ...]) -> Harness:
        """Connect a client, its admin and producer, and create a topic of PARTITIONS."""
        runner = LoopRunner()
        config = streaming_config(brokers)
        client = create_streaming_client(backend, config)
        bound = config.connection_timeout + config.request_timeout + 5.0
        try:
            admin = runner.run(client.get_admin()).unwrap()
            topic = unique("hostile")
            runner.run(
                admin.create_topics([TopicConfig(topic, num_partitions=PARTITIONS)])
            ).unwrap()
            producer = runner.run(client.get_producer(producer_config_for(backend))).unwrap()
        except BaseException:
            runner.run(client.disconnect())
            runner.close()
            raise
        return cls(backend, brokers, runner, config, client, producer, admin, topic, bound)

    def close(self) -> None:
        """Disconnect everything, delete the topic and close the loop."""
        try:
            # Consumers first: librdkafka crashes (SIGSEGV) when a topic its consumer
            # fetches from is deleted on the development broker (see the README note).
            self.runner.run(self.client.disconnect())
            admin = self.runner.run(self.client.get_admin())
            if isinstance(admin, Success):
                self.runner.run(admin.value.delete_topics([self.topic]))
            self.runner.run(self.client.disconnect())
        finally:
            self.runner.close()
