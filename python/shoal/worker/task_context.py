"""What a running task can ask about where it runs, and how it launches
tasks of its own: :func:`get_worker`, :func:`get_client`,
:func:`secede`, :func:`rejoin` and :func:`worker_client`.

Every executor thread knows its worker (several in-process workers may
share a process) and the task it runs. A task that waits on tasks it
submitted should :func:`secede` first (``worker_client`` does it): its
thread then no longer counts against the worker's thread count, so the
sub-tasks can run, even on a single-threaded cluster.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator
from typing import Any

from .. import _engine
from ..core import context
from . import plugins

_current = threading.local()


class Worker:
    """The worker a task runs on, as :func:`get_worker` returns it.

    Attributes
    ----------
    address : str
        Its data server, ``tcp://host:port`` (how the scheduler and
        ``Client.run`` name it).
    name : str
        Its name (its address unless it was named).
    scheduler_address : str
        The scheduler it belongs to.

    """

    def __init__(self, rt: Any, executors: Any):
        self._rt = rt
        self.executors = executors
        self.address: str = rt.address
        self.name: str = rt.name
        self.scheduler_address: str = rt.scheduler
        self._client: Any = None
        self._own_client = False
        #: The key each executor thread runs now, by thread id (call_stack).
        self.running: dict[int, str] = {}
        self._preloads: Any = None
        self._lock = threading.Lock()
        #: Actors living here, by the key of the task that made each.
        self.actors: dict[str, Any] = {}
        #: Plugins installed here (``Client.register_plugin``).
        self.installed = plugins.Installed()

    @property
    def plugins(self) -> dict[str, Any]:
        """The plugins installed here, by name (as Dask's
        ``Worker.plugins``).
        """
        return self.installed.by_name()

    @property
    def local_directory(self) -> str:
        """This worker's own directory (uploads and plugins' files go
        here; removed when it closes).
        """
        return str(self.executors.uploads.directory)

    def event_loop(self) -> Any:
        """The worker's event loop (``async def`` tasks run on it)."""
        return self.executors._event_loop()

    @property
    def id(self) -> str:
        """Its name (Dask's ``Worker.id``)."""
        return self.name

    @property
    def nthreads(self) -> int:
        """Tasks it runs at once while they compute."""
        return int(self._rt.nthreads)

    @property
    def spilled_bytes(self) -> dict[str, int]:
        """Bytes of results held here, as Dask's ``Worker.data.spilled_bytes``
        splits them: ``{"memory": ..., "disk": ...}``.
        """
        memory, disk = self._rt.stored_bytes()
        return {"memory": int(memory), "disk": int(disk)}

    def client(self, timeout: float = 10.0) -> Any:
        """This worker's client, shared by its tasks: as in Dask, the
        default client of this process when it talks to the same scheduler
        (a worker on threads of the client's process), else one connected
        on first use.
        """
        with self._lock:
            old = self._client
            if old is None or old.status != "running" or old._session.broken() is not None:
                if old is not None and self._own_client and old.status == "running":
                    # Broken (say, removed by the scheduler while this
                    # process was stopped): its thread goes, a new one comes.
                    old.close()
                default = context.process_default()
                if default is not None and _engine.strip_scheme(
                    default.scheduler_address
                ) == _engine.strip_scheme(self.scheduler_address):
                    self._client, self._own_client = default, False
                    return default
                cls = context.client_class()
                self._own_client = True
                self._client = cls(
                    self.scheduler_address,
                    timeout=timeout,
                    set_as_default=False,
                    name=f"worker-client-{self.name}",
                    direct_to_workers=True,
                )
            return self._client

    def get_profile(
        self, start: float | None = None, stop: float | None = None, key: str | None = None
    ) -> dict[str, Any]:
        """The statistical profile of this worker's tasks (of key prefix
        ``key``) between ``start`` and ``stop`` (seconds since the epoch),
        in Dask's format; see :meth:`shoal.Client.profile`.
        """
        return self.executors.profiler.profile(key, start, stop)

    def call_stacks(self, keys: Any = None) -> dict[str, list[str]]:
        """The stack of each task running on an executor thread now (those
        of ``keys`` only, if given), as lines of :func:`traceback.format_stack`.
        """
        import sys
        import traceback

        frames = sys._current_frames()
        out = {}
        for ident, key in list(self.running.items()):
            frame = frames.get(ident)
            if frame is not None and (keys is None or key in keys):
                out[key] = traceback.format_stack(frame)
        return out

    def get_current_task(self) -> str:
        """The key of the task calling it (Dask's ``Worker.get_current_task``).

        Raises
        ------
        ValueError
            Outside a task.

        """
        return get_current_task()  # this module's function

    def log_event(self, topic: str | list[str], msg: Any) -> None:
        """Log ``msg`` under ``topic`` in the scheduler's event log (see
        :meth:`shoal.Client.log_event`), through this worker's client; a
        dict message gets this worker's ``"worker"`` address, as in Dask.
        """
        if isinstance(msg, dict):
            msg = {**msg, "worker": self.address}
        self.client().log_event(topic, msg)

    def start_preloads(self, preloads: Any) -> None:
        """Run the ``dask_setup(worker)`` of its preloads (a
        :class:`shoal.core.preload.Preloads`); their ``dask_teardown`` runs
        as it closes.
        """
        from ..core import aio

        self._preloads = preloads
        for pending in preloads.calls("dask_setup", self):
            aio.run_to_end(pending)

    def close(self) -> None:
        """Run its preloads' teardown and its plugins' teardown, then close
        its client if it started one.
        """
        if self._preloads is not None:
            from ..core import aio

            preloads, self._preloads = self._preloads, None
            for pending in preloads.calls("dask_teardown", self):
                aio.run_to_end(pending)
        self.installed.close(self)
        with self._lock:
            client, self._client = self._client, None
        if client is not None and self._own_client:
            client.close()

    def __repr__(self) -> str:
        return f"<Worker {self.address!r}, name: {self.name!r}, threads: {self.nthreads}>"


