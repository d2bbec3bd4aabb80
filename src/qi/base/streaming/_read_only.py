"""A read-only mapping that pickles and copies, for the values users keep.

``types.MappingProxyType`` is the obvious read-only mapping, but it cannot be pickled or
deep-copied, so a message or a config holding one could not cross a process boundary
(multiprocessing, a task queue) or go through ``copy.deepcopy``/``dataclasses.asdict``.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, Mapping, ValuesView
from typing import Any, TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


class ReadOnlyMapping(Mapping[_K, _V]):
    """A read-only view of a dict of its own; pickles and copies as one of a copy."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[_K, _V] | None = None) -> None:
        self._data: dict[_K, _V] = dict(data) if data else {}

    def __getitem__(self, key: _K) -> _V:
        return self._data[key]

    def __iter__(self) -> Iterator[_K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def get(self, key: _K, default: Any = None) -> Any:
        return self._data.get(key, default)

    # The dict's own views (read-only, and C-level: the Mapping mixin's would call
    # __iter__ and __getitem__ per entry, 2-4 times slower for ``{**headers}`` and
    # ``headers.items()``, which the send paths run per message).
    def keys(self) -> KeysView[_K]:
        return self._data.keys()

    def items(self) -> ItemsView[_K, _V]:
        return self._data.items()

    def values(self) -> ValuesView[_V]:
        return self._data.values()

    # What a mappingproxy (this mapping's predecessor) also offers, so code that merged or
    # copied headers and config entries keeps working: each gives a new dict.
    def copy(self) -> dict[_K, _V]:
        return dict(self._data)

    def __or__(self, other: object) -> dict[_K, _V]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**self._data, **other}

    def __ror__(self, other: object) -> dict[_K, _V]:
        if not isinstance(other, Mapping):
            return NotImplemented
        return {**other, **self._data}

    def __reversed__(self) -> Iterator[_K]:
        return reversed(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReadOnlyMapping):
            return self._data == other._data
        return self._data == other if isinstance(other, Mapping) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to a dict, so unhashable like one

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[type[ReadOnlyMapping[_K, _V]], tuple[dict[_K, _V]]]:
        return (type(self), (self._data,))
