"""Kafka's topic-level configs: the one table the memory broker checks ``config_entries`` by.

Each entry is a config's name, its value type and the values Kafka accepts, as its
``LogConfig`` defines them (and the "Topic Configs" page of Kafka's documentation lists
them): a name outside the table, or a value of the wrong type or out of range, makes
Kafka refuse the topic with INVALID_CONFIG, and so does the memory broker, with Kafka's
wording. The table is the union of Kafka 3.x and 4.x, so a topic valid on either is
valid here. Values are parsed as Kafka's ``ConfigDef`` parses them: trimmed, booleans
in any case, lists split on commas.

The memory broker then honours what changes what a client sees: ``cleanup.policy``
(a compacted topic refuses records without a key), ``max.message.bytes`` (the largest
record batch it accepts) and ``message.timestamp.type`` (``LogAppendTime`` stamps
records with the broker's clock). The others are accepted and kept, with no effect.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1
_LONG_MIN: Final = -(2**63)
_LONG_MAX: Final = 2**63 - 1

BROKER_MESSAGE_MAX_BYTES: Final = 1_048_588
"""Kafka's default ``message.max.bytes`` (1 MiB plus the 12-byte log overhead): the largest
record batch a topic without ``max.message.bytes`` accepts."""

Check = Callable[[str], str | None]
"""A value check: None when Kafka accepts the (trimmed) text, else Kafka's reason."""


# What Java's Integer.parseInt and Long.parseLong read (Python's int() also takes "1_000").
_WHOLE_NUMBER: Final = re.compile(r"[+-]?[0-9]+")
# What Java's Double.parseDouble reads, short of hexadecimal and type suffixes.
_DECIMAL_NUMBER: Final = re.compile(
    r"[+-]?(NaN|Infinity|([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?)"
)


def _whole(kind: str, low: int, high: int, at_least: int | None, at_most: int | None) -> Check:
    def check(text: str) -> str | None:
        if _WHOLE_NUMBER.fullmatch(text) is None or not low <= int(text) <= high:
            return f"Not a number of type {kind}"
        number = int(text)
        if at_least is not None and number < at_least:
            return f"Value must be at least {at_least}"
        if at_most is not None and number > at_most:
            return f"Value must be no more than {at_most}"
        return None

    return check


def _int(at_least: int | None = None, at_most: int | None = None) -> Check:
    return _whole("INT", _INT_MIN, _INT_MAX, at_least, at_most)


def _long(at_least: int | None = None) -> Check:
    return _whole("LONG", _LONG_MIN, _LONG_MAX, at_least, None)


def _ratio(text: str) -> str | None:
    if _DECIMAL_NUMBER.fullmatch(text) is None:
        return "Not a number of type DOUBLE"
    number = float(text)
    # Java's range check compares with < and >, so NaN passes, as it does on Kafka.
    if number < 0:
        return "Value must be at least 0"
    if number > 1:
        return "Value must be no more than 1"
    return None


def _gzip_level(text: str) -> str | None:
    # Deflater's levels 1-9, or its -1 ("the default"); 0 (no compression) is refused.
    problem = _int(at_least=-1, at_most=9)(text)
    if problem is None and int(text) == 0:
        return "Value must be between 1 and 9 or equal to -1"
    return problem


def _boolean(text: str) -> str | None:
    return (
        None if text.lower() in ("true", "false") else "Expected value to be either true or false"
    )


def _one_of(*choices: str) -> Check:
    def check(text: str) -> str | None:
        return None if text in choices else f"String must be one of: {', '.join(choices)}"

    return check


def _list_of(*choices: str) -> Check:
    item_check = _one_of(*choices)

    def check(text: str) -> str | None:
        for item in _items(text):
            if (problem := item_check(item)) is not None:
                return problem
        return None

    return check


_THROTTLED_REPLICA: Final = re.compile(r"[0-9]+:[0-9]+")


def _throttled_replicas(text: str) -> str | None:
    items = _items(text)
    if items == ["*"] or all(_THROTTLED_REPLICA.fullmatch(item) for item in items):
        return None
    return (
        "Must be the wildcard (*) or a list of replicas in the form "
        "[PartitionId]:[BrokerId],[PartitionId]:[BrokerId],..."
    )


_VERSION: Final = re.compile(r"[0-9]+\.[0-9]+(\.[0-9]+)?(-IV[0-9]+)?")


