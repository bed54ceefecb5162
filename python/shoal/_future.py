"""The Future: a handle on a task's result in the cluster."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable

from . import _serialize
from .errors import FutureCancelledError, rebuild, remote_traceback

if TYPE_CHECKING:
    from .client import Client


class Future:
    """A remotely running computation, as returned by ``Client.submit``.

    The cluster keeps the result as long as some Future points at its key;
    when the last one is garbage-collected the cluster forgets it.
    """

    __slots__ = ("key", "client", "_core", "__weakref__")

    #: dask's protocol for futures of third-party schedulers: dask refers to
    #: the future's key in graphs instead of embedding the object.
    __dask_future__ = True

    def __init__(self, key: str, client: Client | None = None, inform: bool = True):
        from .client import default_client

        client = client or default_client()
        self.key = key
        self.client = client
        self._core = client._core
        if inform:
            self._core.acquire(key)

    @classmethod
    def _adopt(cls, key: str, client: Client) -> Future:
        """Wrap a key whose reference was already counted by ``submit``."""
        f = cls.__new__(cls)
        f.key = key
        f.client = client
        f._core = client._core
        return f

    def __del__(self) -> None:
        try:
            self._core.release(self.key)
        except Exception:
            pass

    # ----- state -----------------------------------------------------------

    @property
    def status(self) -> str:
        """One of ``"pending"``, ``"finished"``, ``"error"``, ``"cancelled"``."""
        return self._core.status(self.key) or "lost"

    def done(self) -> bool:
        """Whether the computation is complete (finished, erred or cancelled)."""
        return self.status != "pending"

    def cancelled(self) -> bool:
        """Whether the future was cancelled."""
        return self.status == "cancelled"

    # ----- results ---------------------------------------------------------

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the result and return it; re-raise the task's exception.

        Raises ``TimeoutError`` if it is not done within ``timeout`` seconds.
        """
        out = self._core.gather([self.key], timeout)
        if out is None:
            raise TimeoutError(f"Future {self.key} not done within {timeout} s")
        kind, value = out[0]
        if kind == 0:
            return _serialize.loads(value)
        if kind == 2:
            raise FutureCancelledError(self.key)
        raise rebuild(value)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait and return the exception of a failed task, or None."""
        if not self._core.wait([self.key], timeout):
            raise TimeoutError(f"Future {self.key} not done within {timeout} s")
        err = self._core.error(self.key)
        return None if err is None else rebuild(err)

    def traceback(self, timeout: float | None = None) -> Any:
        """Wait and return the traceback object of a failed task, or None."""
        if not self._core.wait([self.key], timeout):
            raise TimeoutError(f"Future {self.key} not done within {timeout} s")
        err = self._core.error(self.key)
        return None if err is None else remote_traceback(err)

    @property
    def type(self) -> str | None:
        """The type name of the result, once finished."""
        info = self._core.result_info(self.key)
        return None if info is None else info[0]

    def cancel(self, **kwargs: Any) -> None:
        """Cancel the task if it has not run; ``result()`` then raises."""
        self.client.cancel([self], **kwargs)

    def release(self) -> None:
        """Forget this future now instead of at garbage collection."""
        core, self._core = self._core, _Released()
        core.release(self.key)

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        """Call ``fn(future)`` from a background thread once this future is done."""
        self.client._callbacks.add(self, fn)

    # ----- protocol --------------------------------------------------------

    def __reduce__(self) -> Any:
        _serialize.record_dependency(self)
        return (_serialize.resolve_dependency, (self.key,))

    def __repr__(self) -> str:
        status = self.status
        typ = self.type if status == "finished" else None
        if typ:
            return f"<Future: {status}, type: {typ}, key: {self.key}>"
        return f"<Future: {status}, key: {self.key}>"

    def _repr_html_(self) -> str:
        status = self.status
        colour = {"finished": "green", "error": "red", "cancelled": "gray"}.get(status, "orange")
        typ = f", <b>type:</b> {self.type}" if status == "finished" else ""
        return (
            f"<b>Future: {self.key}</b> <b>status:</b> "
            f'<span style="color: {colour}">{status}</span>{typ}'
        )


class _Released:
    """Stands in for the core after ``Future.release``."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("this future was released")

    def release(self, key: str) -> None:
        pass


class CallbackRunner:
    """Runs done-callbacks on one background thread, in completion order."""

    def __init__(self, core: Any):
        from ._engine import CompletionQueue

        self._core = core
        self._queue = CompletionQueue()
        self._pending: dict[str, list[tuple[Future, Callable[[Future], Any]]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, future: Future, fn: Callable[[Future], Any]) -> None:
        with self._lock:
            self._pending.setdefault(future.key, []).append((future, fn))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="shoal-callbacks", daemon=True
                )
                self._thread.start()
        self._core.watch([future.key], self._queue)

    def _run(self) -> None:
        while True:
            key = self._queue.pop(None)
            if self._closed:
                return
            with self._lock:
                entries = self._pending.pop(key, [])
            for fut, fn in entries:
                try:
                    fn(fut)
                except Exception:
                    import logging

                    logging.getLogger("shoal").exception("Error in a done-callback")

    def close(self) -> None:
        self._closed = True
        self._queue.push("")  # wake the thread so it sees the flag
