"""The Future: a handle on a task's result in the cluster."""

from __future__ import annotations

import abc
import html
from collections.abc import Generator
from typing import Any, Callable

from .core import aio, context, keys, serialize
from .core.errors import rebuild, remote_traceback, trimmed
from .core.session import Session
from .core.times import parse_timedelta


class Future:
    """A remotely running computation, as returned by ``Client.submit``.

    The cluster keeps the result as long as some Future points at its key;
    when the last one is garbage-collected the cluster forgets it.

    Parameters
    ----------
    key
        The key of a task the client holds a future for.
    client
        The client; the default client if None.
    inform
        Count this object as a new reference to the key (leave True).

    Examples
    --------
    >>> future = client.submit(inc, 1)  # doctest: +SKIP
    >>> future.result()  # doctest: +SKIP
    2

    """

    __slots__ = ("_key", "client", "_session", "_known_type", "__weakref__")

    #: dask's protocol for futures of third-party schedulers: dask refers to
    #: the future's key in graphs instead of embedding the object.
    __dask_future__ = True
    _is_future = True

    def __init__(self, key: str, client: Any = None, inform: bool = True):
        client = context.default_client(client)
        self._key = key
        self.client = client
        self._session: Session = client._session
        if inform:
            self._session.add_ref(key)

    @classmethod
    def _adopt(cls, key: str, client: Any) -> Future:
        """Wrap a key whose reference was already counted by a submission."""
        f = cls.__new__(cls)
        f._key = key
        f.client = client
        f._session = client._session
        f._known_type = None
        return f

    def __del__(self) -> None:
        try:
            self._session.drop_ref(self._key)
        except Exception:
            pass

    @property
    def key(self) -> Any:
        """The task's key, as Dask names it: a string, or a tuple for a
        task of a dask collection (``("x-abc", 0)``) or one submitted with
        ``key=("x", 1)``.
        """
        return keys.dask_key(self._key)

    # ----- state -----------------------------------------------------------

    @property
    def status(self) -> str:
        """One of ``"pending"``, ``"finished"``, ``"error"``, ``"cancelled"``."""
        return self._session.status(self._key) or "lost"

    def done(self) -> bool:
        """Whether the computation is complete (finished, erred or cancelled)."""
        return self.status != "pending"

    def cancelled(self) -> bool:
        """Whether the future was cancelled."""
        return self.status == "cancelled"

    # ----- results ---------------------------------------------------------

    def result(self, timeout: Any = None) -> Any:
        """Wait for the result and return it; re-raise the task's exception.

        Parameters
        ----------
        timeout
            Seconds (or a string such as ``"200 ms"``) to wait; forever if
            None. Inside a task the wait leaves the worker's thread pool.

        Returns
        -------
        The task's return value (a coroutine to await, with an asynchronous
        client).

        Raises
        ------
        TimeoutError
            If it is not done within ``timeout``.

        """
        if self.client.asynchronous:
            return self._aresult(parse_timedelta(timeout))
        try:
            return self._session.result(self._key, parse_timedelta(timeout))
        except Exception as e:
            raise trimmed(e)  # noqa: B904 (the task's own exception, its traceback cut)

    async def _aresult(self, timeout: float | None = None) -> Any:
        await self._adone(timeout)
        try:
            return await aio.offload(self._session.result, self._key, 0.0)
        except Exception as e:
            raise trimmed(e)  # noqa: B904

    async def _adone(self, timeout: float | None) -> None:
        import asyncio  # loaded already: an event loop runs this

        try:
            await aio.keys_done([(self._session, self._key)], timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"Future {self._key} not done within {timeout} s") from None

    def __await__(self) -> Generator[Any, None, Any]:
        """``await future`` waits for the result without blocking the event
        loop, whatever the client.
        """
        return self._aresult().__await__()

    def _wait(self, timeout: Any) -> None:
        timeout = parse_timedelta(timeout)
        if self._session.wait([self._key], 0.0):
            return
        with context.blocking():
            done = self._session.wait([self._key], timeout)
        if not done:
            raise TimeoutError(f"Future {self._key} not done within {timeout} s")

    def exception(self, timeout: Any = None) -> BaseException | None:
        """Wait and return the exception of a failed task, or None (a
        coroutine to await, with an asynchronous client).
        """
        if self.client.asynchronous:
            return self._after(timeout, self.exception)  # type: ignore[return-value]
        self._wait(timeout)
        err = self._session.error(self._key)
        return None if err is None else rebuild(err)

    def traceback(self, timeout: Any = None) -> Any:
        """Wait and return the traceback object of a failed task, or None (a
        coroutine to await, with an asynchronous client).
        """
        if self.client.asynchronous:
            return self._after(timeout, self.traceback)
        self._wait(timeout)
        err = self._session.error(self._key)
        return None if err is None else remote_traceback(err)

    async def _after(self, timeout: Any, then: Callable[[], Any]) -> Any:
        await self._adone(parse_timedelta(timeout))
        return await aio.offload(then)

    @property
    def type(self) -> type | None:
        """The class of the result, once finished (None before, or if it
        cannot be imported here).
        """
        known = getattr(self, "_known_type", None)  # scattered: known here
        if known is not None:
            return known
        name = self._type_name()
        return None if name is None else serialize.type_named(name)

    def _type_name(self) -> str | None:
        info = self._session.result_info(self._key)
        return None if info is None or not info[0] else info[0]

    def __dask_tokenize__(self) -> Any:
        # one token per Future object, as Dask's (two futures of one key
        # are two objects, released on their own)
        return (type(self).__name__, self._key, id(self))

    def cancel(self, **kwargs: Any) -> Any:
        """Cancel the task if it has not run; ``result()`` then raises (a
        coroutine to await, with an asynchronous client).
        """
        return self.client.cancel([self], **kwargs)

    def retry(self, **kwargs: Any) -> Any:
        """Run the task again if it failed (with the failed tasks it depends
        on); see :meth:`Client.retry`.
        """
        return self.client.retry([self], **kwargs)

    def release(self) -> None:
        """Forget this future now instead of at garbage collection."""
        session, self._session = self._session, _Released()  # type: ignore[assignment]
        session.drop_ref(self._key)

    def add_done_callback(self, fn: Callable[[Future], Any]) -> None:
        """Call ``fn(future)`` from a background thread once this future is done."""
        self._session.add_done_callback(self._key, lambda: fn(self))

    # ----- protocol --------------------------------------------------------

    def __reduce__(self) -> Any:
        return serialize.reduce_dependency(self, self._key)

    def __repr__(self) -> str:
        status = self.status
        typ = self._type_name() if status == "finished" else None
        if typ:
            return f"<Future: {status}, type: {typ}, key: {self.key}>"
        return f"<Future: {status}, key: {self.key}>"

    def _repr_html_(self) -> str:
        status = self.status
        colour = {"finished": "green", "error": "red", "cancelled": "gray"}.get(status, "orange")
        name = self._type_name() if status == "finished" else None
        typ = f", <b>type:</b> {html.escape(name)}" if name else ""
        return (
            f"<b>Future: {html.escape(str(self.key), quote=False)}</b> <b>status:</b> "
            f'<span style="color: {colour}">{status}</span>{typ}'
        )


def _unpickled_future(key: str, client: Any) -> Future:
    """A future found while unpickling a result or a held value."""
    return Future(key, client)


serialize.set_future_factory(_unpickled_future)
serialize.register_input_type(Future)


class _ReleasedEngine:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("this future was released")

    def drop_ref(self, key: str) -> None:
        pass


class _Released:
    """Stands in for the session after ``Future.release``."""

    engine = _ReleasedEngine()

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("this future was released")


class BaseActorFuture(abc.ABC):
    """What an actor's method call returns (Dask's name): something with
    ``result()``, ``done()``, ``exception()`` that can be awaited.
    """

    @abc.abstractmethod
    def result(self, timeout: Any = None) -> Any:
        """Wait for the call and return its value, or raise its error."""

    @abc.abstractmethod
    def done(self) -> bool:
        """Whether the call finished."""

    @abc.abstractmethod
    def __await__(self) -> Generator[Any, None, Any]:
        """Wait without blocking the event loop."""
