"""Result: a value that is either a ``Success`` or a ``Failure``.

::

    Result[T, E] = Success[T] | Failure[E]

    Success(value)   .tag == "success"   .value
    Failure(error)   .tag == "failure"   .error

Both are small frozen generic classes joined by a type alias, so structural
pattern matching (``case Success(value=v)``) and mypy narrowing both work.
mypy narrows a ``Result`` on ``isinstance``, on ``match``, on ``r.tag ==
"success"`` and on the module functions ``is_success(r)`` / ``is_failure(r)``;
it does not narrow on the methods ``r.is_success()`` (python/mypy#13530).

The module functions take the Result last, as in @qi/base. ``map`` and
``match`` shadow the builtins inside this module on purpose; nothing here
needs the builtins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Generic,
    Literal,
    NoReturn,
    TypeAlias,
    TypeVar,
    overload,
)

from ._error import QiError, UnwrapError, from_exception, from_string

if TYPE_CHECKING:
    # Only in annotations (never evaluated at runtime), so no runtime dependency.
    from typing_extensions import TypeIs

__all__ = [
    "Failure",
    "Result",
    "Success",
    "failure",
    "flat_map",
    "flat_map_async",
    "from_async_try_catch",
    "from_try_catch",
    "is_failure",
    "is_success",
    "map",
    "map_async",
    "map_error",
    "match",
    "sequence",
    "success",
    "unwrap_or",
]

T = TypeVar("T")
E = TypeVar("E")
U = TypeVar("U")
F = TypeVar("F")
# Covariant so that, for example, a Success[bool] is accepted where a
# Result[int, QiError] is expected; safe because both classes are frozen.
T_co = TypeVar("T_co", covariant=True)
E_co = TypeVar("E_co", covariant=True)


@dataclass(frozen=True, slots=True, repr=False)
class Success(Generic[T_co]):
    """The result of an operation that succeeded, holding its value."""

    value: T_co
    """The value the operation produced."""
    tag: ClassVar[Literal["success"]] = "success"

    def __repr__(self) -> str:
        return f"Success({self.value!r})"

    def is_success(self) -> Literal[True]:
        """Return True: this result is a Success."""
        return True

    def is_failure(self) -> Literal[False]:
        """Return False: this result is not a Failure."""
        return False

    def map(self, f: Callable[[T_co], U]) -> Success[U]:
        """Return a Success holding ``f(value)``."""
        return Success(f(self.value))

    def map_error(self, f: Callable[[Any], object]) -> Success[T_co]:
        """Return this Success unchanged; `f` is not called."""
        return self

    def flat_map(self, f: Callable[[T_co], Result[U, F]]) -> Result[U, F]:
        """Return ``f(value)``, the Result of the next step."""
        return f(self.value)

    def unwrap(self) -> T_co:
        """Return the value."""
        return self.value

    def unwrap_or(self, default: object) -> T_co:
        """Return the value; `default` is not used."""
        return self.value

    def match(self, on_success: Callable[[T_co], U], on_failure: Callable[[Any], object]) -> U:
        """Return ``on_success(value)``."""
        return on_success(self.value)

    def inspect(self, f: Callable[[T_co], object]) -> Success[T_co]:
        """Call ``f(value)`` for its side effect and return this Success."""
        f(self.value)
        return self

    def inspect_error(self, f: Callable[[Any], object]) -> Success[T_co]:
        """Return this Success unchanged; `f` is not called."""
        return self


@dataclass(frozen=True, slots=True, repr=False)
class Failure(Generic[E_co]):
    """The result of an operation that failed, holding its error (a QiError in qi-base)."""

    error: E_co
    """Why the operation failed."""
    tag: ClassVar[Literal["failure"]] = "failure"

    def __repr__(self) -> str:
        return f"Failure({self.error!r})"

    def is_success(self) -> Literal[False]:
        """Return False: this result is not a Success."""
        return False

    def is_failure(self) -> Literal[True]:
        """Return True: this result is a Failure."""
        return True

    def map(self, f: Callable[[Any], object]) -> Failure[E_co]:
        """Return this Failure unchanged; `f` is not called."""
        return self

    def map_error(self, f: Callable[[E_co], F]) -> Failure[F]:
        """Return a Failure holding ``f(error)``."""
        return Failure(f(self.error))

    def flat_map(self, f: Callable[[Any], object]) -> Failure[E_co]:
        """Return this Failure unchanged; `f` is not called."""
        return self

    def unwrap(self) -> NoReturn:
        """Raise UnwrapError carrying the error (the one deliberate raise of the Result core)."""
        if isinstance(self.error, QiError):
            raise UnwrapError(self.error)
        # UnwrapError always carries a QiError; a foreign error is kept in its context.
        raise UnwrapError(from_string(str(self.error)).with_context(error=self.error))

    def unwrap_or(self, default: U) -> U:
        """Return `default`."""
        return default

    def match(self, on_success: Callable[[Any], object], on_failure: Callable[[E_co], U]) -> U:
        """Return ``on_failure(error)``."""
        return on_failure(self.error)

    def inspect(self, f: Callable[[Any], object]) -> Failure[E_co]:
        """Return this Failure unchanged; `f` is not called."""
        return self

    def inspect_error(self, f: Callable[[E_co], object]) -> Failure[E_co]:
        """Call ``f(error)`` for its side effect and return this Failure."""
        f(self.error)
        return self


Result: TypeAlias = Success[T] | Failure[E]
"""Either a Success[T] or a Failure[E]; qi-base always uses ``Result[T, QiError]``."""


def success(value: T) -> Success[T]:
    """Wrap `value` in a Success."""
    return Success(value)


def failure(error: E) -> Failure[E]:
    """Wrap `error` in a Failure."""
    return Failure(error)


def is_success(result: Result[T, E]) -> TypeIs[Success[T]]:
    """Tell whether `result` is a Success, narrowing its type for mypy."""
    return isinstance(result, Success)


def is_failure(result: Result[T, E]) -> TypeIs[Failure[E]]:
    """Tell whether `result` is a Failure, narrowing its type for mypy."""
    return isinstance(result, Failure)


def map(f: Callable[[T], U], result: Result[T, E]) -> Result[U, E]:
    """Apply `f` to the value of a Success; pass a Failure through."""
    return result.map(f)


def map_error(f: Callable[[E], F], result: Result[T, E]) -> Result[T, F]:
    """Apply `f` to the error of a Failure; pass a Success through."""
    return result.map_error(f)


def flat_map(f: Callable[[T], Result[U, F]], result: Result[T, E]) -> Result[U, E | F]:
    """Chain `f`, which returns a Result, onto a Success; pass a Failure through."""
    return result.flat_map(f)


def match(on_success: Callable[[T], U], on_failure: Callable[[E], U], result: Result[T, E]) -> U:
    """Return ``on_success(value)`` for a Success or ``on_failure(error)`` for a Failure."""
    if isinstance(result, Success):
        return on_success(result.value)
    return on_failure(result.error)


def unwrap_or(default: U, result: Result[T, E]) -> T | U:
    """Return the value of a Success, or `default` for a Failure."""
    return result.unwrap_or(default)


@overload
def from_try_catch(fn: Callable[[], T], on_error: None = None) -> Result[T, QiError]: ...
@overload
def from_try_catch(fn: Callable[[], T], on_error: Callable[[Exception], E]) -> Result[T, E]: ...
def from_try_catch(
    fn: Callable[[], T], on_error: Callable[[Exception], Any] | None = None
) -> Result[T, Any]:
    """Call `fn` and return its value as a Success, or the exception it raised as a Failure.

    The exception becomes ``on_error(exc)``, or ``from_exception(exc)`` without `on_error`.
    Only ``Exception`` is caught: cancellation and interrupts propagate.
    """
    try:
        return Success(fn())
    except Exception as exc:
        return Failure(from_exception(exc) if on_error is None else on_error(exc))


@overload
async def from_async_try_catch(
    fn: Callable[[], Awaitable[T]], on_error: None = None
) -> Result[T, QiError]: ...
@overload
async def from_async_try_catch(
    fn: Callable[[], Awaitable[T]], on_error: Callable[[Exception], E]
) -> Result[T, E]: ...
async def from_async_try_catch(
    fn: Callable[[], Awaitable[T]], on_error: Callable[[Exception], Any] | None = None
) -> Result[T, Any]:
    """Await ``fn()`` and return its value as a Success, or the exception it raised as a Failure.

    The exception becomes ``on_error(exc)``, or ``from_exception(exc)`` without `on_error`.
    Only ``Exception`` is caught: ``asyncio.CancelledError`` propagates.
    """
    try:
        return Success(await fn())
    except Exception as exc:
        return Failure(from_exception(exc) if on_error is None else on_error(exc))


async def map_async(f: Callable[[T], Awaitable[U]], result: Result[T, E]) -> Result[U, E]:
    """Await `f` on the value of a Success; pass a Failure through without calling `f`."""
    if isinstance(result, Success):
        return Success(await f(result.value))
    return result


async def flat_map_async(
    f: Callable[[T], Awaitable[Result[U, F]]], result: Result[T, E]
) -> Result[U, E | F]:
    """Await `f`, which returns a Result, on a Success; pass a Failure through."""
    if isinstance(result, Success):
        return await f(result.value)
    return result


def sequence(results: Iterable[Result[T, E]]) -> Result[list[T], E]:
    """Return the first Failure in `results` (reading no further), else a Success of all values."""
    values: list[T] = []
    for result in results:
        if isinstance(result, Failure):
            return result
        values.append(result.value)
    return Success(values)
