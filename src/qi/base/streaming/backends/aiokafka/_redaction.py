"""Keeping SASL secrets out of aiokafka's own logs.

aiokafka logs every request it sends at DEBUG, and a SASL PLAIN
``SaslAuthenticateRequest`` carries the password in its bytes. The backend
adds this filter to aiokafka's connection logger once, at import, so the
request is logged by name only, whatever level the application enables.
"""

from __future__ import annotations

import logging
from typing import Final

_CONNECTION_LOGGER: Final = "aiokafka.conn"
_SECRET_REQUEST_PREFIX: Final = "SaslAuthenticateRequest"


def _carries_credentials(value: object) -> bool:
    return type(value).__name__.startswith(_SECRET_REQUEST_PREFIX)


class SaslRequestRedactor(logging.Filter):
    """Replaces SASL authentication requests in log arguments with their name."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(_carries_credentials(arg) for arg in args):
            record.args = tuple(
                f"<{type(arg).__name__}: redacted>" if _carries_credentials(arg) else arg
                for arg in args
            )
        return True


def install_redaction() -> None:
    """Add the redactor to aiokafka's connection logger, once per process."""
    logger = logging.getLogger(_CONNECTION_LOGGER)
    if not any(isinstance(existing, SaslRequestRedactor) for existing in logger.filters):
        logger.addFilter(SaslRequestRedactor())
