"""Resource hygiene: dropped endpoints warn, and connect/disconnect cycles leak nothing.

Leaks are measured, not guessed: open file descriptors (``/proc/self/fd``), live
threads, pending asyncio tasks, and memory (tracemalloc for Python allocations,
plus the process's resident set for the native client's own).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import threading
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any, Final

import pytest

from qi.base import Success
from qi.base.streaming import (
    ConsumerConfig,
    StreamingConfig,
    StreamingConnector,
    StreamingMessage,
    TopicConfig,
    create_connector,
)
from qi.base.streaming._endpoint import Endpoint
from testkit import unique, wait_until

from ._support import REAL_BACKENDS, producer_config_for, streaming_config

# Cycles per backend: the in-process broker is cheap, a real client costs a connection.
_CYCLES: Final = {"memory": 1000, "confluent": 25, "aiokafka": 60}
_WARM_UP: Final = 5


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


def _consumer_config() -> ConsumerConfig:
    return ConsumerConfig(group_id=unique("group"), session_timeout=6.0, heartbeat_interval=0.5)


def _connector(backend: str, brokers: tuple[str, ...]) -> StreamingConnector:
    return create_connector(backend, streaming_config(brokers)).unwrap()


_FACTORIES: Final[dict[str, Callable[[StreamingConnector, str], Any]]] = {
    "producer": lambda connector, backend: connector.create_producer(producer_config_for(backend)),
    "consumer": lambda connector, backend: connector.create_consumer(_consumer_config()),
    "admin": lambda connector, backend: connector.create_admin(),
}


@pytest.mark.parametrize("kind", sorted(_FACTORIES))
async def test_an_endpoint_dropped_while_connected_warns(
    backend: str, brokers: tuple[str, ...], kind: str
) -> None:
    endpoint: Endpoint | None = _FACTORIES[kind](_connector(backend, brokers), backend).unwrap()
    assert endpoint is not None
    connected = await endpoint.connect()
    assert isinstance(connected, Success), connected
    native = endpoint.get_native_client().unwrap()  # kept, so it can be closed properly below
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        endpoint = None
        gc.collect()
    ours = [w for w in caught if issubclass(w.category, ResourceWarning) and kind in str(w.message)]
    assert ours, f"no ResourceWarning for a dropped {kind}: {[str(w.message) for w in caught]}"
    await _close_native(native)


async def _close_native(native: Any) -> None:
    """Release what the dropped endpoint left open, the way its own backend would."""
    for name in ("stop", "close"):  # aiokafka: async stop()/close(); confluent: close()
        method = getattr(native, name, None)
        if callable(method):
            outcome = method()
            if inspect.isawaitable(outcome):
                await outcome
            return


async def _cycle(
    connector: StreamingConnector, backend: str, topic: str, consumer_config: ConsumerConfig
) -> None:
    producer = connector.create_producer(producer_config_for(backend)).unwrap()
    admin = connector.create_admin().unwrap()
    consumer = connector.create_consumer(consumer_config).unwrap()
    for endpoint in (producer, admin, consumer):
        connected = await endpoint.connect()
        assert isinstance(connected, Success), connected
    sent = await producer.send(topic, StreamingMessage(b"cycle"))
    assert isinstance(sent, Success), sent
    listed = await admin.list_topics()
    assert isinstance(listed, Success), listed
    for endpoint in (producer, admin, consumer):
        disconnected = await endpoint.disconnect()
        assert isinstance(disconnected, Success), disconnected


async def test_connect_disconnect_cycles_leak_nothing(
    backend: str, brokers: tuple[str, ...]
) -> None:
    config: StreamingConfig = streaming_config(brokers)
    connector = create_connector(backend, config).unwrap()
    topic = unique("cycles")
    admin = connector.create_admin().unwrap()
    assert isinstance(await admin.connect(), Success)
    assert isinstance(await admin.create_topics([TopicConfig(topic)]), Success)
    consumer_config = _consumer_config()
    for _ in range(_WARM_UP):  # lazily created pools, caches and spawner threads settle here
        await _cycle(connector, backend, topic, consumer_config)
    gc.collect()
    fds, threads, tasks = _fd_count(), _threads(), len(asyncio.all_tasks())
    rss = _rss_bytes()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(_CYCLES[backend]):
            await _cycle(connector, backend, topic, consumer_config)
        gc.collect()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert isinstance(await admin.delete_topics([topic]), Success)
    assert isinstance(await admin.disconnect(), Success)

    # Native clients stop their threads and sockets asynchronously after close.
    await wait_until(
        lambda: _fd_count() <= fds + 2, f"fds back to {fds} ({_fd_count()})", within=10.0
    )
    await wait_until(
        lambda: len(_threads() - threads) == 0,
        f"threads back to baseline (new: {sorted(t.name for t in _threads() - threads)})",
        within=10.0,
    )
    await wait_until(
        lambda: len(asyncio.all_tasks()) <= tasks,
        f"asyncio tasks back to {tasks} ({asyncio.all_tasks()})",
        within=5.0,
    )
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    per_cycle = grown / _CYCLES[backend]
    assert per_cycle < 2_000, f"Python memory grew {grown} bytes ({per_cycle:.0f} per cycle)"
    if backend in REAL_BACKENDS:
        rss_growth = _rss_bytes() - rss
        assert rss_growth < 64 * 2**20, f"resident memory grew {rss_growth / 2**20:.1f} MiB"