def bind_thread(worker: Worker) -> None:
    """Make ``worker`` the worker of the calling thread (an executor thread,
    the event loop or the control thread).
    """
    _current.worker = worker


def task_started(tid: int, key: str) -> None:
    """The calling executor thread now runs task ``tid``."""
    _current.tid = tid
    _current.key = key
    worker = getattr(_current, "worker", None)
    if worker is not None:
        worker.running[threading.get_ident()] = key
    _current.seceded = False
    _current.left = False


def task_done() -> bool:
    """The calling executor thread's task ended. Returns True if the task
    seceded at some point: a thread took its place in the pool, so this
    one should end.
    """
    _current.tid = None
    _current.key = None
    _current.seceded = False
    worker = getattr(_current, "worker", None)
    if worker is not None:
        worker.running.pop(threading.get_ident(), None)
    left = getattr(_current, "left", False)
    _current.left = False
    return left


#: The key of the ``async def`` task an asyncio task of the worker's event
#: loop runs (the loop's thread runs many at once).
async_key: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "shoal_task_key", default=None
)


def current_key() -> str | None:
    """The key of the task running on the calling thread (or, on the
    worker's event loop, in the calling asyncio task), or None.
    """
    return getattr(_current, "key", None) or async_key.get()


def current_worker() -> Worker | None:
    """The worker of the calling thread, or None outside a worker."""
    return getattr(_current, "worker", None)


def get_worker() -> Worker:
    """The worker running the current task.

    Returns
    -------
    Worker
        With its ``address``, ``name``, ``nthreads`` and ``scheduler_address``.

    Raises
    ------
    ValueError
        Outside a task (on the client).

    Examples
    --------
    >>> def where():
    ...     return get_worker().address
    >>> client.submit(where).result()  # doctest: +SKIP
    'tcp://127.0.0.1:40123'

    """
    worker = current_worker()
    if worker is None:
        raise ValueError("No worker found: get_worker() works only inside a task")
    return worker


