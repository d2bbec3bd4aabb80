"""Hostile input to the admin: topic configs, names and sequences of every wrong kind.

Topics are handled one by one (contract 5): valid ones are created or deleted even
when others in the same call are wrong, and the Failure names the offending ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import uuid
from typing import Any, Final

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qi.base import Failure, Success
from qi.base.streaming import TopicConfig

from ._harness import PARTITIONS, Harness, examples
from ._hostile import (
    INVALID_ARGUMENT,
    INVALID_CONFIG,
    INVALID_TOPIC,
    TOPIC_NOT_FOUND,
    clean_text,
    invalid_topic_names,
    junk,
)
from ._support import code_of

_RUN: Final = uuid.uuid4().hex[:8]
_FRESH: Final = "<fresh>"  # replaced by a new unique name when the test runs
_ADMIN_FAILED: Final = "STREAMING_ADMIN_FAILED"
_ALREADY_EXISTS: Final = "STREAMING_TOPIC_ALREADY_EXISTS"

# Not a sequence of anything (str and bytes are sequences, but of characters).
_not_a_sequence = st.one_of(
    junk.filter(lambda value: not isinstance(value, list)), clean_text, st.binary()
)
_wrong_counts: st.SearchStrategy[Any] = st.one_of(
    st.integers(max_value=0), st.sampled_from([None, 1.5, "2", b"2", True, False])
)


@st.composite
def _topic_configs(draw: st.DrawFn) -> tuple[Any, str]:
    """An element of a create_topics argument and what should become of it."""
    kind = draw(st.sampled_from(["ok", "ok", "name", "partitions", "replicas", "entries", "junk"]))
    config = TopicConfig(
        _FRESH,
        num_partitions=draw(st.integers(1, 3)),
        config_entries=draw(st.sampled_from([{}, {"retention.ms": "60000"}])),
    )
    if kind == "name":
        config = dataclasses.replace(config, topic=draw(invalid_topic_names))
        return config, INVALID_TOPIC
    if kind == "partitions":
        return dataclasses.replace(config, num_partitions=draw(_wrong_counts)), INVALID_CONFIG
    if kind == "replicas":
        return dataclasses.replace(config, replication_factor=draw(_wrong_counts)), INVALID_CONFIG
    if kind == "entries":
        entries: Any = draw(
            st.one_of(
                st.dictionaries(clean_text, st.integers(), min_size=1, max_size=2),
                st.dictionaries(st.integers(), clean_text, min_size=1, max_size=2),
                st.sampled_from([None, "retention.ms=1", 5]),
            )
        )
        return dataclasses.replace(config, config_entries=entries), INVALID_CONFIG
    if kind == "junk":
        return draw(st.one_of(junk, clean_text)), INVALID_CONFIG
    return config, "ok"


def _fresh(config: Any) -> Any:
    if isinstance(config, TopicConfig) and config.topic == _FRESH:
        return dataclasses.replace(config, topic=f"qi-rel-admin-{_RUN}-{uuid.uuid4().hex[:12]}")
    return config


def test_create_topics_with_hostile_arguments(harness: Harness) -> None:
    created: list[str] = []

    @examples(harness.backend, memory=300, real=100)
    @given(
        drawn=st.one_of(
            st.lists(_topic_configs(), max_size=4),
            st.one_of(_not_a_sequence, st.just(TopicConfig("lonely"))).map(lambda v: ("arg", v)),
        )
    )
    def check(drawn: Any) -> None:
        if isinstance(drawn, tuple):  # not a sequence of configs at all
            result = harness.call(harness.admin.create_topics(drawn[1]), "create_topics")
            assert code_of(result) == INVALID_ARGUMENT, (
                f"create_topics({drawn[1]!r:.200}): {result}"
            )
            return
        configs = [(_fresh(config), kind) for config, kind in drawn]
        result = harness.call(harness.admin.create_topics([c for c, _ in configs]), "create_topics")
        wanted = [c.topic for c, kind in configs if kind == "ok"]
        codes = {kind for _, kind in configs if kind != "ok"}
        if not codes:
            assert isinstance(result, Success), result
        else:
            allowed = codes | {_ADMIN_FAILED} if len(codes) > 1 else codes
            assert code_of(result) in allowed, f"{[c for c, _ in configs]!r:.500}: {result}"
            assert isinstance(result, Failure)
            named = result.error.context.get("topics")
            assert isinstance(named, tuple) and named, result
            assert not set(wanted) & set(named), f"valid topics reported as failed: {result}"
        created.extend(wanted)
        if wanted:
            listed = harness.call(harness.admin.list_topics(), "list_topics")
            assert isinstance(listed, Success), listed
            assert set(wanted) <= set(listed.value), "valid topics of the call were not created"

    check()
    if created:
        deleted = harness.call(harness.admin.delete_topics(created), "delete_topics")
        assert isinstance(deleted, Success), deleted
    harness.assert_still_works()


_names = st.one_of(
    st.just(("existing", None)),
    st.just(("missing", TOPIC_NOT_FOUND)),
    invalid_topic_names.map(lambda name: (name, INVALID_TOPIC)),
)


def test_describe_and_delete_with_hostile_names(harness: Harness) -> None:
    @examples(harness.backend, memory=300, real=100)
    @given(
        drawn=st.one_of(
            st.lists(_names, max_size=4),
            _not_a_sequence.map(lambda value: ("arg", value)),
        ),
        delete=st.booleans(),
    )
    def check(drawn: Any, delete: bool) -> None:
        operation = "delete_topics" if delete else "get_topic_metadata"
        call = harness.admin.delete_topics if delete else harness.admin.get_topic_metadata
        if isinstance(drawn, tuple):
            result = harness.call(call(drawn[1]), operation)
            assert code_of(result) == INVALID_ARGUMENT, f"{operation}({drawn[1]!r:.200}): {result}"
            return
        names: list[Any] = []
        for name, _ in drawn:
            if name == "existing":
                name = harness.topic if not delete else _create(harness)
            elif name == "missing":
                name = f"qi-rel-missing-{_RUN}-{uuid.uuid4().hex[:12]}"
            names.append(name)
        codes = {code for _, code in drawn if code is not None}
        result = harness.call(call(names), operation)
        if not codes:
            assert isinstance(result, Success), f"{operation}({names!r:.300}): {result}"
            if not delete:
                assert isinstance(result.value, tuple) and len(result.value) == len(names)
                for metadata in result.value:
                    assert len(metadata.partitions) == PARTITIONS
        else:
            allowed = codes | {_ADMIN_FAILED} if len(codes) > 1 else codes
            if not delete and INVALID_TOPIC in codes:
                allowed = {INVALID_TOPIC}  # names are checked before the broker is asked
            assert code_of(result) in allowed, f"{operation}({names!r:.300}): {result}"
        if delete:
            listed = harness.call(harness.admin.list_topics(), "list_topics")
            assert isinstance(listed, Success), listed
            assert not {n for n in names if isinstance(n, str)} & set(listed.value)
        else:
            listed = harness.call(harness.admin.list_topics(), "list_topics")
            assert isinstance(listed, Success), listed
            missing = {n for n in names if isinstance(n, str) and "qi-rel-missing-" in n}
            assert not missing & set(listed.value), "describing a missing topic created it"

    check()
    harness.assert_still_works()


def _create(harness: Harness) -> str:
    name = f"qi-rel-doomed-{_RUN}-{uuid.uuid4().hex[:12]}"
    created = harness.call(harness.admin.create_topics([TopicConfig(name)]), "create_topics")
    assert isinstance(created, Success), created
    return name


def test_duplicate_names_in_one_create_call(harness: Harness) -> None:
    name = f"qi-rel-twice-{_RUN}-{uuid.uuid4().hex[:12]}"
    result = harness.call(
        harness.admin.create_topics([TopicConfig(name), TopicConfig(name)]), "create_topics"
    )
    # The contract is silent on a name given twice: created once, and the second either
    # accepted, reported as existing, or refused as a bad argument. Nothing else.
    assert code_of(result) in (None, _ALREADY_EXISTS, INVALID_ARGUMENT), result
    listed = harness.call(harness.admin.list_topics(), "list_topics")
    assert isinstance(listed, Success) and name in listed.value
    assert isinstance(harness.call(harness.admin.delete_topics([name]), "delete_topics"), Success)


_HUGE_TOPIC: Final = """
import asyncio, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a runaway allocation dies fast
from qi.base.streaming import *

