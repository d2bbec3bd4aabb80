"""The client fixtures without pytest-asyncio: each fails its test saying what to install."""

from __future__ import annotations

from typing import NoReturn

import pytest


def _needs_pytest_asyncio(fixture: str) -> NoReturn:
    pytest.fail(
        f"the {fixture} fixture needs pytest-asyncio: pip install 'qi-base[testing]'",
        pytrace=False,
    )


@pytest.fixture
def qi_memory_client() -> NoReturn:
    """Unavailable: pytest-asyncio is not installed."""
    _needs_pytest_asyncio("qi_memory_client")


@pytest.fixture
def qi_dev_client() -> NoReturn:
    """Unavailable: pytest-asyncio is not installed."""
    _needs_pytest_asyncio("qi_dev_client")


@pytest.fixture
def qi_client() -> NoReturn:
    """Unavailable: pytest-asyncio is not installed."""
    _needs_pytest_asyncio("qi_client")
