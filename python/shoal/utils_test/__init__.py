"""Helpers for testing code that uses shoal, by the names of ``distributed.utils_test``.

A project whose tests use Dask's ``gen_cluster``, the ``client`` fixture or
``inc``/``slowinc`` runs them on shoal by importing these instead::

    from shoal.utils_test import gen_cluster, inc

    @gen_cluster(client=True)
    async def test_inc(c, s, a, b):
        assert await c.submit(inc, 1) == 2

and, for the fixtures (``client``/``c``, ``s``, ``a``, ``b``, ``loop``), in
its ``conftest.py``: ``from shoal.utils_test import *``.

``gen_cluster`` runs the test on its own event loop with a scheduler and
workers on threads of the test's process (``Worker=Nanny``: in processes of
their own); the scheduler and worker objects it hands the test carry their
``address`` and ``name`` (shoal's servers are not Python objects to read).
The synchronous fixtures start a scheduler and two single-threaded worker
processes per test, as Dask's do, and describe them as ``{"address": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import pytest

from .. import _engine
from ..core import aio
from ..core import security as security_
from .tasks import (
    asyncinc,
    block_on_event,
    dec,
    div,
    double,
    inc,
    lock_inc,
    map_varying,
    mul,
    randominc,
    slowadd,
    slowdec,
    slowdouble,
    slowidentity,
    slowinc,
    slowsum,
    throws,
    varying,
)

__all__ = [
    "a",
    "cleanup",
    "async_poll_for",
    "asyncinc",
    "b",
    "block_on_event",
    "c",
    "client",
    "client_secondary",
    "cluster",
    "cluster_fixture",
    "dec",
    "div",
    "double",
    "gen_cluster",
    "gen_test",
    "inc",
    "lock_inc",
    "loop",
    "loop_in_thread",
    "map_varying",
    "mul",
    "nodebug",
    "poll_for",
    "raises_with_cause",
    "randominc",
    "s",
    "slowadd",
    "slowdec",
    "slowdouble",
    "slowidentity",
    "slowinc",
    "slowsum",
    "throws",
    "varying",
]

#: How long a ``gen_cluster``/``gen_test`` test may run by default (seconds).
TEST_TIMEOUT = 30

# ----- waiting and checking -----------------------------------------------


def poll_for(
    predicate: Callable[[], bool],
    timeout: float = 15,
    fail_func: Callable[[], None] | None = None,
    period: float = 0.05,
) -> None:
    """Check ``predicate`` every ``period`` seconds until it holds; fail the
    test after ``timeout`` seconds (calling ``fail_func`` first).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        _give_up_after(deadline, timeout, fail_func)
        time.sleep(period)


async def async_poll_for(
    predicate: Callable[[], bool],
    timeout: float = 15,
    fail_func: Callable[[], None] | None = None,
    period: float = 0.05,
) -> None:
    """:func:`poll_for` without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while not predicate():
        _give_up_after(deadline, timeout, fail_func)
        await asyncio.sleep(period)


def _give_up_after(deadline: float, timeout: float, fail_func: Callable[[], None] | None) -> None:
    """Fail the test (calling ``fail_func`` first) once ``deadline`` passed."""
    if time.monotonic() > deadline:
        if fail_func is not None:
            fail_func()
        pytest.fail(f"condition not reached after {timeout} seconds")


@contextlib.contextmanager
def raises_with_cause(
    expected_exception: Any,
    match: str | None,
    expected_cause: Any,
    match_cause: str | None,
    *more: Any,
) -> Iterator[None]:
    """``pytest.raises(expected_exception, match=match)`` whose exception's
    ``__cause__`` is an ``expected_cause`` matching ``match_cause`` (and so
    on down the chain, for each further pair in ``more``).
    """
    with pytest.raises(expected_exception, match=match) as info:
        yield
    exc: BaseException | None = info.value
    pairs = [(expected_cause, match_cause), *zip(more[::2], more[1::2])]
    for kind, pattern in pairs:
        assert exc is not None and exc.__cause__ is not None, f"{exc!r} has no cause"
        exc = exc.__cause__
        with pytest.raises(kind, match=pattern):
            raise exc


def nodebug(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``func`` with asyncio's debug mode off (``PYTHONASYNCIODEBUG``)."""

    @functools.wraps(func)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        old = os.environ.pop("PYTHONASYNCIODEBUG", None)
        try:
            return func(*args, **kwargs)
        finally:
            if old is not None:
                os.environ["PYTHONASYNCIODEBUG"] = old

    return wrapped


