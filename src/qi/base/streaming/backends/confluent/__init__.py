"""The ``confluent`` backend: qi-base streaming over confluent-kafka (librdkafka).

Imported only by ``create_connector("confluent", ...)``; the import of
``confluent_kafka`` comes first so that a missing library is an ImportError
naming it, which the factory reports as "install qi-base[confluent]".
"""

from __future__ import annotations

import logging

import confluent_kafka  # noqa: F401  (first: the factory reads ImportError.name)

from qi.base.streaming import StreamingConfig
from qi.base.streaming.backend import ConnectorBackend
from qi.base.streaming.backends.confluent._connector import ConfluentBackend

__all__ = ["ConfluentBackend", "backend"]


def backend(config: StreamingConfig, logger: logging.Logger) -> ConnectorBackend:
    """The confluent backend for ``config`` (called by ``create_connector``)."""
    return ConfluentBackend(config, logger)
