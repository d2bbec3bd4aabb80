"""qi-base: the Result core (``Result``, ``QiError``) of the qi-base Kafka transport.

Every public qi-base operation returns ``Result[T, QiError]`` instead of raising;
the streaming API lives in ``qi.base.streaming``.
"""

from ._error import (
    ErrorCategory,
    QiError,
    RetryStrategy,
    UnwrapError,
    create_error,
    from_exception,
    from_string,
)
from ._result import (
    Failure,
    Result,
    Success,
    failure,
    flat_map,
    flat_map_async,
    from_async_try_catch,
    from_try_catch,
    is_failure,
    is_success,
    map,
    map_async,
    map_error,
    match,
    sequence,
    success,
    unwrap_or,
)

__all__ = [
    "ErrorCategory",
    "Failure",
    "QiError",
    "Result",
    "RetryStrategy",
    "Success",
    "UnwrapError",
    "create_error",
    "failure",
    "flat_map",
    "flat_map_async",
    "from_async_try_catch",
    "from_exception",
    "from_string",
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
