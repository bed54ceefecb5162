"""Exceptions raised by shoal, and rebuilding of remote exceptions."""

from __future__ import annotations

import builtins
import pickle
from concurrent.futures import CancelledError
from typing import Any


class KilledWorker(Exception):
    """A task was running on every worker that died while it ran.

    Raised after the task took down ``allowed_failures`` (3) workers, so that
    a task that crashes its process cannot take down the whole cluster.
    """

    def __init__(self, task: str, last_worker: str, allowed_failures: int = 3):
        super().__init__(
            f"Attempted to run task {task!r} on {allowed_failures} different workers, "
            f"but all those workers died while running it. The last worker was at "
            f"{last_worker}."
        )
        self.task = task
        self.last_worker = last_worker
        self.allowed_failures = allowed_failures

    def __reduce__(self) -> Any:
        return (type(self), (self.task, self.last_worker, self.allowed_failures))


class FutureCancelledError(CancelledError):
    """The result of a cancelled future was asked for."""

    def __init__(self, key: str, reason: str = "cancelled"):
        super().__init__(f"{key} cancelled for reason: {reason}.")
        self.key = key
        self.reason = reason

    def __reduce__(self) -> Any:
        return (type(self), (self.key, self.reason))


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


def rebuild(error: tuple) -> BaseException:
    """Turn an engine error tuple into the exception to raise.

    The exception keeps its original type; its traceback is the remote one,
    so ``result()`` shows where on the worker the task failed.
    """
    if error[0] == "killed":
        _, key, last_worker, attempts = error
        return KilledWorker(key, last_worker, attempts)
    _, frames, type_name, message, tb = error
    exc: BaseException | None = None
    if frames:
        try:
            exc = pickle.loads(frames[0], buffers=frames[1:])
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        if type_name == "CancelledError":
            exc = CancelledError(message)
        else:
            cls = getattr(builtins, type_name, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                try:
                    exc = cls(message)
                except Exception:
                    exc = None
            if exc is None:
                exc = RuntimeError(f"{type_name}: {message}")
    tb_obj = _traceback_object(tb)
    if tb_obj is not None:
        exc = exc.with_traceback(tb_obj)
    elif tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc


def remote_traceback(error: tuple) -> Any:
    """The traceback object of a remote error (or None)."""
    if error[0] != "raised":
        return None
    return _traceback_object(error[4])
