"""create_connector is total (a backend that fails to load is a Failure, never an exception),
and the way from a client to an endpoint checks a config once."""

from __future__ import annotations

from typing import Any, cast

import pytest

from qi.base import Failure
from qi.base.streaming import (
    ConsumerConfig,
    ProducerConfig,
    StreamingConfig,
    _client,
    _connector,
    _factory,
    _validation,
    create_connector,
    create_streaming_client,
)
from testkit import ok, unique


@pytest.mark.parametrize(
    "module",
    [
        "qi.base.streaming.backends.no_such_backend",  # an ImportError of the backend itself
        "qi.base.streaming.backend",  # imports, but has no backend(config, logger)
    ],
)
def test_a_backend_that_fails_to_load_is_a_failure(
    module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_factory._BACKENDS, "broken", (module, (), None))
    outcome = create_connector("broken", StreamingConfig("factory-test", ("localhost:9092",)))
    assert isinstance(outcome, Failure)
    assert outcome.error.code == "STREAMING_UNKNOWN_IMPLEMENTATION"
    assert outcome.error.context["implementation"] == "broken"
    assert "failed to load" in outcome.error.message


WRONG_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    (("memory",), {}),
    (("memory", StreamingConfig("factory-test", ("f:1",))), {"bogus": 1}),
    (("memory", StreamingConfig("factory-test", ("f:1",)), None, "extra"), {}),
]


@pytest.mark.parametrize(("args", "kwargs"), WRONG_CALLS)
def test_create_connector_called_wrongly_is_an_invalid_argument(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    outcome = cast(Any, create_connector)(*args, **kwargs)
    assert isinstance(outcome, Failure)
    assert outcome.error.code == "STREAMING_INVALID_ARGUMENT"
    assert outcome.error.context["operation"] == "create_connector"


@pytest.mark.parametrize(("args", "kwargs"), WRONG_CALLS)
async def test_create_streaming_client_called_wrongly_reports_it_on_first_use(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    # The contract: create_streaming_client never raises; problems surface on first use.
    async with cast(Any, create_streaming_client)(*args, **kwargs) as client:
        for outcome in (await client.get_producer(), await client.is_healthy()):
            assert isinstance(outcome, Failure)
            assert outcome.error.code == "STREAMING_INVALID_ARGUMENT"


@pytest.mark.parametrize("kind", ["producer", "consumer"])
async def test_a_client_validates_an_endpoint_config_once(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The client checks a config before its cache; the connector must not check it again.
    checks: list[object] = []
    counted = {"producer": "producer_config_problem", "consumer": "consumer_config_problem"}[kind]
    check = getattr(_validation, counted)

    def counting(config: object) -> str | None:
        checks.append(config)
        problem: str | None = check(config)
        return problem

    for module in (_client, _connector):
        monkeypatch.setattr(module, counted, counting)
    config = StreamingConfig("factory-test", ("localhost:9092",))
    async with create_streaming_client("memory", config) as client:
        if kind == "producer":
            ok(await client.get_producer(ProducerConfig()))
        else:
            ok(await client.get_consumer(ConsumerConfig(group_id=unique("once"))))
    assert len(checks) == 1
