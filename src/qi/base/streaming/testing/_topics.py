"""Reading what a topic holds, and asserting that a message was produced to it."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Mapping
from typing import Final

from qi.base import Success
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    ConsumerRunConfig,
    EachBatchPayload,
    StreamingClient,
    SubscriptionConfig,
)
from qi.base.streaming.testing._expect import expect_success

_READER_GROUP_PREFIX: Final = "qi-testing-reader-"
_LISTED_AT_MOST: Final = 50
# A reader is alone in its group; a short session keeps its join fast on the
# development brokers, which take a part of the session to settle a join.
_READER_SESSION: Final = 6.0
_READER_HEARTBEAT: Final = 0.5


async def read_topic(
    client: StreamingClient, topic: str, *, within: float = 10.0
) -> tuple[ConsumedMessage, ...]:
    """Read every message ``topic`` holds now, from each partition's start to its current end.

    The messages come ordered by partition, then offset. A reader of its own (a consumer
    group named ``qi-testing-reader-...``, deleted afterwards) reads them, so the
    application's groups are not disturbed. A partition counts as read when its last
    message before the end offset has arrived; when ``within`` seconds pass first, what
    arrived is returned. On a topic written by transactions the end offset counts the
    commit markers, which are no messages: such a read lasts the whole ``within``.

    Raises AssertionError when the library reports a failure (a missing topic, say) or
    the reader was given no partitions within ``within`` seconds.
    """
    deadline = asyncio.get_running_loop().time() + within
    doing = f"reading topic {topic!r}"
    admin = expect_success(await client.get_admin(), doing)
    offsets = expect_success(await admin.get_topic_offsets(topic), doing)
    # Partitions empty now are left out: there is nothing in them to wait for.
    ends = {part.partition: part.end for part in offsets if part.end > part.start}
    if not ends:
        return ()
    unread = set(ends)

    def last_before_end(message: ConsumedMessage) -> bool:
        if message.offset == ends.get(message.partition, 0) - 1:
            unread.discard(message.partition)
        return not unread

    messages = await _read_until(client, topic, last_before_end, deadline, doing)
    return tuple(message for message in messages if message.offset < ends.get(message.partition, 0))


async def _read_until(
    client: StreamingClient,
    topic: str,
    finished: Callable[[ConsumedMessage], bool],
    deadline: float,
    doing: str,
) -> tuple[ConsumedMessage, ...]:
    """Read ``topic`` from its start with a group of its own until ``finished`` is true of a
    message or the loop's clock reaches ``deadline``; what was read, by partition and offset."""
    received: dict[tuple[int, int], ConsumedMessage] = {}
    done = asyncio.Event()
    raised: list[BaseException] = []

    async def keep(payload: EachBatchPayload) -> None:
        for message in payload.messages:
            received[(message.partition, message.offset)] = message
            try:
                if finished(message):
                    done.set()
            except Exception as error:  # the caller's predicate: it fails the test, not the read
                raised.append(error)
                done.set()

    group_id = f"{_READER_GROUP_PREFIX}{uuid.uuid4().hex}"
    reader_config = ConsumerConfig(
        group_id=group_id,
        session_timeout=_READER_SESSION,
        heartbeat_interval=_READER_HEARTBEAT,
        auto_commit=False,
    )
    reader = expect_success(await client.get_consumer(reader_config), doing)
    joined = False
    try:
        subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
        expect_success(await reader.subscribe(subscription), doing)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                expect_success(await reader.run(ConsumerRunConfig(each_batch=keep)), doing)
                joined = True
                await done.wait()
    finally:
        await reader.disconnect()
        admin = await client.get_admin()
        if isinstance(admin, Success):
            await admin.value.delete_group(group_id)  # best effort: only tidies the broker up
    if raised:
        raise raised[0]
    if not joined:
        # Saying "the topic holds nothing" here would blame the application for a slow join.
        raise AssertionError(f"{doing}: its reader was given no partitions in time")
    return tuple(received[key] for key in sorted(received))


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _matches(
    message: ConsumedMessage,
    key: bytes | None,
    value: bytes | None,
    headers: Mapping[str, bytes],
    partition: int | None,
    where: Callable[[ConsumedMessage], bool] | None,
) -> bool:
    return (
        (key is None or message.key == key)
        and (value is None or message.value == value)
        and (partition is None or message.partition == partition)
        and all(message.headers.get(name) == wanted for name, wanted in headers.items())
        and (where is None or where(message))
    )


