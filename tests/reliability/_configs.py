"""Hypothesis strategies for configurations with some (or every) field wrong.

Every value in the ``WRONG_*`` tables is wrong by the contract (section 3: "Valid
means at least ...", and the field's declared type), so a config carrying any of
them must give ``STREAMING_INVALID_CONFIG`` from the first call that uses it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Final, TypeVar

from hypothesis import strategies as st

from qi.base.streaming import ConsumerConfig, ProducerConfig, SecurityConfig, StreamingConfig

from ._hostile import clean_text, junk

C = TypeVar("C")

_not_str = junk.filter(lambda value: not isinstance(value, str))
_wrong_seconds = st.one_of(
    st.floats(max_value=0.0, allow_nan=False),
    st.integers(max_value=0),
    st.sampled_from([math.nan, -math.inf, None, "10", b"10", True]),
)

WRONG_STREAMING: Final[dict[str, st.SearchStrategy[Any]]] = {
    "client_id": st.one_of(st.just(""), _not_str, st.binary(min_size=1, max_size=4)),
    "brokers": st.one_of(
        st.sampled_from([(), None, "127.0.0.1:9092", b"127.0.0.1:9092"]),
        st.sampled_from(["nohost", "h:0", "h:65536", "h:-1", ":9092", "h:port", "h:", ""]).map(
            lambda broker: ("127.0.0.1:9092", broker)
        ),
        st.tuples(_not_str),
    ),
    "connection_timeout": _wrong_seconds,
    "request_timeout": _wrong_seconds,
    "retry_attempts": st.one_of(
        st.integers(max_value=-1), st.floats(), st.sampled_from([None, "5", b"5"])
    ),
    "security": st.one_of(
        clean_text,
        st.integers(),
        st.sampled_from(
            [
                SecurityConfig(mechanism="plain"),
                SecurityConfig(mechanism="scram-sha-256", username="user"),
                SecurityConfig(mechanism="scram-sha-512", password="secret"),
                SecurityConfig(mechanism="plain", username="", password="secret"),
                SecurityConfig(mechanism="plain", username="user", password=""),
                SecurityConfig(mechanism="gssapi", username="u", password="p"),  # type: ignore[arg-type]
                SecurityConfig(mechanism="PLAIN", username="u", password="p"),  # type: ignore[arg-type]
                SecurityConfig(ssl="yes"),  # type: ignore[arg-type]
                SecurityConfig(ssl=True, ssl_ca_file=1),  # type: ignore[arg-type]
                SecurityConfig(ssl=True, ssl_cert_file=b"cert.pem"),  # type: ignore[arg-type]
            ]
        ),
    ),
}

_WRONG_ACKS: Final = st.one_of(
    st.integers().filter(lambda n: n not in (0, 1)),
    st.sampled_from(["1", "0", "ALL", "none", "", None, True, False, 1.0, 0.0]),
)

WRONG_PRODUCER: Final[dict[str, st.SearchStrategy[Any]]] = {
    "idempotent": st.one_of(st.none(), clean_text, st.integers(), st.floats()),
    "acks": _WRONG_ACKS,
    "compression": st.sampled_from(["brotli", "GZIP", "", "None", None, 1, b"gzip"]),
    "linger": st.one_of(
        # NaN has its own test (test_a_nan_linger_is_an_invalid_config).
        st.floats(max_value=-1e-9, allow_nan=False),
        st.sampled_from([None, "5"]),
    ),
    "max_in_flight": st.one_of(st.integers(max_value=0), st.sampled_from([None, 1.5, "5", True])),
    "max_message_bytes": st.one_of(
        st.integers(max_value=0), st.sampled_from([None, 1.5, "1048576", True])
    ),
}

WRONG_CONSUMER: Final[dict[str, st.SearchStrategy[Any]]] = {
    "group_id": st.one_of(st.just(""), _not_str, st.binary(min_size=1, max_size=4)),
    "session_timeout": _wrong_seconds,
    "heartbeat_interval": _wrong_seconds,
    "auto_commit": st.one_of(st.none(), clean_text, st.integers(), st.floats()),
    "auto_commit_interval": _wrong_seconds,
    "max_batch_size": st.one_of(
        st.integers(max_value=0), st.sampled_from([None, 1.5, "500", True])
    ),
}


@st.composite
def with_wrong_fields(
    draw: st.DrawFn, valid: C, wrong: dict[str, st.SearchStrategy[Any]]
) -> tuple[C, tuple[str, ...]]:
    """``valid`` with a non-empty set of its fields (sometimes all) replaced by wrong values."""
    if draw(st.integers(0, 9)) == 0:
        fields = tuple(sorted(wrong))
    else:
        fields = tuple(sorted(draw(st.sets(st.sampled_from(sorted(wrong)), min_size=1))))
    changes = {name: draw(wrong[name]) for name in fields}
    return dataclasses.replace(valid, **changes), fields  # type: ignore[type-var]


def wrong_producer_configs(valid: ProducerConfig) -> st.SearchStrategy[tuple[Any, tuple[str, ...]]]:
    """Producer configs the contract rejects, including its one cross-field rule."""
    return st.one_of(
        with_wrong_fields(valid, WRONG_PRODUCER),
        st.sampled_from([ProducerConfig(idempotent=True, acks=1), ProducerConfig(acks=0)]).map(
            lambda config: (config, ("idempotent+acks",))
        ),
    )


def wrong_consumer_configs(valid: ConsumerConfig) -> st.SearchStrategy[tuple[Any, tuple[str, ...]]]:
    """Consumer configs the contract rejects, including heartbeat >= session timeout."""
    return st.one_of(
        with_wrong_fields(valid, WRONG_CONSUMER),
        st.floats(min_value=1.0, max_value=100.0).map(
            lambda extra: (
                dataclasses.replace(valid, heartbeat_interval=valid.session_timeout * extra),
                ("heartbeat_interval>=session_timeout",),
            )
        ),
    )


def wrong_streaming_configs(
    valid: StreamingConfig,
) -> st.SearchStrategy[tuple[Any, tuple[str, ...]]]:
    """Client configs the contract rejects."""
    return with_wrong_fields(valid, WRONG_STREAMING)
