"""Hostile input to consumers: subscriptions, run configs, seeks and commits.

Every call must return a Result within its bound, with the outcome the contract
allows, and the consumer must still deliver messages afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from qi.base import Success
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachBatchPayload,
    EachMessagePayload,
    StreamingConsumer,
    StreamingMessage,
    SubscriptionConfig,
)
from testkit import unique, wait_until

from ._harness import PARTITIONS, Harness, examples
from ._hostile import (
    INVALID_ARGUMENT,
    INVALID_CONFIG,
    INVALID_TOPIC,
    clean_text,
    invalid_topic_names,
    junk,
    offset_arguments,
    offset_is_valid,
    partition_arguments,
    topic_arguments,
)
from ._support import bounded, code_of

_NOT_SUBSCRIBED = "STREAMING_NOT_SUBSCRIBED"


def _consumer(harness: Harness) -> StreamingConsumer:
    config = ConsumerConfig(
        group_id=unique("group"),
        session_timeout=6.0,
        heartbeat_interval=0.5,
        auto_commit_interval=0.5,
    )
    result = harness.call(harness.client.get_consumer(config), "get_consumer")
    assert isinstance(result, Success), result
    return result.value


async def _handle(payload: EachMessagePayload) -> None:
    return None


async def _handle_batch(payload: EachBatchPayload) -> None:
    return None


@st.composite
def _subscriptions(draw: st.DrawFn, topic: str) -> tuple[Any, frozenset[str | None]]:
    """A subscribe argument and its allowed outcomes."""
    if draw(st.integers(0, 7)) == 0:
        return draw(st.one_of(junk, clean_text)), frozenset({INVALID_CONFIG})
    names = draw(st.lists(topic_arguments(topic), max_size=3))
    topics_arg: Any = tuple(name for name, _ in names)
    problems: set[str] = set()
    if draw(st.integers(0, 9)) == 0:
        topics_arg = draw(st.one_of(st.none(), clean_text, st.integers()))
        problems.add(INVALID_CONFIG)
    elif not all(valid for _, valid in names):
        problems.add(INVALID_TOPIC)
    pattern = draw(
        st.one_of(
            st.none(),
            st.sampled_from(["qi-.*", "^never$", "(a|b)+", ".*"]),
            st.sampled_from(["(", "[", "*", "(?P<>x)", "a{2,1}"]).map(lambda p: ("bad", p)),
            junk.filter(lambda value: value is not None).map(lambda p: ("bad", p)),
        )
    )
    if isinstance(pattern, tuple):
        pattern = pattern[1]
        problems.add(INVALID_CONFIG)
    from_beginning: Any = draw(st.one_of(st.booleans(), st.sampled_from([None, "yes", 1])))
    if not isinstance(from_beginning, bool):
        problems.add(INVALID_CONFIG)
    if topics_arg == () and pattern is None:
        problems.add(INVALID_CONFIG)
    config = SubscriptionConfig(topics=topics_arg, pattern=pattern, from_beginning=from_beginning)
    return config, frozenset(problems) if problems else frozenset({None})


@st.composite
def _run_configs(draw: st.DrawFn) -> tuple[Any, frozenset[str | None]]:
    """A run argument for a consumer that never subscribed, and its allowed outcomes."""
    if draw(st.integers(0, 7)) == 0:
        return draw(st.one_of(junk, clean_text)), frozenset({INVALID_CONFIG})
    handlers = draw(st.sampled_from(["message", "batch", "both", "none", "junk", "sync"]))
    on_error = draw(st.one_of(st.none(), st.just(print), junk.filter(lambda v: v is not None)))
    # NaN is left to test_a_nan_retry_backoff_is_an_invalid_config, so that one known
    # problem does not hide the others this test can find.
    backoff = draw(st.one_of(st.floats(0, 5), st.floats(max_value=-0.001, allow_nan=False)))
    config = ConsumerRunConfig(
        each_message=_handle if handlers in ("message", "both") else None,
        each_batch=_handle_batch if handlers in ("batch", "both") else None,
        on_error=on_error,
        retry_backoff=backoff,
    )
    if handlers == "junk":
        config = ConsumerRunConfig(each_message=draw(junk.filter(lambda v: v is not None)))
        return config, frozenset({INVALID_CONFIG})
    if handlers == "sync":  # not async: the contract's type says async, a check is optional
        config = ConsumerRunConfig(each_message=lambda payload: None)  # type: ignore[arg-type,return-value]
        return config, frozenset({INVALID_CONFIG, _NOT_SUBSCRIBED})
    wrong = (
        handlers in ("both", "none")
        or (on_error is not None and not callable(on_error))
        or not backoff >= 0  # negative or NaN
    )
    return config, frozenset({INVALID_CONFIG} if wrong else {_NOT_SUBSCRIBED})


def test_subscribe_and_run_with_hostile_arguments(harness: Harness) -> None:
    subscriber = _consumer(harness)
    runner = _consumer(harness)  # never subscribed, so run() never joins a group

    @examples(harness.backend, memory=400, real=150)
    @given(subscription=_subscriptions(harness.topic), run=_run_configs())
    def check(
        subscription: tuple[Any, frozenset[str | None]], run: tuple[Any, frozenset[str | None]]
    ) -> None:
        argument, expect = subscription
        result = harness.call(subscriber.subscribe(argument), "subscribe")
        assert code_of(result) in expect, f"subscribe({argument!r:.300}): {result}"
        argument, expect = run
        result = harness.call(runner.run(argument), "run")
        assert code_of(result) in expect, f"run({argument!r:.300}): {result}"

    check()
    valid = SubscriptionConfig(topics=(harness.topic,))
    assert isinstance(harness.call(subscriber.subscribe(valid), "subscribe"), Success)
    for commit in (subscriber.commit_offsets(), runner.commit_offsets()):
        assert isinstance(harness.call(commit, "commit_offsets"), Success)


def test_seek_and_commit_with_hostile_arguments(harness: Harness) -> None:
    """On a running consumer: arbitrary seeks give the allowed outcome; it still consumes."""
    consumer = _consumer(harness)
    seen: set[bytes] = set()

    async def collect(payload: EachMessagePayload) -> None:
        if payload.message.value is not None:
            seen.add(payload.message.value)

    subscription = SubscriptionConfig(topics=(harness.topic,), from_beginning=True)
    assert isinstance(harness.call(consumer.subscribe(subscription), "subscribe"), Success)
    started = harness.call(consumer.run(ConsumerRunConfig(each_message=collect)), "run")
    assert isinstance(started, Success), started
    other_topic = unique("never-subscribed")

    topics = st.one_of(
        st.just((harness.topic, True)),
        st.just((other_topic, True)),
        invalid_topic_names.map(lambda name: (name, False)),
    )

    @examples(harness.backend, memory=400, real=200)
    @given(topic=topics, partition=partition_arguments, offset=offset_arguments)
    def check(topic: tuple[Any, bool], partition: Any, offset: Any) -> None:
        name, topic_valid = topic
        partition_valid = isinstance(partition, int) and partition >= 0
        arguments_valid = partition_valid and offset_is_valid(offset)
        if not topic_valid:
            expect: set[str | None] = (
                {INVALID_TOPIC} if arguments_valid else {INVALID_TOPIC, INVALID_ARGUMENT}
            )
        elif not arguments_valid:
            expect = {INVALID_ARGUMENT}
        elif name == harness.topic and partition in range(PARTITIONS):
            expect = {None}
        else:
            expect = {INVALID_ARGUMENT}  # a partition not assigned to this consumer
        if isinstance(partition, bool) and topic_valid and offset_is_valid(offset):
            expect = {None, INVALID_ARGUMENT}  # the contract says int; bool is an int subclass
        result = harness.call(consumer.seek(name, partition, offset), "seek")
        assert code_of(result) in expect, (
            f"seek({name!r:.100}, {partition!r}, {offset!r}): {result}"
        )
        committed = harness.call(consumer.commit_offsets(), "commit_offsets")
        assert isinstance(committed, Success), committed

    check()
    for partition in range(PARTITIONS):
        rewound = harness.call(consumer.seek(harness.topic, partition, "earliest"), "seek")
        assert isinstance(rewound, Success), rewound
    marker = uuid.uuid4().bytes
    sent = harness.call(harness.producer.send(harness.topic, StreamingMessage(marker)), "send")
    assert isinstance(sent, Success), sent
    harness.runner.run(
        bounded(wait_until(lambda: marker in seen, "the marker", within=20.0), 25.0, "consuming")
    )


def test_a_nan_retry_backoff_is_an_invalid_config(harness: Harness) -> None:
    """NaN seconds is not a backoff: ``retry_at = now + nan`` never compares true."""
    consumer = _consumer(harness)
    config = ConsumerRunConfig(each_message=_handle, retry_backoff=float("nan"))
    result = harness.call(consumer.run(config), "run")
    assert code_of(result) == INVALID_CONFIG, result
