"""A fourth backend, written against ``qi.base.streaming.backend`` alone, for tests.

It proves the backend interface is enough to write a backend: every class here
implements one of the interface's classes, and the only thing it knows of
another backend is the memory backend's public ``backend(config, logger)``,
whose objects it drives through the same interface, as a proxy. Its name is
``fourth``: every error it lets out says so. The contract suite runs on it like
on the others (``QI_TEST_BACKENDS=fourth``; tests/contract/conftest.py registers
it with the factory).
"""

from __future__ import annotations

import logging

from qi.base.streaming import StreamingConfig
from qi.base.streaming.backend import ConnectorBackend

from ._backend import IMPLEMENTATION, FourthBackend

__all__ = ["IMPLEMENTATION", "FourthBackend", "backend"]


def backend(config: StreamingConfig, logger: logging.Logger) -> ConnectorBackend:
    """The fourth backend for ``config`` (what ``create_connector`` calls)."""
    return FourthBackend(config, logger)
