"""create_connector is total: a backend that fails to load is a Failure, never an exception."""

from __future__ import annotations

import pytest

from qi.base import Failure
from qi.base.streaming import StreamingConfig, _factory, create_connector


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
