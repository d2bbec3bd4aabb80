"""The aiokafka backend: pure-Python producers, consumers and admins over aiokafka."""

from __future__ import annotations

import logging

import aiokafka  # noqa: F401  (imported first so a missing library is a clear ImportError)

from qi.base.streaming import StreamingConfig
from qi.base.streaming.backend import ConnectorBackend
from qi.base.streaming.backends.aiokafka._connector import AiokafkaBackend
from qi.base.streaming.backends.aiokafka._redaction import install_redaction

install_redaction()


def backend(config: StreamingConfig, logger: logging.Logger) -> ConnectorBackend:
    """The aiokafka backend for ``config`` (called by ``create_connector``)."""
    return AiokafkaBackend(config, logger)


__all__ = ["AiokafkaBackend", "backend"]
