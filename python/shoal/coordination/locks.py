"""Semaphores, locks and multi-locks held by the scheduler.

A lease belongs to the client connection that took it: if that client goes
away — a worker's client dies with its worker — its leases are returned
and the next waiter gets one.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from typing import Any

from .._engine import Answer, Coord
from ..core import keys
from ._request import AsyncUse, ask, ask_count, ask_flag, awaitable, maybe_client, new_name, seconds

_leases = itertools.count(1)


def _timeout_for(blocking: bool, timeout: Any) -> float | None:
    t = seconds(timeout)
    if not blocking:
        if t is not None:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return 0.0
    return t


class Semaphore(AsyncUse):
    """At most ``max_leases`` holders at once, across the cluster.

    On an asynchronous client its calls return coroutines, and ``async
    with`` takes a lease.

    Parameters
    ----------
    max_leases
        How many leases may be out at once (the first ``Semaphore`` of a
        name sets it).
    name
        Semaphores with the same name are the same semaphore.
    client
        The client to use (default: the default client; inside a task, the
        worker's).

    Examples
    --------
    >>> sem = Semaphore(2, name="database")  # doctest: +SKIP
    >>> def query(x, sem=sem):
    ...     with sem:
    ...         return run_query(x)

    """

    def __init__(
        self,
        max_leases: int = 1,
        name: str | None = None,
        scheduler_rpc: Any = None,
        loop: Any = None,
        client: Any = None,
    ):
        from ..core import arguments

        arguments.reject("scheduler_rpc", scheduler_rpc)
        arguments.reject("loop", loop)
        if isinstance(max_leases, bool) or not isinstance(max_leases, int) or max_leases < 1:
            raise ValueError(f"max_leases must be a whole number, 1 or more, not {max_leases!r}")
        self.client = maybe_client(client)
        self.name = new_name("semaphore") if name is None else name
        #: This object's own id (two objects of one name are two holders).
        self.id = uuid.uuid4().hex
        self._text = keys.name_text(self.name)
        self.max_leases = max_leases
        self._held: list[int] = []
        self._lock = threading.Lock()

    def acquire(self, timeout: Any = None) -> bool:
        """Take a lease, waiting until one is free.

        Parameters
        ----------
        timeout
            Seconds (or ``"200 ms"``) to wait; forever if None.

        Returns
        -------
        bool
            True if a lease was taken, False if none came free in time.

        """
        return self._acquire(seconds(timeout))

    @awaitable
    def _acquire(self, t: float | None) -> bool:
        lease = next(_leases)
        answer = ask(self.client, Coord.Acquire(self._text, self.max_leases, lease), t)
        if isinstance(answer, Answer.TimedOut):
            return False
        with self._lock:
            self._held.append(lease)
        return True

    def release(self) -> bool:
        """Return a lease this object took.

        Raises
        ------
        RuntimeError
            If it holds none (released more often than acquired).

        """
        with self._lock:
            if not self._held:
                raise RuntimeError(f"Released too often: {self!r} holds no lease")
            lease = self._held.pop()
        return self._release(lease)

    @awaitable
    def _release(self, lease: int) -> bool:
        ask(self.client, Coord.Release(self._text, lease))
        return True

    @awaitable
    def get_value(self) -> int:
        """How many leases are out now, across the cluster."""
        return ask_count(self.client, Coord.Leases(self._text))

    @awaitable
    def close(self) -> None:
        """Return every lease this object holds."""
        while self._held:
            self.release()

    def __enter__(self) -> Semaphore:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __reduce__(self) -> Any:
        return (_semaphore, (self.max_leases, self.name))

    def __repr__(self) -> str:
        return f"<Semaphore: {self.name}, max_leases={self.max_leases}>"


def _semaphore(max_leases: int, name: str) -> Semaphore:
    return Semaphore(max_leases, name)


class Lock(Semaphore):
    """A cluster-wide lock: one holder at a time.

    Parameters
    ----------
    name
        Locks with the same name are the same lock (default: a new one).
    client
        The client to use (default: the default client; inside a task, the
        worker's).

    Examples
    --------
    >>> lock = Lock("x")  # doctest: +SKIP
    >>> with lock:  # doctest: +SKIP
    ...     update_shared_file()

    """

    def __init__(
        self,
        name: str | None = None,
        client: Any = None,
        scheduler_rpc: Any = None,
        loop: Any = None,
    ):
        super().__init__(1, new_name("lock") if name is None else name, scheduler_rpc, loop, client)

    def acquire(self, blocking: bool = True, timeout: Any = None) -> bool:  # type: ignore[override]
        """Take the lock, waiting until it is free.

        Parameters
        ----------
        blocking
            False: take it only if it is free now.
        timeout
            Seconds (or ``"200 ms"``) to wait; forever if None.

        Returns
        -------
        bool
            Whether the lock was taken.

        """
        return self._acquire(_timeout_for(blocking, timeout))

    def release(self) -> bool:
        """Release the lock this object holds.

        Raises
        ------
        RuntimeError
            If this object does not hold it.

        """
        return super().release()

    @awaitable
    def locked(self) -> bool:
        """Whether anyone holds the lock."""
        return self.get_value() > 0

    def __reduce__(self) -> Any:
        return (Lock, (self.name,))

    def __repr__(self) -> str:
        return f"<Lock: {self.name}>"


class MultiLock(AsyncUse):
    """Several named locks taken at once (all, or ``num_locks`` of them).

    On an asynchronous client its calls return coroutines, and ``async
    with`` takes the locks.

    Parameters
    ----------
    names
        The locks' names.
    client
        The client to use (default: the default client; inside a task, the
        worker's).

    Examples
    --------
    >>> with MultiLock(["a", "b"]):  # doctest: +SKIP
    ...     move_between(a, b)

    """

    def __init__(self, names: list[str] | None = None, client: Any = None):
        self.client = maybe_client(client)
        self.names = list(names or [])
        if not all(isinstance(n, str) for n in self.names):
            raise TypeError("MultiLock names must be strings")
        self._lease: int | None = None

    def acquire(
        self, blocking: bool = True, timeout: Any = None, num_locks: int | None = None
    ) -> bool:
        """Take ``num_locks`` of the locks (default: all), waiting until
        that many are free.

        Returns
        -------
        bool
            Whether they were taken.

        """
        if self._lease is not None:
            raise RuntimeError(f"{self!r} is held already")
        count = len(set(self.names)) if num_locks is None else num_locks
        return self._acquire(count, _timeout_for(blocking, timeout))

    @awaitable
    def _acquire(self, count: int, t: float | None) -> bool:
        lease = next(_leases)
        answer = ask(self.client, Coord.MultiAcquire(self.names, count, lease), t)
        if isinstance(answer, Answer.TimedOut):
            return False
        self._lease = lease
        return True

    def release(self) -> None:
        """Release the locks this object holds.

        Raises
        ------
        RuntimeError
            If it holds none.

        """
        if self._lease is None:
            raise RuntimeError(f"Released too often: {self!r} holds no lock")
        lease, self._lease = self._lease, None
        return self._release(lease)

    @awaitable
    def _release(self, lease: int) -> None:
        ask(self.client, Coord.MultiRelease(lease))

    @awaitable
    def locked(self) -> bool:
        """Whether any of the locks is held."""
        return ask_flag(self.client, Coord.MultiLocked(self.names))

    def __enter__(self) -> MultiLock:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __reduce__(self) -> Any:
        return (MultiLock, (self.names,))

    def __repr__(self) -> str:
        return f"<MultiLock: {self.names}>"
