"""Messages, consumed messages and topic configs pickle and copy, with or without headers:
a service hands them to another process or a task queue."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest

from qi.base.streaming import (
    ConsumedMessage,
    MessageBatch,
    StreamingMessage,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming._read_only import ReadOnlyMapping
from qi.base.streaming._types import NO_HEADERS
from qi.base.streaming.backends.confluent._producer import _produce as confluent_produce
from qi.base.streaming.backends.memory import broker_for, discard_broker
from qi.base.streaming.testing import quick_config
from qi.base.streaming.testing._cluster import private_memory_brokers
from testkit import ok

VALUES = [
    StreamingMessage(b"v"),
    StreamingMessage(
        b"v", key="k", timestamp=datetime(2026, 1, 1, tzinfo=UTC), headers={"h": b"x"}
    ),
    ConsumedMessage("t", 0, 3, None, b"v", None),
    ConsumedMessage("t", 1, 4, b"k", None, None, {"h": b"y"}),
    TopicConfig("t"),
    TopicConfig("t", config_entries={"cleanup.policy": "compact"}),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_value_survives_pickle_copy_and_asdict(value: object) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert pickle.loads(pickle.dumps(value, protocol)) == value
    assert copy.deepcopy(value) == value
    assert copy.copy(value) == value
    assert isinstance(dataclasses.asdict(value), dict)  # type: ignore[call-overload]


def test_the_read_only_mapping_reads_as_the_dict_it_holds_and_refuses_writes() -> None:
    source = {"a": b"1"}
    mapping = ReadOnlyMapping(source)
    source["b"] = b"2"  # a copy of its own: the caller's dict changing later changes nothing
    assert dict(mapping) == {"a": b"1"} and len(mapping) == 1
    assert mapping == {"a": b"1"} and {"a": b"1"} == mapping
    assert mapping != {"a": b"2"} and mapping == ReadOnlyMapping({"a": b"1"})
    assert "a" in mapping and mapping.get("z") is None and repr(mapping) == "{'a': b'1'}"
    with pytest.raises(TypeError):
        mapping["a"] = b"3"  # type: ignore[index]
    with pytest.raises(TypeError):
        hash(mapping)
    assert pickle.loads(pickle.dumps(mapping)) == mapping


def test_the_read_only_mapping_merges_and_copies_as_the_mappingproxy_it_replaced() -> None:
    # Headers and config entries were mappingproxies: code that merged them with ``|``,
    # copied them or reversed them must keep working (each gives a new dict).
    # Typed as a Mapping (which has no ``|``): what untyped code merges is the runtime value.
    shared: tuple[Any, ...] = (
        ConsumedMessage("t", 0, 0, None, b"v", None).headers,
        StreamingMessage(b"v").headers,
        TopicConfig("t").config_entries,
    )
    for headers in shared:
        assert headers | {"a": b"1"} == {"a": b"1"} and {"a": b"1"} | headers == {"a": b"1"}
    mapping = ReadOnlyMapping({"a": b"1", "b": b"2"})
    merged = mapping | {"b": b"3"}
    assert merged == {"a": b"1", "b": b"3"} and type(merged) is dict
    assert {"b": b"3", "c": b"4"} | mapping == {"b": b"2", "c": b"4", "a": b"1"}
    copied = mapping.copy()
    copied["z"] = b"9"
    assert type(copied) is dict and "z" not in mapping
    assert list(reversed(mapping)) == ["b", "a"]
    # The dict's own views, read-only and C-level (the send paths read them per message).
    plain = {"a": b"1", "b": b"2"}
    assert type(mapping.items()) is type(plain.items()) and mapping.items() == plain.items()
    assert type(mapping.keys()) is type(plain.keys()) and mapping.keys() == plain.keys()
    assert type(mapping.values()) is type(plain.values())
    assert list(mapping.values()) == list(plain.values())
    not_a_mapping: Any = 1
    with pytest.raises(TypeError):
        mapping | not_a_mapping


async def test_messages_without_headers_are_sent_without_asking_the_shared_empty_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The shared empty headers are recognised by identity on the produce paths: asking a
    # Python-level mapping whether it is empty, per message, cost memory's send_batch about
    # a tenth of its time.
    asked: list[object] = []
    length = ReadOnlyMapping.__len__

    def counting_len(self: ReadOnlyMapping[Any, Any]) -> int:
        asked.append(self)
        return length(self)

    monkeypatch.setattr(ReadOnlyMapping, "__len__", counting_len)
    messages = tuple(StreamingMessage(b"v") for _ in range(20))
    with_headers = tuple(StreamingMessage(b"v", headers={"h": "x"}) for _ in range(20))
    brokers = private_memory_brokers()
    broker_for(brokers).create_topic(TopicConfig("no-headers"))
    async with create_streaming_client("memory", quick_config(brokers)) as client:
        producer = ok(await client.get_producer())
        ok(await producer.send_batch(MessageBatch("no-headers", messages)))
        ok(await producer.send("no-headers", messages[0]))
        before = len(asked)
        # The broker stores headers as a ReadOnlyMapping and sizes each record by them:
        # through their items, not by asking the mapping per message.
        ok(await producer.send_batch(MessageBatch("no-headers", with_headers)))
        assert len(asked) - before < len(with_headers)
    discard_broker(brokers)
    handed: list[tuple[Any, ...]] = []
    for message in messages:
        confluent_produce(lambda *args: handed.append(args), "t", message, lambda *_: None)
    assert [args[-1] for args in handed] == [None] * len(messages)  # librdkafka: no headers
    assert not [mapping for mapping in asked if mapping is NO_HEADERS]
