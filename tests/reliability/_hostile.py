"""Hypothesis strategies for hostile arguments, each paired with what the contract expects.

An expectation is the set of outcomes the contract allows: error codes, and ``None``
for a Success. Values are sorted into three kinds per field: ``OK`` (the contract
says it works), ``BAD`` (the contract says it is wrong) and ``MAYBE`` (the contract
is silent: either a Success or the field's rejection code is acceptable).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Final, Literal

from hypothesis import strategies as st

from qi.base.streaming import MessageBatch, StreamingMessage

Kind = Literal["ok", "bad", "maybe"]
Expect = frozenset[str | None]
Tagged = tuple[Any, Kind]

OK: Final = "ok"
BAD: Final = "bad"
MAYBE: Final = "maybe"

INVALID_MESSAGE: Final = "STREAMING_INVALID_MESSAGE"
INVALID_TOPIC: Final = "STREAMING_INVALID_TOPIC"
TOO_LARGE: Final = "STREAMING_MESSAGE_TOO_LARGE"
INVALID_ARGUMENT: Final = "STREAMING_INVALID_ARGUMENT"
INVALID_CONFIG: Final = "STREAMING_INVALID_CONFIG"
TOPIC_NOT_FOUND: Final = "STREAMING_TOPIC_NOT_FOUND"
PARTIAL: Final = "STREAMING_BATCH_PARTIAL_FAILURE"

LIMIT: Final = 1_048_576  # ProducerConfig().max_message_bytes
# Kafka's default message.max.bytes: the largest record batch a broker (and the memory
# broker) accepts, the batch header and each record's framing included.
BROKER_LIMIT: Final = 1_048_588
# Most bytes a one-record batch adds to its key, value and headers: the batch header and
# the record's fixed fields and length varints, then two varints a header.
_BATCH_FRAMING: Final = 80
_HEADER_FRAMING: Final = 10
_TOPIC_CHARS: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"


def _tag(strategy: st.SearchStrategy[Any], kind: Kind) -> st.SearchStrategy[Tagged]:
    return strategy.map(lambda value: (value, kind))


# Text that UTF-8 can encode (no lone surrogates). Text that it cannot encode has its
# own test (test_unencodable_text_is_an_invalid_message), so that one known problem
# does not hide the others the hypothesis tests can find.
clean_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=12)

# Values of the wrong type almost anywhere: never a str or bytes.
junk: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.integers(), st.integers(), max_size=2),
    st.builds(object),
    st.just(date(2020, 1, 1)),
)

# -- topic names -----------------------------------------------------------------------------

_valid_chunk = st.text(alphabet=_TOPIC_CHARS, min_size=1, max_size=8)
invalid_topic_names: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(["", ".", ".."]),
    st.builds(
        lambda a, bad, b: a + bad + b,
        _valid_chunk,
        st.sampled_from([" ", "/", "\\", ":", "*", "\x00", "\n", "#", "é", "漢", "\ud800", "🙂"]),
        _valid_chunk,
    ),
    st.integers(250, 400).map(lambda n: "t" * n),
    st.sampled_from([1_000_000, 5_000_000]).map(lambda n: "x" * n),  # huge strings
    st.binary(min_size=1, max_size=8),
    junk,
)


def topic_arguments(existing: str) -> st.SearchStrategy[tuple[Any, bool]]:
    """A topic argument and whether it is valid: mostly ``existing``, often hostile."""
    return st.integers(0, 3).flatmap(
        lambda choice: (
            invalid_topic_names.map(lambda name: (name, False))
            if choice == 0
            else st.just((existing, True))
        )
    )


# -- message fields --------------------------------------------------------------------------

# Per field: values the contract accepts, and hostile ones (wrong, edge or enormous).
_ok_values = st.one_of(_tag(st.binary(max_size=64), OK), _tag(st.none(), OK))  # None: tombstone
_hostile_values = st.one_of(
    _tag(st.sampled_from([LIMIT - 64, LIMIT, LIMIT + 1, 2 * LIMIT]).map(lambda n: b"v" * n), OK),
    _tag(st.just(bytearray(b"bytearray")), MAYBE),
    _tag(st.one_of(junk.filter(lambda v: v is not None), clean_text), BAD),
)
_ok_keys = st.one_of(
    _tag(st.none(), OK),
    _tag(st.binary(max_size=32), OK),  # arbitrary bytes, most of them not UTF-8
    _tag(clean_text, OK),
)
_hostile_keys = st.one_of(
    _tag(junk.filter(lambda value: value is not None), BAD),
    _tag(st.sampled_from([b"\xff\xfe\x00", b"\x00" * 1000, "\u0000", "🙂" * 100]), OK),
)
_utc_datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
_offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
_ok_timestamps = st.one_of(_tag(st.none(), OK), _tag(_utc_datetimes, OK))
_hostile_timestamps = st.one_of(
    _tag(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)), MAYBE),
    _tag(
        st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1), timezones=_offsets
        ),
        OK,
    ),
    _tag(st.datetimes(max_value=datetime(1969, 12, 31), timezones=st.just(UTC)), MAYBE),
    _tag(st.datetimes(min_value=datetime(9000, 1, 1), timezones=st.just(UTC)), MAYBE),
    _tag(st.one_of(junk.filter(lambda v: v is not None), clean_text), BAD),
)
_header_values = st.one_of(clean_text, st.binary(max_size=32))
_ok_headers = st.one_of(
    _tag(st.dictionaries(clean_text, _header_values, max_size=5), OK),
    _tag(st.dictionaries(clean_text, _header_values, max_size=3).map(MappingProxyType), OK),
)
_hostile_headers = st.one_of(
    _tag(st.sampled_from([1_000, 5_000]).map(lambda n: {f"h{i}": b"x" for i in range(n)}), OK),
    _tag(st.just({"enormous": b"h" * (2 * LIMIT)}), OK),
    _tag(st.dictionaries(st.one_of(st.integers(), st.binary()), st.binary(), min_size=1), BAD),
    _tag(st.dictionaries(clean_text, junk, min_size=1, max_size=2), BAD),
    _tag(st.one_of(st.none(), st.integers(), clean_text, st.lists(st.tuples(clean_text))), BAD),
)


def _ok_partitions(count: int) -> st.SearchStrategy[Tagged]:
    return st.one_of(_tag(st.none(), OK), _tag(st.integers(0, count - 1), OK))


def _hostile_partitions(count: int) -> st.SearchStrategy[Tagged]:
    absent = st.integers(count, 2**31 - 1)
    beyond_int32 = st.sampled_from([2**31, 2**63, 2**100])  # no Kafka partition number
    return st.one_of(
        _tag(absent, "absent"),  # type: ignore[arg-type]
        _tag(beyond_int32, BAD),
        _tag(st.integers(max_value=-1), BAD),
        _tag(st.one_of(st.floats(), clean_text, st.just("0")), BAD),
        _tag(st.booleans(), MAYBE),
    )


_FIELDS: Final = ("value", "key", "timestamp", "partition", "headers")


def _field_strategies(partitions: int) -> dict[str, tuple[Any, Any]]:
    return {
        "value": (_ok_values, _hostile_values),
        "key": (_ok_keys, _hostile_keys),
        "timestamp": (_ok_timestamps, _hostile_timestamps),
        "partition": (_ok_partitions(partitions), _hostile_partitions(partitions)),
        "headers": (_ok_headers, _hostile_headers),
    }


def _size(value: Any) -> int:
    return len(value.encode()) if isinstance(value, str) else len(value)


def message_size(message: StreamingMessage) -> int:
    """Key, value and headers together, as the contract measures ``max_message_bytes``."""
    size = 0 if message.value is None else len(message.value)
    if message.key is not None:
        size += _size(message.key)
    for name, value in message.headers.items():
        size += _size(name) + _size(value)
    return size


@st.composite
def messages(draw: st.DrawFn, partitions: int) -> tuple[Any, Expect]:
    """A message argument for a topic of ``partitions`` partitions, and its allowed outcomes."""
    if draw(st.integers(0, 15)) == 0:
        return draw(st.one_of(junk, clean_text, st.binary())), frozenset({INVALID_MESSAGE})
    strategies = _field_strategies(partitions)
    hostile = draw(st.sets(st.sampled_from(_FIELDS), max_size=2))
    drawn = {
        name: draw(strategies[name][1] if name in hostile else strategies[name][0])
        for name in _FIELDS
    }
    message = StreamingMessage(**{name: value for name, (value, _) in drawn.items()})
    partition_kind = drawn["partition"][1]
    kinds = {kind for _, kind in drawn.values()}
    if BAD in kinds:
        return message, frozenset({INVALID_MESSAGE})
    size = message_size(message)
    if size > LIMIT:
        outcome: str | None = TOO_LARGE
    elif partition_kind == "absent":
        outcome = INVALID_MESSAGE
    else:
        outcome = None
    allowed = {outcome}
    if outcome is None and (
        size + _BATCH_FRAMING + _HEADER_FRAMING * len(message.headers) > BROKER_LIMIT
    ):
        allowed.add(TOO_LARGE)  # the broker counts the record batch, framing included
    if MAYBE in kinds:
        allowed.add(INVALID_MESSAGE)
    return message, frozenset(allowed)


@st.composite
def batches(draw: st.DrawFn, topic: str, partitions: int) -> tuple[Any, Expect, list[Expect]]:
    """A send_batch argument, the allowed outcomes of the whole call and of each message."""
    shape = draw(st.integers(0, 9))
    if shape == 0:
        return draw(st.one_of(junk, clean_text)), frozenset({INVALID_MESSAGE}), []
    name, topic_valid = draw(topic_arguments(topic))
    if shape == 1:
        contents = draw(st.one_of(junk, clean_text).filter(lambda v: not isinstance(v, list)))
        expect = frozenset({INVALID_MESSAGE} if topic_valid else {INVALID_TOPIC, INVALID_MESSAGE})
        return MessageBatch(topic=name, messages=contents), expect, []  # type: ignore[arg-type]
    drawn = draw(st.lists(messages(partitions), max_size=4))
    each = [expect for _, expect in drawn]
    batch = MessageBatch(topic=name, messages=tuple(message for message, _ in drawn))
    if not topic_valid:
        return batch, frozenset({INVALID_TOPIC}), each
    whole: set[str | None] = set()
    if all(None in expect for expect in each):
        whole.add(None)
    if any(expect - {None} for expect in each):
        whole.add(PARTIAL)
    if not each:
        whole.add(INVALID_MESSAGE)  # the contract is silent on empty batches
    return batch, frozenset(whole), each


# -- consumer arguments ----------------------------------------------------------------------

partition_arguments: st.SearchStrategy[Any] = st.one_of(
    st.integers(0, 3),
    st.integers(-(2**70), 2**70),
    st.sampled_from([2**31, 2**63, -1]),
    junk,
    clean_text,
)
offset_arguments: st.SearchStrategy[Any] = st.one_of(
    st.integers(0, 10),
    st.integers(-(2**70), 2**70),
    st.sampled_from(["earliest", "latest", "EARLIEST", "0", "12", "-1", "1e3", " 1", "١٢", ""]),
    st.integers(0, 2**63 - 1).map(str),
    junk,
    clean_text,
)


def offset_is_valid(offset: Any) -> bool:
    """The contract's seek offsets: an int >= 0, a decimal string, "earliest" or "latest"."""
    if isinstance(offset, bool):
        return False
    if isinstance(offset, int):
        return 0 <= offset < 2**63
    if isinstance(offset, str):
        if offset in ("earliest", "latest"):
            return True
        return offset.isascii() and offset.isdecimal() and int(offset) < 2**63
    return False
