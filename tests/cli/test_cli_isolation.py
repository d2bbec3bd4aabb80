"""``qi-stream consume --isolation``: what a consumer prints of committed and aborted transactions.

The broker is noida-db (``noida_bootstrap``): Tansu's ``read_committed`` shows aborted
records (see the README's broker quirks), so the difference is only visible on noida-db.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

from qi.base.streaming import (
    MessageBatch,
    ProducerConfig,
    StreamingConfig,
    StreamingMessage,
    create_streaming_client,
)
from testkit import ok, unique

from ._support import cluster_env, created_topic, run_on_cluster

# One partition, so that the printed order is the order the transactions were written in.
COMMITTED_FIRST = (b"committed-1", b"committed-2")
ABORTED = (b"aborted-1", b"aborted-2")
COMMITTED_LAST = (b"committed-3",)


@pytest.fixture
def cluster(noida_bootstrap: str, backend: str) -> dict[str, str]:
    """Environment pointing the CLI at noida-db (QI_BROKERS) with a Kafka backend."""
    return cluster_env(noida_bootstrap, backend)


@pytest.fixture
def topic(cluster: dict[str, str]) -> Iterator[str]:
    run = functools.partial(run_on_cluster, cluster)
    yield from created_topic(run, unique("isolation"), "--partitions", "1")


async def _write_transactions(backend: str, bootstrap: str, topic: str) -> None:
    """A committed transaction, an aborted one, then another committed one."""
    config = StreamingConfig(client_id="cli-isolation", brokers=(bootstrap,))
    async with create_streaming_client(backend, config) as client:
        producer_config = ProducerConfig(transactional_id=unique("cli-isolation"))
        producer = (await client.get_producer(producer_config)).unwrap()
        for values, commit in ((COMMITTED_FIRST, True), (ABORTED, False), (COMMITTED_LAST, True)):
            transaction = (await producer.transaction()).unwrap()
            batch = MessageBatch(topic, tuple(StreamingMessage(value) for value in values))
            ok(await transaction.send_batch(batch))
            ok(await (transaction.commit() if commit else transaction.abort()))


def _printed(cluster: dict[str, str], topic: str, isolation: str | None, count: int) -> list[bytes]:
    """What ``consume --isolation ISOLATION`` (no option when None) prints of the topic."""
    chosen = ("--isolation", isolation) if isolation is not None else ()
    # --max stops at the expected count; --timeout only bounds a run that falls short.
    consumed = run_on_cluster(
        cluster,
        "consume",
        topic,
        "--from-beginning",
        *chosen,
        "--max",
        str(count),
        "--timeout",
        "15",
        "--session-timeout",
        "6",
    )
    assert consumed.returncode == 0, consumed.stderr.decode()
    return consumed.stdout.splitlines()


@pytest.mark.broker
async def test_read_committed_hides_aborted_records_read_uncommitted_shows_them(
    backend: str, cluster: dict[str, str], topic: str
) -> None:
    await _write_transactions(backend, cluster["QI_BROKERS"], topic)

    committed = [*COMMITTED_FIRST, *COMMITTED_LAST]
    everything = [*COMMITTED_FIRST, *ABORTED, *COMMITTED_LAST]
    # Asking read_committed for exactly as many records as were committed: an aborted
    # record among them would be printed in place of committed-3.
    assert _printed(cluster, topic, "read_committed", len(committed)) == committed
    assert _printed(cluster, topic, "read_uncommitted", len(everything)) == everything
    assert _printed(cluster, topic, None, len(committed)) == committed  # the default