async def main(backend, brokers, field):
    client = create_streaming_client(backend, StreamingConfig("qi-huge", (brokers,), 3.0, 5.0))
    admin = (await client.get_admin()).unwrap()
    config = TopicConfig("qi-rel-huge", **{field: 2**31})
    result = await asyncio.wait_for(admin.create_topics([config]), 10)
    print("result:", result.error.code if result.is_failure() else "created")
    await client.disconnect()

asyncio.run(main(*sys.argv[1:4]))
"""


@pytest.mark.parametrize("field", ["num_partitions", "replication_factor"])
async def test_counts_beyond_the_kafka_protocol_are_invalid_config(
    backend: str, brokers: tuple[str, ...], field: str
) -> None:
    """2**31 partitions do not fit Kafka's int32 (replicas: int16): refuse, do not allocate.

    Run in a child process with 1 GiB of address space, so a backend that tries to build
    two billion partitions fails that process, not the test session.
    """
    child = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", _HUGE_TOPIC, backend, brokers[0], field),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(child.communicate(), 30)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise AssertionError(f"create_topics with {field}=2**31 hung") from None
    assert child.returncode == 0, f"exit {child.returncode}: {stderr.decode()[-1500:]}"
    assert stdout.decode().strip() == f"result: {INVALID_CONFIG}", stdout.decode()
