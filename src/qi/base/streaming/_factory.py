"""Choosing a backend by name.

Backends are imported only when asked for, so ``pip install qi-base`` works
without confluent-kafka or aiokafka; a backend whose library is missing is a
clear Failure naming the extra to install, not an ImportError.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import Final, Literal

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._boundary import answers_wrong_calls
from qi.base.streaming._codes import ErrorCode, streaming_error
from qi.base.streaming._config import StreamingConfig
from qi.base.streaming._connector import StreamingConnector
from qi.base.streaming._validation import streaming_config_problem
from qi.base.streaming.backend import ConnectorBackend

_LIBRARY_LOGGER: Final = logging.getLogger("qi.base.streaming")

Implementation = Literal["confluent", "aiokafka", "memory"]

# name -> (module defining `backend(config, logger)`, the third-party modules it needs, extra).
# The one place the core names its backends, by module path only: none is imported until asked.
_BACKENDS: Final[dict[str, tuple[str, tuple[str, ...], str | None]]] = {
    "confluent": ("qi.base.streaming.backends.confluent", ("confluent_kafka",), "confluent"),
    "aiokafka": ("qi.base.streaming.backends.aiokafka", ("aiokafka",), "aiokafka"),
    "memory": ("qi.base.streaming.backends.memory", (), None),
}

IMPLEMENTATIONS: Final[tuple[str, ...]] = tuple(_BACKENDS)
"""Names ``create_connector`` knows."""


def _called_wrongly(exc: TypeError) -> Failure[QiError]:
    return Failure(
        streaming_error(
            ErrorCode.INVALID_ARGUMENT,
            f"create_connector() was called wrongly: {exc}",
            operation="create_connector",
            implementation="unknown",
        )
    )


@answers_wrong_calls(_called_wrongly)
def create_connector(
    implementation: Implementation | str,
    config: StreamingConfig,
    logger: logging.Logger | None = None,
) -> Result[StreamingConnector, QiError]:
    """Build the named backend's connector for ``config``.

    Failures: STREAMING_UNKNOWN_IMPLEMENTATION (unknown name, or its library is
    not installed), STREAMING_INVALID_CONFIG, STREAMING_INVALID_ARGUMENT (called with
    arguments that do not fit).
    """
    shown = implementation if isinstance(implementation, str) else repr(implementation)
    known = _BACKENDS.get(implementation) if isinstance(implementation, str) else None
    if known is None:
        return Failure(
            streaming_error(
                ErrorCode.UNKNOWN_IMPLEMENTATION,
                f"unknown implementation {shown[:100]!r}: choose one of {', '.join(_BACKENDS)}",
                operation="create_connector",
                implementation=shown[:100],
                available=IMPLEMENTATIONS,
            )
        )
    problem = streaming_config_problem(config)
    if problem is not None:
        return Failure(
            streaming_error(
                ErrorCode.INVALID_CONFIG,
                problem,
                operation="create_connector",
                implementation=shown,
            )
        )
    module_name, libraries, extra = known
    logger = logger if logger is not None else _LIBRARY_LOGGER
    try:
        module = importlib.import_module(module_name)
        backend: ConnectorBackend = module.backend(config, logger)
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] not in libraries:
            return Failure(_failed_to_load(shown, exc, logger))
        return Failure(
            streaming_error(
                ErrorCode.UNKNOWN_IMPLEMENTATION,
                f"the {shown} backend needs {exc.name}: pip install 'qi-base[{extra}]'",
                operation="create_connector",
                implementation=shown,
                missing_dependency=exc.name,
            )
        )
    except Exception as exc:
        return Failure(_failed_to_load(shown, exc, logger))
    return Success(StreamingConnector(config, backend, logger))


def _failed_to_load(shown: str, exc: Exception, logger: logging.Logger) -> QiError:
    """A backend whose installation is broken: nothing public may raise, not even then."""
    logger.debug("creating the %s connector failed", shown, exc_info=True)
    return streaming_error(
        ErrorCode.UNKNOWN_IMPLEMENTATION,
        f"the {shown!r} backend failed to load: {exc}",
        operation="create_connector",
        implementation=shown[:100],
    )


def available_implementations() -> tuple[str, ...]:
    """The backends whose libraries are installed, fastest first."""
    found: list[str] = []
    for name, (_, libraries, _) in _BACKENDS.items():
        if all(importlib.util.find_spec(library) is not None for library in libraries):
            found.append(name)
    return tuple(found)
