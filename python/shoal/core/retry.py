"""Which errors a task retries: ``retry_on=`` of ``submit`` and ``map``.

The task's function is wrapped in :class:`RetryOn`, which runs on the worker
and turns an error that is not one of the retried types into
:class:`NotRetried`; the worker reports it as final, so the scheduler errs
the task at once instead of spending a retry on it. (How long a retry waits
is the scheduler's business: ``retry_delay=``.)
"""

from __future__ import annotations

from types import CoroutineType
from typing import Any, Callable


class NotRetried(Exception):
    """Carries an error the task's ``retry_on`` filter does not retry."""

    def __init__(self, error: BaseException):
        super().__init__(error)
        self.error = error


class RetryOn:
    """Calls ``fn``; errors that are not instances of ``types`` are final.

    Parameters
    ----------
    fn
        The task's function (``async def`` functions work too).
    types
        Exception classes worth retrying.

    """

    __slots__ = ("fn", "types")

    def __init__(self, fn: Callable[..., Any], types: tuple[type[BaseException], ...]):
        self.fn = fn
        self.types = types

    @property
    def __name__(self) -> str:
        """The wrapped function's name, so keys read as the user's."""
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn``; wrap errors not worth retrying in ``NotRetried``."""
        try:
            result = self.fn(*args, **kwargs)
        except self.types:
            raise
        except Exception as e:
            raise NotRetried(e) from None
        if type(result) is CoroutineType:
            return self._await(result)
        return result

    async def _await(self, coro: Any) -> Any:
        try:
            return await coro
        except self.types:
            raise
        except Exception as e:
            raise NotRetried(e) from None

    def __reduce__(self) -> Any:
        return (RetryOn, (self.fn, self.types))


def retry_filter(fn: Callable[..., Any], retry_on: Any) -> Callable[..., Any]:
    """``fn`` wrapped to retry only errors of ``retry_on`` (a class or a
    tuple of classes), or ``fn`` itself if ``retry_on`` is None.

    Raises
    ------
    TypeError
        If ``retry_on`` is not exception classes.

    """
    if retry_on is None:
        return fn
    types = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise TypeError(f"retry_on must be an exception class or a tuple of them, not {retry_on!r}")
    return RetryOn(fn, types)
