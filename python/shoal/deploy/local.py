"""LocalCluster: a scheduler and workers on this machine."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from .. import _engine
from ..core import aio, arguments
from ..core import memory as memory_
from ..core import security as security_
from ..core.arguments import UNSET
from ..core.session import Session, third_party_packages
from ..core.settings import MISSING, setting
from ..core.times import parse_timedelta
from ..dask import config as dask_config
from ..worker import template
from ..worker.executor import start_in_process
from ..worker.options import WorkerOptions, pre_spawn_environ, processes_and_threads
from ..worker.uploads import private_root, remove_directories_of, user_root
from .cluster import HostedScheduler


def _defaults(
    n_workers: int | None, threads_per_worker: int | None, processes: bool
) -> tuple[int, int]:
    cpus = os.cpu_count() or 1
    if n_workers is None and threads_per_worker is None:
        if not processes:
            return 1, cpus
        return processes_and_threads(cpus)
    if n_workers is None:
        assert threads_per_worker is not None
        return max(1, cpus // threads_per_worker), threads_per_worker
    if threads_per_worker is None:
        return n_workers, max(1, cpus // max(n_workers, 1))
    return n_workers, threads_per_worker


DEFAULT_DASHBOARD = ":8787"


def dashboard_spec(address: Any) -> str | None:
    """The dashboard's bind address from Dask's spellings: ``":8787"``,
    ``"host:port"``, a port number; ``None`` or ``False`` for no dashboard.
    """
    if address is None or address is False:
        return None
    if address is True or address is UNSET:
        return DEFAULT_DASHBOARD
    if isinstance(address, int):
        return f":{address}"
    if isinstance(address, str):
        return address
    raise TypeError(
        f"dashboard_address must be a string like ':8787', a port, or None, not {address!r}"
    )


def scheduler_options(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The engine's scheduler options from Dask's ``scheduler_kwargs``;
    what they leave out comes from Dask's configuration
    (``distributed.scheduler.worker-ttl`` and ``.allowed-failures``) when it
    is set there; how long a silent client keeps its locks' and semaphores'
    leases comes from ``distributed.scheduler.locks.lease-timeout`` only,
    and how long until it is removed (its futures released) from
    ``distributed.comm.timeouts.tcp`` only (30 s by default in both).

    Raises
    ------
    TypeError
        For an option shoal's scheduler does not have.

    """
    kwargs = dict(kwargs or {})
    unknown = sorted(set(kwargs) - {"worker_ttl", "allowed_failures"})
    if unknown:
        raise TypeError(
            f"shoal's scheduler has no option {unknown}; it takes worker_ttl and allowed_failures"
        )
    for name, key in (
        ("worker_ttl", "distributed.scheduler.worker-ttl"),
        ("allowed_failures", "distributed.scheduler.allowed-failures"),
    ):
        if name not in kwargs:
            configured = setting(key)
            if configured is not MISSING:
                kwargs[name] = configured
    out: dict[str, Any] = {}
    if "worker_ttl" in kwargs:
        ttl = kwargs["worker_ttl"]
        if isinstance(ttl, str) and ttl.strip().lower() == "none":
            ttl = None
        out["worker_ttl"] = parse_timedelta(ttl)
    if "allowed_failures" in kwargs:
        n = kwargs["allowed_failures"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"allowed_failures must be a number of workers, not {n!r}")
        out["allowed_failures"] = n
    lease = setting("distributed.scheduler.locks.lease-timeout")
    if lease is not MISSING:
        out["lease_timeout"] = parse_timedelta(lease)
    silent = setting("distributed.comm.timeouts.tcp")
    if silent is not MISSING:
        out["client_timeout"] = parse_timedelta(silent)
    return out


