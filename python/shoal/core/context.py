"""Which client runs work when none is named.

A :class:`~shoal.Client` registers itself here when it becomes the default,
and the client module registers how to start the implicit in-process
cluster. Lower layers (futures, delayed graphs, dask interop) find their
client here instead of importing the ``Client`` class, so imports only ever
point down.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import weakref
from typing import Any, Callable, Protocol


class Runner(Protocol):
    """What lower layers need of a client: its session and its state."""

    status: str

    @property
    def _session(self) -> Any: ...


_lock = threading.Lock()
# Clients that became the default, oldest first: when the default closes,
# the latest one still running is the default again, as in Dask.
_defaults: list[weakref.ref[Any]] = []
_implicit_factory: Callable[[], Any] | None = None
_implicit: Any = None
_client_class: Any = None
_worker_client: Callable[[], Any] | None = None

# Names Dask users pass as ``scheduler=``: all run on the default client, or
# on the implicit in-process cluster when there is none.
SCHEDULER_NAMES = frozenset(
    {
        None,
        "shoal",
        "distributed",
        "dask.distributed",
        "threads",
        "threading",
        "sync",
        "synchronous",
        "single-threaded",
    }
)


def set_default(client: Any) -> None:
    """Make ``client`` the default."""
    with _lock:
        _defaults[:] = [r for r in _defaults if r() is not None and r() is not client]
        _defaults.append(weakref.ref(client))


def unset_default(client: Any) -> None:
    """Forget ``client`` as a default; the latest earlier default still
    running becomes the default again.
    """
    with _lock:
        _defaults[:] = [r for r in _defaults if r() is not None and r() is not client]


def set_client_class(cls: Any) -> None:
    """Register the ``Client`` class (it lives above this layer)."""
    global _client_class
    _client_class = cls


def client_class() -> Any:
    """The ``Client`` class."""
    if _client_class is None:
        raise RuntimeError("import shoal to register its client")
    return _client_class


def set_worker_client(factory: Callable[[], Any]) -> None:
    """How to get the client of the worker running the calling thread (a
    callable returning it, or None off a worker).
    """
    global _worker_client
    _worker_client = factory


_blocking: Callable[[], Any] | None = None


def set_blocking(factory: Callable[[], Any]) -> None:
    """Register what :func:`blocking` returns (the worker layer's secede
    and rejoin).
    """
    global _blocking
    _blocking = factory


def _never() -> bool:
    return False


_in_task: Callable[[], bool] = _never


def set_in_task(check: Callable[[], bool]) -> None:
    """Register how to tell whether the calling thread runs a task."""
    global _in_task
    _in_task = check


def in_task() -> bool:
    """Whether the calling thread runs a task on a worker."""
    return _in_task()


def blocking() -> Any:
    """A context manager around a wait on the cluster: inside a task it
    leaves the worker's thread pool while waiting (so the tasks waited on
    can run, even on one thread); elsewhere it does nothing.
    """
    if _blocking is None:
        return contextlib.nullcontext()
    return _blocking()


#: The client of the innermost ``Client.as_current()`` block (thread- and
#: task-local, as a context variable is).
_current: contextvars.ContextVar[Any] = contextvars.ContextVar("shoal_current", default=None)


@contextlib.contextmanager
def as_current(client: Any) -> Any:
    """Make ``client`` the one :func:`current_default` returns inside the
    block (in this thread or asyncio task only).
    """
    token = _current.set(client)
    try:
        yield
    finally:
        _current.reset(token)


def enter_current(client: Any) -> contextvars.Token[Any]:
    """Make ``client`` current until :func:`leave_current` with the token
    (``with Client(...) as c``, as in Dask).
    """
    return _current.set(client)


def leave_current(token: contextvars.Token[Any]) -> None:
    """Undo :func:`enter_current`.

    Raises
    ------
    ValueError
        If called in another thread or asyncio task than the one that
        entered ("... was created in a different Context").

    """
    _current.reset(token)


def current_scoped() -> Any:
    """The client of the innermost ``as_current`` block, or None."""
    return _current.get()


def process_default() -> Any:
    """The client of an enclosing ``as_current`` block; else the default
    client if it is running; else None (never a worker's own client).
    """
    scoped = _current.get()
    if scoped is not None and scoped.status == "running":
        return scoped
    with _lock:
        for ref in reversed(_defaults):
            client = ref()
            if client is not None and client.status == "running":
                return client
    return None


def current_default() -> Any:
    """The client of an enclosing ``as_current`` block; else the default
    client if it is running; inside a task, the worker's client; else None.
    """
    found = process_default()
    if found is not None:
        return found
    if _worker_client is not None:
        return _worker_client()
    return None


def client_here(c: Any = None) -> Any:
    """``c``; else, inside a task, the worker's client; else the default
    client (as Dask's ``get_client()``). Raises ``ValueError`` if none.
    """
    if c is None and _worker_client is not None:
        c = _worker_client()
    return default_client(c)


def default_client(c: Any = None) -> Any:
    """Return ``c`` or the current default client; raise ``ValueError`` if
    there is none.
    """
    if c is not None:
        return c
    client = current_default()
    if client is None:
        raise ValueError(
            "No clients found. Start a client and point it to a scheduler: "
            "Client() or Client('tcp://host:port')"
        )
    return client


def set_implicit_factory(factory: Callable[[], Any]) -> None:
    """How to start the client ``compute`` uses when there is no default."""
    global _implicit_factory
    _implicit_factory = factory


def resolve(scheduler: Any = None) -> Any:
    """The client to run on for ``scheduler=``.

    A client is used as it is; a scheduler name (``None``, ``"threads"``,
    ``"distributed"``, ...) means the default client, or else an implicit
    in-process cluster started on first use and reused.
    """
    global _implicit
    if scheduler is not None and hasattr(scheduler, "_session"):
        return scheduler
    if scheduler not in SCHEDULER_NAMES:
        names = sorted(n for n in SCHEDULER_NAMES if n)
        raise ValueError(
            f"shoal cannot run on scheduler={scheduler!r}; pass a shoal Client, or one of {names}"
        )
    client = current_default()
    if client is not None:
        return client
    with _lock:
        if _implicit is None or _implicit.status != "running":
            if _implicit_factory is None:
                raise RuntimeError("import shoal to register its client")
            _implicit = _implicit_factory()
        return _implicit


def close_implicit() -> None:
    """Close the implicit cluster, if one was started."""
    global _implicit
    with _lock:
        client, _implicit = _implicit, None
    if client is not None:
        client.close()