def _worker_client_or_none() -> Any:
    worker = current_worker()
    return None if worker is None else worker.client()


context.set_worker_client(_worker_client_or_none)


@contextlib.contextmanager
def _seceded_while_waiting() -> Iterator[None]:
    if getattr(_current, "tid", None) is None or getattr(_current, "seceded", False):
        yield  # not in a task, or already out of the pool
        return
    secede()
    try:
        yield
    finally:
        rejoin()


def _blocking() -> Any:
    if getattr(_current, "tid", None) is None:
        return contextlib.nullcontext()
    return _seceded_while_waiting()


context.set_blocking(_blocking)
context.set_in_task(lambda: getattr(_current, "tid", None) is not None)


def get_current_task() -> str:
    """The key of the task running on the calling thread.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        Outside a task.

    Examples
    --------
    >>> def f():
    ...     return get_current_task()
    >>> client.submit(f, key="mine").result()  # doctest: +SKIP
    'mine'

    """
    key = current_key()
    if key is None:
        raise ValueError("get_current_task() was called outside a task")
    return key


def secede() -> None:
    """Leave the worker's thread pool while this task waits on others.

    The task keeps running on its thread, but the thread no longer counts
    against the worker's thread count, so another task can start. Call
    :func:`rejoin` to take a slot again before computing heavily. A no-op
    outside a task, and in a task that already seceded.

    Examples
    --------
    >>> def fib(n):
    ...     if n < 2:
    ...         return n
    ...     client = get_client()
    ...     a, b = client.submit(fib, n - 1), client.submit(fib, n - 2)
    ...     secede()
    ...     return a.result() + b.result()

    """
    worker = current_worker()
    tid = getattr(_current, "tid", None)
    if worker is None or tid is None or getattr(_current, "seceded", False):
        return
    _current.seceded = True
    _current.left = True
    worker._rt.secede(tid)
    # A new thread takes this one's place in the pool; this one ends with
    # its task.
    worker.executors.spawn()


def rejoin() -> None:
    """Count against the worker's thread pool again after :func:`secede`.

    It does not wait for a free thread (this task may hold a lock another
    task in the pool waits for): the worker runs one task more than its
    threads until enough running tasks finish, and starts none meanwhile.
    A no-op if this task did not secede.
    """
    worker = current_worker()
    tid = getattr(_current, "tid", None)
    if worker is None or tid is None or not getattr(_current, "seceded", False):
        return
    worker._rt.rejoin(tid)
    _current.seceded = False


def local_client(*args: Any, **kwargs: Any) -> Any:
    """Dask's old name of :func:`worker_client`: warns, then is that."""
    import warnings

    warnings.warn(
        "local_client has moved to worker_client: use worker_client",
        UserWarning,
        stacklevel=2,
    )
    return worker_client(*args, **kwargs)


@contextlib.contextmanager
def worker_client(timeout: Any = None, separate_thread: bool = True) -> Iterator[Any]:
    """A client for launching and waiting on tasks from inside a task.

    The task secedes from the worker's thread pool for the duration of
    the block (so the tasks it waits on can run) and rejoins after.

    Parameters
    ----------
    timeout
        How long to wait to connect (seconds, or a string like ``"10 s"``).
    separate_thread
        Secede while in the block (the default). With False the task keeps
        its slot: only safe if it never waits on its sub-tasks.

    Examples
    --------
    >>> def total(xs):
    ...     with worker_client() as client:
    ...         return sum(client.gather(client.map(inc, xs)))

    """
    from ..core.times import parse_timedelta

    worker = get_worker()
    seconds = parse_timedelta(timeout) if timeout is not None else 10.0
    client = worker.client(timeout=seconds)
    if separate_thread:
        secede()
    try:
        yield client
    finally:
        if separate_thread:
            rejoin()
