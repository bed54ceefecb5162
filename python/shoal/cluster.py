"""LocalCluster: a scheduler and workers on this machine."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from . import _engine


def format_bytes(n: int) -> str:
    """Human-readable size, e.g. ``'23.47 GiB'``."""
    for unit, size in (
        ("PiB", 2**50),
        ("TiB", 2**40),
        ("GiB", 2**30),
        ("MiB", 2**20),
        ("kiB", 2**10),
    ):
        if n >= size * 0.9:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _processes_and_threads(cpus: int) -> tuple[int, int]:
    """Split ``cpus`` into worker processes and threads as Dask does.

    One thread per process up to 4 cores, then about sqrt(cpus) processes.
    """
    if cpus <= 4:
        return cpus, 1
    processes = min(f for f in range(1, cpus + 1) if cpus % f == 0 and f >= math.sqrt(cpus))
    return processes, cpus // processes


def _defaults(
    n_workers: int | None, threads_per_worker: int | None, processes: bool
) -> tuple[int, int]:
    cpus = os.cpu_count() or 1
    if n_workers is None and threads_per_worker is None:
        if not processes:
            return 1, cpus
        return _processes_and_threads(cpus)
    if n_workers is None:
        assert threads_per_worker is not None
        return max(1, cpus // threads_per_worker), threads_per_worker
    if threads_per_worker is None:
        return n_workers, max(1, cpus // max(n_workers, 1))
    return n_workers, threads_per_worker


class LocalCluster:
    """A scheduler (on threads of this process) and worker processes.

    Workers are separate Python processes started with spawn+exec. They exit
    when the cluster closes, when this process dies (even by SIGKILL), or
    when they lose the scheduler; a worker that crashes is started again.
    With ``processes=False`` the workers run on threads of this process.
    """

    def __init__(
        self,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool = True,
        host: str | None = None,
        scheduler_port: int = 0,
        start_timeout: float = 60.0,
        silence_logs: Any = None,
        dashboard_address: Any = None,
        memory_limit: Any = None,
        asynchronous: bool = False,
        **kwargs: Any,
    ):
        if asynchronous:
            raise NotImplementedError("asynchronous clusters are not supported")
        unknown = set(kwargs) - {
            "worker_class",
            "interface",
            "protocol",
            "security",
            "worker_dashboard_address",
            "resources",
            "env",
            "local_directory",
        }
        if unknown:
            raise TypeError(f"LocalCluster got unexpected keyword arguments {sorted(unknown)}")
        if n_workers is not None and n_workers < 0:
            raise ValueError("n_workers must be zero or more")
        if threads_per_worker is not None and threads_per_worker < 1:
            raise ValueError("threads_per_worker must be at least 1")
        self.n_workers, self.threads_per_worker = _defaults(
            n_workers, threads_per_worker, processes
        )
        self.memory_limit = self._memory_limit(memory_limit)
        self.processes = processes
        self.status = "starting"
        self._pool: Any = None
        self._threads: list[Any] = []
        self._monitor: Any = None
        self._scheduler = _engine.Scheduler(host or "127.0.0.1", scheduler_port)
        try:
            self._start_workers(kwargs.get("env") or {})
            self._monitor = _engine.ClientCore(self.scheduler_address, 10.0, "cluster-monitor")
            if not self._monitor.wait_for_workers(self.n_workers, start_timeout):
                raise TimeoutError(
                    f"{self.n_workers} workers did not start within {start_timeout} s; "
                    "see their output above"
                )
        except BaseException:
            self.close()
            raise
        self.status = "running"

    def _memory_limit(self, memory_limit: Any) -> int:
        """Per-worker memory: the machine's split evenly, as Dask does."""
        from .worker import parse_bytes

        if memory_limit in (None, "auto", 0):
            return _engine.total_memory() // max(self.n_workers, 1)
        return parse_bytes(memory_limit)

    def _start_workers(self, env: dict[str, str]) -> None:
        if self.n_workers == 0:
            return
        if not self.processes:
            from .worker import start_in_process

            self._threads = [
                start_in_process(
                    self.scheduler_address, self.threads_per_worker, str(i), self.memory_limit
                )
                for i in range(self.n_workers)
            ]
            return
        args = [
            "-m",
            "shoal.worker",
            self.scheduler_address,
            "--nthreads",
            str(self.threads_per_worker),
            "--memory-limit",
            str(self.memory_limit),
            "--lifeline",
        ]
        full_env = {"SHOAL_SYS_PATH": os.pathsep.join(p for p in sys.path if p)}
        full_env.update({str(k): str(v) for k, v in env.items()})
        self._pool = _engine.WorkerPool(
            self.n_workers, sys.executable, args, list(full_env.items())
        )

    @property
    def scheduler_address(self) -> str:
        """Where clients and workers connect, ``tcp://host:port``."""
        return self._scheduler.address

    @property
    def workers(self) -> dict[str, dict[str, Any]]:
        """The connected workers, keyed by address."""
        if self._monitor is None:
            return {}
        return {w["address"]: w for w in self._monitor.workers()}

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
        if self._pool is not None:
            # Stop restarting before the workers are told to go.
            self._pool.stop_restarting()
        if self._monitor is not None:
            self._monitor.close()
        self._scheduler.stop()
        if self._pool is not None:
            self._pool.close(2.0 if timeout is None else float(timeout))
        for rt in self._threads:
            rt.close()
            rt.wait_closed()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        workers = self.workers
        threads = sum(w["nthreads"] for w in workers.values())
        memory = sum(w["memory"] for w in workers.values())
        return (
            f"LocalCluster({self.scheduler_address!r}, workers={len(workers)}, "
            f"threads={threads}, memory={format_bytes(memory)})"
        )
