"""SASL over the wire: PLAIN and SCRAM-SHA-256/512 logins against a broker that checks them.

The development broker cannot authenticate, so a SASL gateway in front of it does
(see ``_sasl_gateway``); the broker advertises the gateway, so every connection a
client makes, bootstrap or not, has to log in. Right credentials must give working
producers, consumers and admins; a wrong password must give
STREAMING_AUTHENTICATION_FAILED (not a connection failure or a timeout) within about
``connection_timeout``, and the password must show up nowhere a user can see.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any, Final

import pytest

from qi.base import Failure
from qi.base.streaming import (
    ErrorCode,
    SecurityConfig,
    StreamingConfig,
    StreamingMessage,
    TopicConfig,
    create_streaming_client,
)
from testkit import Collector, ok, unique

from ._sasl_gateway import SaslBroker
from ._scenarios import MARGIN, consumer_config, start_consumer, timed, until_seen
from ._support import REAL_BACKENDS, backend_params, bounded, check_error, producer_config_for

USERNAME: Final = "qi-sasl-user"
MECHANISMS: Final = ("plain", "scram-sha-256", "scram-sha-512")
CONNECTION_TIMEOUT: Final = 3.0
# Group joins are the slow part: one consumer per backend, each on a different SCRAM.
CONSUMER_CASES: Final = {("confluent", "scram-sha-512"), ("aiokafka", "scram-sha-256")}


class PasswordInLogs(AssertionError):
    """Finding: a password reached the captured logs or the process's output."""


class NotAnAuthenticationFailure(AssertionError):
    """Finding: a refused login was reported as something else, or too vaguely."""


# Known findings, as strict xfails limited to their own exception type: any other failure
# of the same test still fails, and a fixed backend turns the xfail into an error (remove
# the entry then). (backend, mechanism) -> (finding, what was observed).
KNOWN_FINDINGS: Final[dict[tuple[str, str], tuple[type[AssertionError], str]]] = {}


def _cases(findings: tuple[type[AssertionError], ...]) -> list[Any]:
    """Every real backend (skipped when its library is missing) with every mechanism.

    A known finding of one of the types in ``findings`` marks its case as a strict xfail.
    """
    cases = []
    for backend in backend_params(tuple(sorted(REAL_BACKENDS))):
        (name,) = backend.values
        for mechanism in MECHANISMS:
            marks = list(backend.marks)
            finding = KNOWN_FINDINGS.get((name, mechanism))
            if finding is not None and finding[0] in findings:
                marks.append(pytest.mark.xfail(raises=finding[0], strict=True, reason=finding[1]))
            case_id = f"{name}-{mechanism}"
            if NotAnAuthenticationFailure not in findings and (name, mechanism) in CONSUMER_CASES:
                case_id += "+consumer"
            cases.append(pytest.param(name, mechanism, id=case_id, marks=marks))
    return cases


