"""The ``confluent`` backend: qi-base streaming over confluent-kafka (librdkafka).

Imported only by ``create_connector("confluent", ...)``; the import of
``confluent_kafka`` comes first so that a missing library is an ImportError
naming it, which the factory reports as "install qi-base[confluent]".
"""

from __future__ import annotations

import logging

import confluent_kafka  # noqa: F401  (first: the factory reads ImportError.name)

from qi.base.streaming._config import StreamingConfig
from qi.base.streaming._connector import StreamingConnector
from qi.base.streaming.backends.confluent._connector import ConfluentConnector

__all__ = ["ConfluentConnector", "connector"]


def connector(config: StreamingConfig, logger: logging.Logger | None = None) -> StreamingConnector:
    """The confluent connector for ``config``."""
    return ConfluentConnector(config, logger)
