"""The private aiokafka names of ``_private``: each still there in the shape the backend
expects, none spelled anywhere else in the backend, all listed in docs/backends.md.

A failure here after an aiokafka upgrade names what moved; the behaviour the
replacements rely on is checked by test_aiokafka_hooks.py.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from qi.base.streaming import ConsumerConfig, StreamingConfig
from qi.base.streaming.backends.aiokafka import _private
from qi.base.streaming.backends.aiokafka._private import PRIVATE_NAMES, PrivateName
from qi.base.streaming.backends.aiokafka._settings import consumer_settings

_BACKEND = Path(_private.__file__).parent
_BACKENDS_PAGE = Path(__file__).parents[2] / "docs" / "backends.md"


def _label(entry: PrivateName) -> str:
    return f"{entry.owner.__name__}.{entry.name}"


def _sets_attribute(owner: type, name: str) -> bool:
    """Whether ``owner`` or an aiokafka class it inherits from assigns ``self.name``."""
    assignment = re.compile(rf"\bself\.{re.escape(name)}\s*(:[^=\n]*)?=[^=]")
    return any(
        assignment.search(inspect.getsource(cls))
        for cls in owner.__mro__
        if cls.__module__.startswith("aiokafka")
    )


@pytest.mark.parametrize("entry", PRIVATE_NAMES, ids=_label)
def test_each_private_name_still_has_the_expected_shape(entry: PrivateName) -> None:
    if entry.parameters is None:
        assert _sets_attribute(entry.owner, entry.name), f"{_label(entry)} is no longer set"
    else:
        method = getattr(entry.owner, entry.name, None)
        assert callable(method), f"{_label(entry)} is gone"
        assert tuple(inspect.signature(method).parameters) == entry.parameters


def test_the_names_are_listed_once() -> None:
    labels = [_label(entry) for entry in PRIVATE_NAMES]
    assert len(labels) == len(set(labels))


def test_no_other_module_of_the_backend_spells_a_private_name() -> None:
    # Reading one's own inherited attribute (a handler subclass's self._sender) is allowed,
    # and so is a comment naming the method a replacement was forked from.
    names = sorted({entry.name for entry in PRIVATE_NAMES})
    spelled = re.compile(rf"(?<!\bself)\.({'|'.join(names)})\b|[\"']({'|'.join(names)})[\"']")
    found = [
        f"{module.name}:{number}: {line.strip()}"
        for module in sorted(_BACKEND.glob("*.py"))
        if module.name != "_private.py"
        for number, line in enumerate(module.read_text().splitlines(), 1)
        if spelled.search(line.split("#", 1)[0])
    ]
    assert found == []


def test_the_backends_page_lists_every_private_name() -> None:
    page = _BACKENDS_PAGE.read_text()
    assert [_label(entry) for entry in PRIVATE_NAMES if _label(entry) not in page] == []


def test_consumers_are_never_static_members() -> None:
    # _group's leave-group replacement leaves whenever the member has an id, which a static
    # member (group.instance.id) must not: the backend never asks aiokafka for one.
    config = StreamingConfig(brokers=("localhost:9092",), client_id="guard")
    for from_beginning in (True, False):
        settings = consumer_settings(config, ConsumerConfig("group"), from_beginning=from_beginning)
        assert settings.get("group_instance_id") is None