def _message_format_version(text: str) -> str | None:
    return None if _VERSION.fullmatch(text) else f"Version `{text}` is not a valid version"


def _items(text: str) -> list[str]:
    """A LIST config's items: Kafka splits on commas and trims; an empty text is no item."""
    return [item.strip() for item in text.split(",")] if text else []


_LONG_AT_LEAST_0: Final = _long(0)

TOPIC_CONFIGS: Final[Mapping[str, Check]] = {
    "cleanup.policy": _list_of("compact", "delete"),
    "compression.gzip.level": _gzip_level,
    "compression.lz4.level": _int(at_least=1, at_most=17),
    "compression.type": _one_of("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"),
    "compression.zstd.level": _int(at_least=-131072, at_most=22),
    "delete.retention.ms": _LONG_AT_LEAST_0,
    "file.delete.delay.ms": _LONG_AT_LEAST_0,
    "flush.messages": _long(1),
    "flush.ms": _LONG_AT_LEAST_0,
    "follower.replication.throttled.replicas": _throttled_replicas,
    "index.interval.bytes": _int(at_least=0),
    "leader.replication.throttled.replicas": _throttled_replicas,
    "local.retention.bytes": _long(-2),
    "local.retention.ms": _long(-2),
    "max.compaction.lag.ms": _long(1),
    "max.message.bytes": _int(at_least=0),
    "message.downconversion.enable": _boolean,  # Kafka 3.x; a no-op kept by 4.x
    "message.format.version": _message_format_version,  # Kafka 3.x only
    "message.timestamp.after.max.ms": _LONG_AT_LEAST_0,
    "message.timestamp.before.max.ms": _LONG_AT_LEAST_0,
    "message.timestamp.difference.max.ms": _LONG_AT_LEAST_0,  # Kafka 3.x only
    "message.timestamp.type": _one_of("CreateTime", "LogAppendTime"),
    "min.cleanable.dirty.ratio": _ratio,
    "min.compaction.lag.ms": _LONG_AT_LEAST_0,
    "min.insync.replicas": _int(at_least=1),
    "preallocate": _boolean,
    "remote.log.copy.disable": _boolean,  # Kafka 3.9+
    "remote.log.delete.on.disable": _boolean,  # Kafka 3.9+
    "remote.storage.enable": _boolean,
    "retention.bytes": _long(),
    "retention.ms": _long(-1),
    "segment.bytes": _int(at_least=14),
    "segment.index.bytes": _int(at_least=4),
    "segment.jitter.ms": _LONG_AT_LEAST_0,
    "segment.ms": _long(1),
    "unclean.leader.election.enable": _boolean,
}
"""Every topic-level config name Kafka knows, with the check of its value."""


def config_problem(name: str, value: str) -> str | None:
    """Why Kafka refuses ``name=value`` for a topic (in Kafka's words), or None."""
    check = TOPIC_CONFIGS.get(name)
    if check is None:
        return f"Unknown topic config name: {name}"
    text = value.strip()
    reason = check(text)
    return None if reason is None else f"Invalid value {text} for configuration {name}: {reason}"


@dataclass(frozen=True, slots=True)
class TopicSettings:
    """What of a topic's configs the memory broker acts on."""

    compact: bool = False
    """``cleanup.policy`` includes ``compact``: every record needs a key."""
    max_batch_bytes: int = BROKER_MESSAGE_MAX_BYTES
    """``max.message.bytes``: the largest record batch the topic accepts."""
    log_append_time: bool = False
    """``message.timestamp.type=LogAppendTime``: records carry the time the broker wrote them."""


def topic_settings(entries: Mapping[str, str]) -> TopicSettings | str:
    """The settings of valid ``config_entries``, or the first problem Kafka would report."""
    for name, value in entries.items():
        if (problem := config_problem(name, value)) is not None:
            return problem
    policy = _items(entries.get("cleanup.policy", "delete").strip())
    limit = entries.get("max.message.bytes")
    stamping = entries.get("message.timestamp.type", "CreateTime").strip()
    return TopicSettings(
        compact="compact" in policy,
        max_batch_bytes=BROKER_MESSAGE_MAX_BYTES if limit is None else int(limit.strip()),
        log_append_time=stamping == "LogAppendTime",
    )
