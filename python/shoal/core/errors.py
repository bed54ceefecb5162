"""Exceptions raised by shoal, and rebuilding of remote exceptions."""

from __future__ import annotations

import builtins
import pickle
from concurrent.futures import CancelledError
from typing import Any

from .. import _engine


class KilledWorker(Exception):
    """A task was running on every worker that died while it ran.

    Raised once the task took down more than ``allowed_failures`` (3)
    workers, as in Dask, so that a task that crashes its process cannot take
    down the whole cluster. ``cause`` says why the last worker went, when it
    knew (it restarted for using too much memory), else it is empty.
    """

    def __init__(self, task: str, last_worker: str, allowed_failures: int = 3, cause: str = ""):
        why = f", which restarted because {cause}" if cause else ""
        super().__init__(
            f"Attempted to run task {task!r} on {allowed_failures + 1} different workers, "
            f"but all those workers died while running it. The last worker was at "
            f"{last_worker}{why}."
        )
        self.task = task
        self.last_worker = last_worker
        self.allowed_failures = allowed_failures
        self.cause = cause

    def __reduce__(self) -> Any:
        return (type(self), (self.task, self.last_worker, self.allowed_failures, self.cause))


class FutureCancelledError(CancelledError):
    """The result of a cancelled future was asked for."""

    def __init__(self, key: str, reason: str = "cancelled"):
        super().__init__(f"{key} cancelled for reason: {reason}.")
        self.key = key
        self.reason = reason

    def __reduce__(self) -> Any:
        return (type(self), (self.key, self.reason))


#: A call needed a client that is closed (or closing); raised by the
#: engine too, so it is the engine's class.
ClosedClientError = _engine.ClosedClientError


class Reschedule(Exception):
    """Raise it in a task to have the scheduler place the task again
    (perhaps on another worker), as Dask's ``distributed.Reschedule``: not
    a failure, and its retries are left as they were.
    """


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised on a worker."""

    def __init__(self, tb: str):
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return "\n" + self.tb


def _traceback_object(tb: str) -> Any:
    if not tb:
        return None
    try:
        from tblib import Traceback

        return Traceback.from_string(tb).as_traceback()
    except Exception:
        return None


def rebuild(error: _engine.TaskError) -> BaseException:
    """Turn an engine :class:`shoal._engine.TaskError` into the exception to raise.

    The exception keeps its original type; its traceback is the remote one,
    so ``result()`` shows where on the worker the task failed.
    """
    if isinstance(error, _engine.TaskError.Killed):
        return KilledWorker(error.key, error.last_worker, max(error.attempts - 1, 0), error.cause)
    frames = error.exception
    exc: BaseException | None = None
    if frames:
        try:
            exc = pickle.loads(frames[0], buffers=frames[1:])
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = _by_name(error.type_name, error.message)
    tb_obj = _traceback_object(error.traceback)
    if tb_obj is not None:
        exc = exc.with_traceback(tb_obj)
    elif error.traceback:
        exc.__cause__ = RemoteTraceback(error.traceback)
    else:
        exc = exc.with_traceback(None)
    _remote_tracebacks[id(exc)] = (exc, exc.__traceback__)
    if len(_remote_tracebacks) > 1000:
        _remote_tracebacks.pop(next(iter(_remote_tracebacks)))
    return exc


# The remote part of the tracebacks of the latest rebuilt exceptions (by id,
# holding the exception so the id stays its own), for ``trimmed``.
_remote_tracebacks: dict[int, tuple[BaseException, Any]] = {}


def trimmed(exc: BaseException) -> BaseException:
    """A task's exception about to be raised again from a public call, with
    its traceback cut back to the task's own frames, so the user sees their
    code and the call they made (as in Dask), not shoal's frames between.
    Any other exception is returned as it is.
    """
    found = _remote_tracebacks.pop(id(exc), None)
    if found is None or found[0] is not exc:
        return exc
    return exc.with_traceback(found[1])


def _by_name(type_name: str, message: str) -> BaseException:
    """An exception of the built-in type called ``type_name``, if there is one."""
    if type_name == "CancelledError":
        return CancelledError(message)
    cls = getattr(builtins, type_name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        try:
            return cls(message)
        except Exception:
            pass
    return RuntimeError(f"{type_name}: {message}")


def remote_traceback(error: _engine.TaskError) -> Any:
    """The traceback object of a remote error (or None)."""
    if not isinstance(error, _engine.TaskError.Raised):
        return None
    return _traceback_object(error.traceback)