def describe_messages(topic: str, messages: tuple[ConsumedMessage, ...]) -> str:
    """A listing of ``messages`` of ``topic``, one line each, for failure messages."""
    if not messages:
        return f"topic {topic!r} holds no messages"
    lines = [f"topic {topic!r} holds {len(messages)} message(s):"]
    for message in messages[:_LISTED_AT_MOST]:
        headers = f" headers={dict(message.headers)!r}" if message.headers else ""
        lines.append(
            f"  partition {message.partition} offset {message.offset}: "
            f"key={message.key!r} value={message.value!r}{headers}"
        )
    if len(messages) > _LISTED_AT_MOST:
        lines.append(f"  ... and {len(messages) - _LISTED_AT_MOST} more")
    return "\n".join(lines)


async def assert_produced(
    client: StreamingClient,
    topic: str,
    *,
    key: str | bytes | None = None,
    value: str | bytes | None = None,
    headers: Mapping[str, str | bytes] | None = None,
    partition: int | None = None,
    where: Callable[[ConsumedMessage], bool] | None = None,
    within: float = 10.0,
) -> ConsumedMessage:
    """Return a message of ``topic`` that matches (the first to arrive); fail the test if none does.

    A message matches when it has ``key`` and ``value`` (a ``str`` is compared as its
    UTF-8 bytes), carries each of ``headers`` with that value (other headers may be
    there too), lies in ``partition``, and satisfies ``where``; an argument left None is
    not checked (so ``where=lambda m: m.value is None`` asks for a tombstone). A reader
    of its own reads the topic from the start and keeps reading until a message matches
    or ``within`` seconds have passed, so a message another task is about to produce is
    waited for. The AssertionError lists what the topic held; an exception ``where``
    raises fails the test as it is.
    """
    deadline = asyncio.get_running_loop().time() + within
    doing = f"reading topic {topic!r}"
    admin = expect_success(await client.get_admin(), doing)
    expect_success(await admin.get_topic_offsets(topic), doing)  # a missing topic fails now
    wanted_key = None if key is None else _as_bytes(key)
    wanted_value = None if value is None else _as_bytes(value)
    wanted_headers = {name: _as_bytes(header) for name, header in (headers or {}).items()}
    matched: list[ConsumedMessage] = []

    def matches(message: ConsumedMessage) -> bool:
        if _matches(message, wanted_key, wanted_value, wanted_headers, partition, where):
            matched.append(message)
        return bool(matched)

    messages = await _read_until(client, topic, matches, deadline, doing)
    if matched:
        return matched[0]
    expected = _describe_expectation(wanted_key, wanted_value, wanted_headers, partition, where)
    raise AssertionError(
        f"no message {expected} was produced to {topic!r} within {within}s; "
        f"{describe_messages(topic, messages)}"
    )


def _describe_expectation(
    key: bytes | None,
    value: bytes | None,
    headers: Mapping[str, bytes],
    partition: int | None,
    where: Callable[[ConsumedMessage], bool] | None,
) -> str:
    terms = [
        *([f"key={key!r}"] if key is not None else []),
        *([f"value={value!r}"] if value is not None else []),
        *([f"headers including {dict(headers)!r}"] if headers else []),
        *([f"in partition {partition}"] if partition is not None else []),
        *([f"satisfying {getattr(where, '__name__', repr(where))}"] if where is not None else []),
    ]
    return "with " + ", ".join(terms) if terms else "at all"