def _check_no_leak(
    secret: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    output = capfd.readouterr()
    texts = {
        "log text": caplog.text,
        "log arguments": "\n".join(repr(record.args) for record in caplog.records),
        "native output": output.out + output.err,
    }
    for where, text in texts.items():
        if secret in text:
            line = next(line for line in text.splitlines() if secret in line)
            raise PasswordInLogs(f"the password leaked into the {where}: {line[:300]}")


@pytest.fixture(scope="module")
def password() -> str:
    """The one user's password: unique, so finding it anywhere is a leak."""
    return f"qi-right-password-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def sasl_broker(password: str) -> Iterator[SaslBroker]:
    """One broker for the module: logins are per connection, topics are unique per test."""
    with SaslBroker({USERNAME: password}) as cluster:
        yield cluster


def _config(broker: SaslBroker, mechanism: Any, secret: str | None) -> StreamingConfig:
    security = None
    if secret is not None:
        security = SecurityConfig(mechanism=mechanism, username=USERNAME, password=secret)
    return StreamingConfig(
        client_id=unique("sasl"),
        brokers=(broker.bootstrap,),
        connection_timeout=CONNECTION_TIMEOUT,
        request_timeout=5.0,
        security=security,
    )


def _capture_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: aiokafka's, kafka's, asyncio's ...
    for name in ("qi.base.streaming", "aiokafka", "kafka", "confluent_kafka"):
        caplog.set_level(logging.DEBUG, logger=name)


@pytest.mark.parametrize(("backend", "mechanism"), _cases((PasswordInLogs,)))
async def test_right_credentials_produce_consume_and_administer(
    backend: str,
    mechanism: str,
    password: str,
    sasl_broker: SaslBroker,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    _capture_everything(caplog)
    wire_name = mechanism.upper()
    logins_before = sasl_broker.gateway.logins.get(wire_name, 0)
    config = _config(sasl_broker, mechanism, password)
    bound = CONNECTION_TIMEOUT + MARGIN
    async with create_streaming_client(backend, config) as client:
        admin = ok(await bounded(client.get_admin(), bound, "get_admin"))
        topic = unique("sasl")
        ok(await admin.create_topics([TopicConfig(topic)]))
        assert topic in ok(await admin.list_topics())

        producer = ok(await bounded(client.get_producer(producer_config_for(backend)), bound, "p"))
        sent = ok(await producer.send(topic, StreamingMessage(b"logged in", key="k")))
        assert sent.topic == topic and sent.offset >= 0

        if (backend, mechanism) in CONSUMER_CASES:
            collector = Collector()
            group = consumer_config(session_timeout=6.0, heartbeat_interval=0.5)
            await start_consumer(client, topic, collector, group)
            await until_seen([collector], {b"logged in"}, 20.0, "the message read back")
            assert not collector.errors, collector.errors

    assert sasl_broker.gateway.logins.get(wire_name, 0) > logins_before, "nobody logged in"
    _check_no_leak(password, caplog, capfd)


@pytest.mark.parametrize(
    ("backend", "mechanism"), _cases((PasswordInLogs, NotAnAuthenticationFailure))
)
async def test_a_wrong_password_is_an_authentication_failure(
    backend: str,
    mechanism: str,
    sasl_broker: SaslBroker,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    _capture_everything(caplog)
    wrong = f"qi-wrong-password-{uuid.uuid4().hex}"
    wire_name = mechanism.upper()
    refusals_before = sasl_broker.gateway.refusals.get(wire_name, 0)
    config = _config(sasl_broker, mechanism, wrong)
    # One client per call, concurrently: each refused login may take connection_timeout.
    producing, administering = (create_streaming_client(backend, config) for _ in range(2))
    async with producing, administering:
        outcomes = await asyncio.gather(
            timed(producing.get_producer(producer_config_for(backend))),
            timed(administering.get_admin()),
        )
    problems = []
    for name, (result, seconds) in zip(("get_producer", "get_admin"), outcomes, strict=True):
        assert isinstance(result, Failure), f"{name} let a wrong password in: {result}"
        error = check_error(result.error, name)
        seen = f"{error.message}\n{error.context!r}\n{error!s}\n{result!r}"
        assert wrong not in seen, f"{name}: the password leaked into the error"
        if seconds > CONNECTION_TIMEOUT + MARGIN:
            problems.append(f"{name}: {error.code} only after {seconds:.1f}s")
        if error.code != ErrorCode.AUTHENTICATION_FAILED:
            problems.append(f"{name}: {error.code} after {seconds:.1f}s: {error.message}")
        elif "authentication failed" not in error.message.lower():
            problems.append(f"{name}: message does not say so: {error.message}")
    assert sasl_broker.gateway.refusals.get(wire_name, 0) > refusals_before, "nobody was refused"
    if problems:
        raise NotAnAuthenticationFailure("\n".join(problems))
    _check_no_leak(wrong, caplog, capfd)


@pytest.mark.parametrize("backend", backend_params(tuple(sorted(REAL_BACKENDS))))
async def test_the_gateway_lets_no_one_in_without_logging_in(
    backend: str, sasl_broker: SaslBroker
) -> None:
    """The harness's own check: without SASL nothing works, so the tests above mean something."""
    logins_before = sum(sasl_broker.gateway.logins.values())
    config = _config(sasl_broker, None, None)
    async with create_streaming_client(backend, config) as client:
        result, seconds = await timed(client.get_admin())
        assert isinstance(result, Failure), result
        assert seconds <= CONNECTION_TIMEOUT + MARGIN, f"get_admin took {seconds:.1f}s"
    assert sum(sasl_broker.gateway.logins.values()) == logins_before
