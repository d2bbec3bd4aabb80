"""The aiokafka backend: pure-Python producers, consumers and admins over aiokafka."""

from __future__ import annotations

import logging

import aiokafka  # noqa: F401  (imported first so a missing library is a clear ImportError)

from qi.base.streaming._config import StreamingConfig
from qi.base.streaming._connector import StreamingConnector
from qi.base.streaming.backends.aiokafka._connector import AiokafkaConnector
from qi.base.streaming.backends.aiokafka._redaction import install_redaction

install_redaction()


def connector(config: StreamingConfig, logger: logging.Logger | None) -> StreamingConnector:
    """The aiokafka connector for ``config``."""
    return AiokafkaConnector(config, logger)


__all__ = ["AiokafkaConnector", "connector"]