class LocalCluster(HostedScheduler):
    """A scheduler (on threads of this process) and worker processes.

    Workers are separate Python processes, forks of a template process that
    first imports the third-party packages this process has imported (new
    interpreters outside Linux, or where such a package started a thread).
    They exit when the cluster closes, when this process dies (even by
    SIGKILL), or when they lose the scheduler; a worker that crashes is
    started again.

    Parameters
    ----------
    n_workers
        Worker processes (default: as Dask, one per core up to 4 cores).
    threads_per_worker
        Executor threads per worker.
    processes
        Run workers as processes (default) or as threads of this process.
    host
        Interface the scheduler listens on (default 127.0.0.1).
    scheduler_port
        Its port (0: any free one).
    start_timeout
        Seconds to wait for the workers to connect.
    env
        Environment variables for the worker processes.
    max_threads
        The most tasks each worker runs at once while they wait on I/O: a
        worker runs ``threads_per_worker`` tasks that compute, and more while
        its running tasks are blocked (on the network, a sleep, a
        subprocess), up to this (default: 16 per core, at most 64). Equal to
        ``threads_per_worker``, it turns the overlap off.
    dashboard_address
        Where the dashboard listens (default ``":8787"``, on the scheduler's
        host; a port that is taken moves on to the next free one). ``None``
        or ``False`` runs no dashboard.
    resources
        Abstract resources each worker offers, like ``{"GPU": 1}`` (see
        :meth:`Client.submit`'s ``resources=``).
    asynchronous
        Start when awaited (``await LocalCluster(asynchronous=True)`` or
        ``async with``), on a thread, so a running event loop is not blocked.
    scheduler_kwargs
        The scheduler's options, by Dask's names: ``worker_ttl`` (a worker
        silent this long — seconds or a string such as ``"30 s"`` — is
        declared dead and its tasks run elsewhere; default ``"5 minutes"``,
        None for never) and ``allowed_failures`` (a task errs with
        :class:`~shoal.KilledWorker` once more workers than this died
        running it; default 3).
    memory_limit
        Memory each worker may use: ``"auto"`` (default: the machine's
        memory split evenly between the workers), a size (``"4GiB"``), a
        fraction of the machine's (``0.25``), or ``None``/``0`` for no limit.
        As in Dask, a worker spills its least recently used results to disk
        above 60 % of it (``distributed.worker.memory.target``), and above
        70 % of it in resident memory (``.spill``); above 80 % it takes no
        new task (``.pause``) and above 95 % it restarts (``.terminate``),
        its tasks running elsewhere. The fractions come from Dask's
        configuration (or ``DASK_DISTRIBUTED__WORKER__MEMORY__*``), or from
        ``memory_target_fraction=``, ``memory_spill_fraction=``,
        ``memory_pause_fraction=`` and ``memory_terminate_fraction=``;
        ``False`` turns a step off. Workers on threads
        (``processes=False``) spill by the target only.
    local_directory
        Where workers spill results and keep uploaded files, in a directory
        of their own under ``shoal-<uid>`` (default: the system's temporary
        directory). Removed when they exit.
    security
        A :class:`~shoal.Security` whose token the cluster requires of every
        client and worker, and whose TLS options (if any) it speaks on every
        connection; ``True`` means ``Security.temporary()`` (TLS with a new
        CA, as in Dask). By default the cluster makes a random token and
        speaks plain TCP. The credentials are passed to the workers on their
        standard input, never on a command line or in their environment, and are in
        ``cluster.security`` for clients in other processes.
    name
        The cluster's name (its repr shows it).
    ip
        Dask's older name for ``host``.
    preload
        Code each worker runs at start, as Dask's: a module name, a ``.py``
        path or Python source text (or a list) defining
        ``dask_setup(worker)`` and/or ``dask_teardown(worker)`` (default:
        Dask's ``distributed.worker.preload`` configuration).
    loop
        An asyncio event loop running in another thread (or a tornado
        ``IOLoop``), passed on to the clients made from this cluster for
        :meth:`Client.sync`.
    silence_logs
        Accepted for Dask compatibility at its default (warnings are shown).

    Examples
    --------
    >>> with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:  # doctest: +SKIP
    ...     client.submit(inc, 1).result()
    2

    """

    def __init__(
        self,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool = True,
        host: str | None = None,
        scheduler_port: int = 0,
        start_timeout: float = 60.0,
        silence_logs: Any = logging.WARN,
        dashboard_address: Any = UNSET,
        memory_limit: Any = "auto",
        asynchronous: bool = False,
        env: dict[str, str] | None = None,
        max_threads: int | None = None,
        resources: dict[str, float] | None = None,
        scheduler_kwargs: dict[str, Any] | None = None,
        security: Any = None,
        local_directory: str | None = None,
        loop: Any = None,
        name: str | None = None,
        ip: str | None = None,
        preload: Any = None,
        **kwargs: Any,
    ):
        if ip is not None:
            if host is not None and host != ip:
                raise ValueError(f"host={host!r} and ip={ip!r} disagree: give host only")
            host = ip  # Dask's older name
        #: The cluster's name, shown in its repr.
        self.name = name if name is not None else f"LocalCluster-{os.getpid()}"
        #: The event loop given as ``loop=``, which a client of this cluster
        #: runs ``Client.sync`` coroutines on.
        aio.as_event_loop(loop)  # checked here
        self.loop = loop
        dashboard = dashboard_spec(dashboard_address)
        given_fractions = {
            step: kwargs.pop(f"memory_{step}_fraction")
            for step in memory_.DEFAULTS
            if f"memory_{step}_fraction" in kwargs
        }
        arguments.reject(
            "silence_logs", silence_logs, unused=(None, False, logging.WARN, "warning", "WARN")
        )
        known = {
            "worker_class",
            "interface",
            "protocol",
            "worker_dashboard_address",
        }
        unknown = set(kwargs) - known
        if unknown:
            raise TypeError(f"LocalCluster got unexpected keyword arguments {sorted(unknown)}")
        for name, value in kwargs.items():
            arguments.reject(name, value)
        if n_workers is not None and n_workers < 0:
            raise ValueError("n_workers must be zero or more")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ValueError("threads_per_worker must be at least 1")
        self.n_workers, self.threads_per_worker = _defaults(
            n_workers, threads_per_worker, processes
        )
        self.worker_options = WorkerOptions.parse(
            nthreads=self.threads_per_worker,
            max_threads=max_threads,
            memory_limit=memory_limit,
            n_workers=self.n_workers,
            resources=resources,
            local_directory=local_directory,
            preload=preload,
            **given_fractions,
        )
        # Every worker here keeps its files under one per-user directory:
        # refuse one that is not this user's alone before starting any.
        private_root(self.worker_options.local_directory)
        self.processes = processes
        self.status = "starting"
        self._pool: Any = None
        self._threads: list[Any] = []
        self._monitor: Session | None = None
        self.security = security_.cluster_credentials(security)
        self._scheduler = _engine.Scheduler(
            _engine.SchedulerConfig(
                host or "127.0.0.1",
                scheduler_port,
                dashboard,
                token=self.security.token,
                tls=self.security.tls_for("scheduler"),
                **scheduler_options(scheduler_kwargs),
            )
        )
        security_.remember(self._scheduler.address, self.security)
        self._asynchronous = bool(asynchronous)
        self._pending_start: Any = None
        if self._asynchronous:
            # Starting workers blocks: it happens on a thread when awaited.
            self._pending_start = lambda: self._start(env, start_timeout)
            return
        self._start(env, start_timeout)

    @property
    def asynchronous(self) -> bool:
        """Whether it was made with ``asynchronous=True`` (to be awaited)."""
        return self._asynchronous

    def __await__(self) -> Any:
        return self._astart().__await__()

    async def _astart(self) -> LocalCluster:
        start, self._pending_start = self._pending_start, None
        if start is not None:
            await aio.offload(start)
        return self

    async def __aenter__(self) -> LocalCluster:
        return await self._astart()

    async def __aexit__(self, *exc: Any) -> None:
        await aio.offload(self.close)

    def _start(self, env: dict[str, str] | None, start_timeout: float) -> None:
        try:
            self._launch(env or {})
            self._monitor = Session(self.scheduler_address, 10.0, "cluster-monitor", self.security)
            if not self._monitor.wait_for_workers(self.n_workers, start_timeout):
                raise TimeoutError(
                    f"{self.n_workers} workers did not start within {start_timeout} s; "
                    "see their output above"
                )
        except BaseException:
            self.close()
            raise
        self.status = "running"

    def _launch(self, env: dict[str, str]) -> None:
        """Start the first ``n_workers``: the pool of worker processes (or
        workers on threads), which ``scale`` grows later.
        """
        if not self.processes:
            self._start_workers(self.n_workers)
            return
        argv = [self.scheduler_address, *self.worker_options.arguments(), "--lifeline"]
        full_env = {"SHOAL_SYS_PATH": os.pathsep.join(p for p in sys.path if p)}
        # Workers see this process's dask configuration, as Dask's do, and
        # start with Dask's pre-spawn environment (OMP_NUM_THREADS=1, ...).
        full_env.update(dask_config.inherited_config())
        full_env.update(pre_spawn_environ())
        full_env.update({str(k): str(v) for k, v in env.items()})
        line, options = security_.worker_stdin(self.security)
        argv += options
        # Workers are forks of a template that imported what this process
        # has: warm from their first task, and quick to start again.
        self._pool = _engine.WorkerPool(
            self.n_workers,
            sys.executable,
            ["-m", "shoal.worker", *argv],
            list(full_env.items()),
            stdin_line=line,
            template=template.arguments(argv, third_party_packages()),
        )

    def _start_workers(self, n: int) -> None:
        if self.processes:
            self._pool.add(n)
            return
        first = len(self._threads)
        for i in range(first, first + n):
            self._threads.append(
                start_in_process(self.scheduler_address, self.worker_options, str(i), self.security)
            )

    def _prepare_stop(self, workers: list[Any]) -> Any:
        if self.processes:
            # Not started again when the scheduler closes them.
            return self._pool.retire([w.info.pid for w in workers]), workers
        return None, workers

    def _stop_workers(self, token: Any, retired: list[str]) -> None:
        marked, workers = token
        gone = {_engine.strip_scheme(a) for a in retired}
        if self.processes:
            kept = [w.info.pid for w in workers if _engine.strip_scheme(w.info.address) not in gone]
            self._pool.unretire([p for p in kept if p in marked])
            return
        closing = [rt for rt in self._threads if _engine.strip_scheme(rt.address) in gone]
        self._threads = [rt for rt in self._threads if rt not in closing]
        for rt in closing:
            rt.wait_closed()

    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (empty with ``processes=False``)."""
        return [] if self._pool is None else list(self._pool.pids())

    @property
    def restarts(self) -> int:
        """How many worker processes were started again after dying."""
        return 0 if self._pool is None else self._pool.restarts

    def close(self, timeout: float | None = None) -> None:
        """Stop the scheduler and every worker; wait for the processes to exit."""
        if self.status == "closed":
            return
        self.status = "closed"
        self.stop_adapting()
        if self._pool is not None:
            # Stop restarting before the workers are told to go.
            self._pool.stop_restarting()
        if self._monitor is not None:
            self._monitor.close()
        self._scheduler.stop()
        security_.forget(self.scheduler_address)
        if self._pool is not None:
            pids = self.worker_pids()
            self._pool.close(2.0 if timeout is None else float(timeout))
            remove_directories_of(pids, user_root(self.worker_options.local_directory))
        for rt in self._threads:
            rt.close()
            rt.wait_closed()