# ----- clusters for tests ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Server:
    """A scheduler or worker a test was handed: where it listens, its name."""

    address: str
    name: Any = None


def _is_process_worker(kind: Any) -> bool:
    # gen_cluster(Worker=Nanny): Dask's Nanny runs its worker in a process.
    return getattr(kind, "__name__", "") == "Nanny"


class _TestCluster:
    """A scheduler on threads of this process and workers with their own
    thread counts, on threads (or in processes) — started and stopped
    synchronously, so the asynchronous tests run it on a thread.
    """

    def __init__(
        self,
        nthreads: list[tuple[Any, ...]],
        processes: bool,
        worker_kwargs: dict[str, Any],
        scheduler_kwargs: dict[str, Any],
        security: Any,
    ):
        from ..deploy.local import LocalCluster

        scheduler_kwargs = dict(scheduler_kwargs)
        dashboard = scheduler_kwargs.pop("dashboard_address", None)
        if scheduler_kwargs.pop("dashboard", False) and dashboard is None:
            dashboard = ":0"  # Dask's dashboard=True: one, on any free port
        self.local = LocalCluster(
            n_workers=0,
            processes=False,
            dashboard_address=dashboard,
            scheduler_kwargs=scheduler_kwargs,
            security=security,
        )
        self.pools: list[Any] = []
        try:
            self.workers = [
                self._start_worker(i, spec, processes, worker_kwargs)
                for i, spec in enumerate(nthreads)
            ]
            self._wait_for(len(nthreads))
        except BaseException:
            self.close()
            raise
        if processes:
            by_name = {w.name: w.address for w in self.local.workers.values()}
            self.workers = [Server(by_name[str(w.name)], w.name) for w in self.workers]
        self.scheduler = Server(self.local.scheduler_address, "scheduler")

    def _start_worker(
        self, i: int, spec: tuple[Any, ...], processes: bool, worker_kwargs: dict[str, Any]
    ) -> Server:
        from ..worker.executor import start_in_process
        from ..worker.options import WorkerOptions

        kwargs = {**worker_kwargs, **(spec[2] if len(spec) > 2 else {})}
        kwargs.setdefault("memory_limit", 0)
        name = str(kwargs.pop("name", i))
        options = WorkerOptions.parse(nthreads=spec[1], **kwargs)
        address = self.local.scheduler_address
        if not processes:
            rt = start_in_process(address, options, name, self.local.security)
            self.local._threads.append(rt)
            return Server(rt.address, name)
        # The credentials go on the worker's stdin, never in its environment.
        line, reads_line = security_.worker_stdin(self.local.security)
        from ..dask.config import inherited_config
        from ..worker.options import pre_spawn_environ

        env = {
            "SHOAL_SYS_PATH": os.pathsep.join(p for p in sys.path if p),
            **inherited_config(),
            **pre_spawn_environ(),
        }
        args = ["-m", "shoal.worker", address, *options.arguments(), "--name", name]
        self.pools.append(
            _engine.WorkerPool(
                1,
                sys.executable,
                [*args, *reads_line, "--lifeline"],
                list(env.items()),
                stdin_line=line,
            )
        )
        return Server("", name)

    def _wait_for(self, n: int) -> None:
        monitor = self.local._monitor
        if monitor is not None and not monitor.wait_for_workers(n, 30.0):
            raise TimeoutError(f"{n} test workers did not start within 30 s")

    def close(self) -> None:
        for pool in self.pools:
            pool.stop_restarting()
        self.local.close()
        for pool in self.pools:
            pool.close(2.0)


def _test_signature(func: Callable[..., Any], handed: int) -> inspect.Signature:
    """``func``'s signature less the parameters the decorator hands it, so
    pytest passes only its fixtures and parameters.
    """
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        # (c, s, a, *workers, fixture): every worker goes to *workers
        params = [p for p in params if p.kind is p.KEYWORD_ONLY]
    else:
        params = params[handed:]
    return sig.replace(parameters=params)


def _run(coro_fn: Callable[[], Any], timeout: float, config: dict[str, Any] | None) -> Any:
    import dask

    async def main() -> Any:
        return await asyncio.wait_for(coro_fn(), timeout)

    with dask.config.set(config or {}):
        return asyncio.run(main())


