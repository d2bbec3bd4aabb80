"""Hostile configurations: every field wrong, wrong types, unknown implementations.

Building a config never raises; the first call that uses a wrong one returns
STREAMING_INVALID_CONFIG (contract 3), and nothing ever raises or hangs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qi.base import QiError, Result, Success
from qi.base.streaming import (
    ConsumerConfig,
    StreamingConfig,
    StreamingMessage,
    create_connector,
    create_streaming_client,
)
from testkit import unique

from ._configs import wrong_consumer_configs, wrong_producer_configs, wrong_streaming_configs
from ._harness import Harness, examples
from ._hostile import INVALID_CONFIG, clean_text, junk
from ._support import check_result, code_of, producer_config_for

_UNKNOWN = "STREAMING_UNKNOWN_IMPLEMENTATION"


def _consumer_config() -> ConsumerConfig:
    return ConsumerConfig(group_id=unique("group"), session_timeout=6.0, heartbeat_interval=0.5)


def test_a_wrong_client_config_fails_every_first_use(harness: Harness) -> None:
    valid = harness.config

    @examples(harness.backend, memory=500, real=300)
    @given(drawn=wrong_streaming_configs(valid))
    def check(drawn: tuple[Any, tuple[str, ...]]) -> None:
        config, fields = drawn
        connector = check_result(create_connector(harness.backend, config), "create_connector")
        assert code_of(connector) == INVALID_CONFIG, f"wrong {fields}: {connector}"
        client = create_streaming_client(harness.backend, config)
        calls: dict[str, Callable[[], Awaitable[Result[Any, QiError]]]] = {
            "get_producer": lambda: client.get_producer(producer_config_for(harness.backend)),
            "get_consumer": lambda: client.get_consumer(_consumer_config()),
            "get_admin": client.get_admin,
            "is_healthy": client.is_healthy,
        }
        for name, call in calls.items():
            result = harness.call(call(), name)
            assert code_of(result) == INVALID_CONFIG, f"{name} with wrong {fields}: {result}"
        assert isinstance(harness.call(client.disconnect(), "disconnect"), Success)

    check()
    harness.assert_still_works()


def test_wrong_producer_and_consumer_configs_are_invalid_config(harness: Harness) -> None:
    # Unlike any config the client has cached: a wrong value equal to a right one (1.0 ==
    # True) would otherwise hit the cache, which test_the_cache_does_not_bypass_validation
    # covers on its own.
    valid_producer = producer_config_for(harness.backend, linger=0.007)
    valid_consumer = _consumer_config()

    @examples(harness.backend, memory=500, real=300)
    @given(
        producer=wrong_producer_configs(valid_producer),
        consumer=wrong_consumer_configs(valid_consumer),
    )
    def check(producer: tuple[Any, tuple[str, ...]], consumer: tuple[Any, tuple[str, ...]]) -> None:
        config, fields = producer
        result = harness.call(harness.client.get_producer(config), "get_producer")
        assert code_of(result) == INVALID_CONFIG, f"producer with wrong {fields}: {result}"
        consumer_config, fields = consumer
        joined = harness.call(harness.client.get_consumer(consumer_config), "get_consumer")
        assert code_of(joined) == INVALID_CONFIG, f"consumer with wrong {fields}: {joined}"

    check()
    harness.assert_still_works()


def test_config_arguments_of_the_wrong_type_are_invalid_config(harness: Harness) -> None:
    @examples(harness.backend, memory=300, real=200)
    @given(argument=st.one_of(junk.filter(lambda value: value is not None), clean_text))
    def check(argument: Any) -> None:
        for name, call in (
            ("get_producer", harness.client.get_producer),
            ("get_consumer", harness.client.get_consumer),
        ):
            result = harness.call(call(argument), name)
            assert code_of(result) == INVALID_CONFIG, f"{name}({argument!r:.200}): {result}"
        connector = check_result(
            create_connector(harness.backend, argument), "create_connector(config=junk)"
        )
        assert code_of(connector) == INVALID_CONFIG, connector
        result = harness.call(
            create_streaming_client(harness.backend, argument).get_admin(), "get_admin"
        )
        assert code_of(result) == INVALID_CONFIG, result

    check()
    no_config: Any = None
    none_consumer = harness.call(harness.client.get_consumer(no_config), "get_consumer(None)")
    assert code_of(none_consumer) == INVALID_CONFIG, none_consumer
    harness.assert_still_works()


def test_unknown_implementations_are_reported_not_raised(harness: Harness) -> None:
    config = StreamingConfig(client_id="hostile", brokers=harness.brokers)

    @examples(harness.backend, memory=200, real=100)
    @given(
        name=st.one_of(
            clean_text.filter(lambda name: name not in ("memory", "confluent", "aiokafka")),
            st.sampled_from(["Memory", "kafka", "confluent ", "backends", "../memory", ""]),
            junk,
        )
    )
    def check(name: Any) -> None:
        connector = check_result(create_connector(name, config), "create_connector")
        assert code_of(connector) == _UNKNOWN, connector
        client = create_streaming_client(name, config)
        for call_name, call in (("get_admin", client.get_admin), ("is_healthy", client.is_healthy)):
            result = harness.call(call(), call_name)
            assert code_of(result) == _UNKNOWN, f"{call_name} of {name!r:.100}: {result}"

    check()


def test_a_nan_linger_is_an_invalid_config(harness: Harness) -> None:
    """NaN is not a number of seconds (``nan < 0`` is False, so a range check lets it in)."""
    config = producer_config_for(harness.backend, linger=math.nan)
    result = harness.call(harness.client.get_producer(config), "get_producer")
    assert code_of(result) == INVALID_CONFIG, result


_EDGE_PRODUCERS = {
    "linger=inf": {"linger": math.inf},
    "linger=1e9": {"linger": 1e9},
    "max_message_bytes=2**70": {"max_message_bytes": 2**70},
    "max_in_flight=2**40": {"max_in_flight": 2**40, "idempotent": False},
}
_EDGE_CONSUMERS = {
    "session_timeout=inf": {"session_timeout": math.inf},
    "session_timeout=1e12": {"session_timeout": 1e12},
    "auto_commit_interval=inf": {"auto_commit_interval": math.inf},
    "max_batch_size=2**40": {"max_batch_size": 2**40},
}


@pytest.mark.parametrize("changes", _EDGE_PRODUCERS.values(), ids=_EDGE_PRODUCERS.keys())
def test_out_of_range_producer_settings_are_refused_or_work(
    harness: Harness, changes: dict[str, Any]
) -> None:
    """The contract sets no upper bound here, so either answer is fine, but never a broken one."""
    result = harness.call(
        harness.client.get_producer(producer_config_for(harness.backend, **changes)),
        "get_producer",
    )
    if isinstance(result, Success):
        sent = harness.call(result.value.send(harness.topic, StreamingMessage(b"edge")), "send")
        assert isinstance(sent, Success), f"accepted {changes} but cannot send: {sent}"
    else:
        assert code_of(result) == INVALID_CONFIG, result


@pytest.mark.parametrize("changes", _EDGE_CONSUMERS.values(), ids=_EDGE_CONSUMERS.keys())
def test_out_of_range_consumer_settings_are_refused_or_connect(
    harness: Harness, changes: dict[str, Any]
) -> None:
    config = dataclasses.replace(_consumer_config(), **changes)
    result = harness.call(harness.client.get_consumer(config), "get_consumer")
    assert code_of(result) in (None, INVALID_CONFIG), result


@pytest.mark.parametrize(
    ("field", "wrong_kind"), [("idempotent", "int"), ("idempotent", "float"), ("linger", "bool")]
)
def test_the_cache_does_not_bypass_validation(
    harness: Harness, field: str, wrong_kind: str
) -> None:
    """A wrong config that compares equal to a cached valid one is still INVALID_CONFIG."""
    valid = producer_config_for(harness.backend, linger=1)
    cached = harness.call(harness.client.get_producer(valid), "get_producer")
    assert isinstance(cached, Success), cached
    if field == "idempotent":  # a bool is wanted: 1 and 1.0 equal True, 0 and 0.0 False
        wrong_value: Any = (int if wrong_kind == "int" else float)(valid.idempotent)
    else:  # a number of seconds is wanted, not a bool: True equals 1
        wrong_value = True
    wrong = dataclasses.replace(valid, **{field: wrong_value})
    assert wrong == valid  # which is the point
    result = harness.call(harness.client.get_producer(wrong), "get_producer")
    assert code_of(result) == INVALID_CONFIG, result