def gen_test(
    timeout: float = TEST_TIMEOUT,
    config: dict[str, Any] | None = None,
    clean_kwargs: dict[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run an ``async def`` test on an event loop of its own, failing it
    after ``timeout`` seconds, with Dask's configuration ``config`` set.

    Examples
    --------
    >>> @gen_test()  # doctest: +SKIP
    ... async def test_cluster():
    ...     async with LocalCluster(asynchronous=True) as cluster: ...

    """
    del clean_kwargs  # Dask's leak checks: shoal's tests check leaks themselves.

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def test(*args: Any, **kwargs: Any) -> Any:
            return _run(lambda: func(*args, **kwargs), timeout, config)

        return test

    return decorator


def gen_cluster(
    nthreads: list[tuple[Any, ...]] | None = None,
    scheduler: str = "127.0.0.1",
    timeout: float = TEST_TIMEOUT,
    security: Any = None,
    Worker: Any = None,  # noqa: N803 (Dask's name)
    client: bool = False,
    scheduler_kwargs: dict[str, Any] | None = None,
    worker_kwargs: dict[str, Any] | None = None,
    client_kwargs: dict[str, Any] | None = None,
    active_rpc_timeout: float = 1,
    config: dict[str, Any] | None = None,
    clean_kwargs: dict[str, Any] | None = None,
    allow_unclosed: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Run an ``async def`` test against a cluster of its own.

    The test gets ``(c, s, a, b, ...)`` with ``client=True`` — an
    asynchronous client, the scheduler, one object per worker — or
    ``(s, a, b, ...)``; then its own fixtures and parameters.

    Parameters
    ----------
    nthreads
        One ``(host, threads)`` or ``(host, threads, worker_kwargs)`` per
        worker (default: two workers, with 1 and 2 threads).
    scheduler
        Host of the scheduler (127.0.0.1).
    timeout
        Seconds before the test fails.
    security
        A :class:`~shoal.Security` for the cluster and client.
    Worker
        Dask's ``Nanny`` puts each worker in a process of its own; by default
        they run on threads of the test's process.
    client
        Hand the test an asynchronous :class:`~shoal.Client` first.
    scheduler_kwargs, worker_kwargs, client_kwargs
        Options of the scheduler (``worker_ttl``, ``allowed_failures``,
        ``dashboard_address``), of every worker (``resources``,
        ``memory_limit``, ...) and of the client.
    active_rpc_timeout, clean_kwargs, allow_unclosed
        Dask's leak checks on its own servers; nothing to check on shoal's.
    config
        Dask configuration set while the test runs.

    Returns
    -------
    A decorator for the test.

    Examples
    --------
    >>> @gen_cluster(client=True, nthreads=[("", 2)])  # doctest: +SKIP
    ... async def test_two(c, s, a):
    ...     assert await c.submit(inc, 1) == 2

    """
    if nthreads is None:
        nthreads = [("127.0.0.1", 1), ("127.0.0.1", 2)]
    if scheduler not in ("127.0.0.1", "localhost", ""):
        raise ValueError(f"gen_cluster runs its scheduler on 127.0.0.1, not {scheduler!r}")
    del active_rpc_timeout, clean_kwargs, allow_unclosed  # Dask's leak checks
    processes = Worker is not None and _is_process_worker(Worker)
    specs = list(nthreads)

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        handed = len(specs) + 1 + int(client)

        @functools.wraps(func)
        def test(*args: Any, **kwargs: Any) -> Any:
            async def body() -> Any:
                servers = await aio.offload(
                    _TestCluster,
                    specs,
                    processes,
                    worker_kwargs or {},
                    scheduler_kwargs or {},
                    security,
                )
                try:
                    front = [servers.scheduler, *servers.workers]
                    if not client:
                        return await func(*front, *args, **kwargs)
                    from ..client import Client

                    async with Client(
                        servers.scheduler.address,
                        asynchronous=True,
                        security=security,
                        **(client_kwargs or {}),
                    ) as c:
                        return await func(c, *front, *args, **kwargs)
                finally:
                    await aio.offload(servers.close)

            return _run(body, timeout, config)

        test.__signature__ = _test_signature(func, handed)  # type: ignore[attr-defined]
        return test

    return decorator


@contextlib.contextmanager
def cluster(
    nworkers: int = 2,
    nanny: bool = False,
    worker_kwargs: dict[str, Any] | None = None,
    active_rpc_timeout: float = 10,
    scheduler_kwargs: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> Generator[tuple[dict[str, Any], list[dict[str, Any]]], None, None]:
    """A scheduler and ``nworkers`` single-threaded worker processes, as
    ``({"address": scheduler}, [{"address": worker, "name": name}, ...])``.

    ``nanny`` is accepted for Dask's sake: shoal's worker processes are
    always started again when they die. ``worker_kwargs`` take
    ``nthreads``, ``memory_limit`` and ``resources``.
    """
    import dask

    from ..deploy.local import LocalCluster

    del nanny, active_rpc_timeout
    kwargs = dict(worker_kwargs or {})
    threads = kwargs.pop("nthreads", 1)
    scheduler_kwargs = dict(scheduler_kwargs or {})
    dashboard = scheduler_kwargs.pop("dashboard_address", None)
    if scheduler_kwargs.pop("dashboard", False) and dashboard is None:
        dashboard = ":0"  # Dask's dashboard=True: one, on any free port
    with dask.config.set(config or {}):
        with LocalCluster(
            n_workers=nworkers,
            threads_per_worker=threads,
            dashboard_address=dashboard,
            scheduler_kwargs=scheduler_kwargs,
            memory_limit=kwargs.pop("memory_limit", 0),
            **kwargs,
        ) as local:
            workers = [
                {"address": w.address, "name": w.name}
                for w in sorted(local.workers.values(), key=lambda w: w.name)
            ]
            yield {"address": local.scheduler_address}, workers


# ----- pytest fixtures --------------------------------------------------------


@pytest.fixture
def loop_in_thread() -> Iterator[Any]:
    """An event loop running in a thread of its own: a tornado ``IOLoop``
    (as Dask's fixture, with its ``add_callback``) when tornado is
    installed, else an asyncio loop.
    """
    try:
        from tornado.ioloop import IOLoop
    except ImportError:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="test-loop", daemon=True)
        thread.start()
        try:
            yield loop
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
        return
    made: dict[str, Any] = {}
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(asyncio.new_event_loop())
        made["loop"] = IOLoop.current()
        made["loop"].add_callback(ready.set)
        made["loop"].start()

    thread = threading.Thread(target=run, name="test-loop", daemon=True)
    thread.start()
    ready.wait()
    try:
        yield made["loop"]
    finally:
        made["loop"].add_callback(made["loop"].stop)
        thread.join()
        made["loop"].close(all_fds=True)


@pytest.fixture
def loop(loop_in_thread: Any) -> Any:
    """The event loop of :func:`loop_in_thread`, for ``Client(loop=loop)``."""
    return loop_in_thread


@pytest.fixture
def cleanup() -> Iterator[None]:
    """Dask's fixture that checks a test leaves no thread, process or
    instance behind; shoal's clusters and clients clean up on close (and
    shoal's own suite checks for leftover processes), so it only yields.
    """
    yield


@pytest.fixture
def cluster_fixture(loop: Any) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """:func:`cluster`'s scheduler and workers."""
    with cluster() as (scheduler, workers):
        yield scheduler, workers


@pytest.fixture
def s(cluster_fixture: Any) -> dict[str, Any]:
    """The scheduler of :func:`cluster_fixture`, as ``{"address": ...}``."""
    return cluster_fixture[0]


@pytest.fixture
def a(cluster_fixture: Any) -> dict[str, Any]:
    """Its first worker."""
    return cluster_fixture[1][0]


@pytest.fixture
def b(cluster_fixture: Any) -> dict[str, Any]:
    """Its second worker."""
    return cluster_fixture[1][1]


@pytest.fixture
def client(loop: Any, cluster_fixture: Any) -> Iterator[Any]:
    """A synchronous :class:`~shoal.Client` of :func:`cluster_fixture`."""
    from ..client import Client

    with Client(cluster_fixture[0]["address"], loop=loop) as c:
        yield c


#: Dask's tests call the client fixture ``c`` too.
c = client


@pytest.fixture
def client_secondary(loop: Any, cluster_fixture: Any) -> Iterator[Any]:
    """A second client of the same cluster."""
    from ..client import Client

    with Client(cluster_fixture[0]["address"], loop=loop) as c:
        yield c
