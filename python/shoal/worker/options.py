"""A worker's options: parsed and checked once, passed to a worker process
one way (:meth:`WorkerOptions.arguments`, the ``shoal worker`` command
line), and turned into the engine's runtime in one place
(:meth:`WorkerOptions.start_runtime`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from typing import Any

from .. import _engine
from ..core import memory as memory_
from ..core.options import resource_amounts
from ..core.settings import setting
from ..core.spec import parse_resources

#: Dask's default ``distributed.nanny.pre-spawn-environ``: one thread per
#: worker process for BLAS and OpenMP (the worker's own threads are the
#: parallelism), and glibc returning freed memory sooner (the worker then
#: sets how; see the engine's ``shoal_worker::allocator``); and Arrow
#: allocating through glibc too, so that one policy governs a task's memory.
PRE_SPAWN_DEFAULT = {
    "MALLOC_TRIM_THRESHOLD_": 65536,
    "ARROW_DEFAULT_MEMORY_POOL": "system",
    "OMP_NUM_THREADS": 1,
    "MKL_NUM_THREADS": 1,
    "OPENBLAS_NUM_THREADS": 1,
}


def pre_spawn_environ() -> dict[str, str]:
    """The environment a worker process starts with, from Dask's
    ``distributed.nanny.pre-spawn-environ`` (its default keeps BLAS from
    running a thread per core in every worker).

    Raises
    ------
    TypeError
        If the configured value is not a mapping.

    """
    value = setting("distributed.nanny.pre-spawn-environ", PRE_SPAWN_DEFAULT)
    if not isinstance(value, dict):
        raise TypeError(
            f"distributed.nanny.pre-spawn-environ must be a mapping of variables, not {value!r}"
        )
    return {str(k): str(v) for k, v in value.items()}


def extend_sys_path() -> None:
    """Make the modules the client could import importable here too."""
    extra = os.environ.get("SHOAL_SYS_PATH")
    if not extra:
        return
    for p in extra.split(os.pathsep):
        if p and p not in sys.path:
            sys.path.append(p)


def processes_and_threads(cpus: int) -> tuple[int, int]:
    """Split ``cpus`` into worker processes and threads as Dask does: one
    thread per process up to 4 cores, then about sqrt(cpus) processes.
    """
    if cpus <= 4:
        return cpus, 1
    processes = min(f for f in range(1, cpus + 1) if cpus % f == 0 and f >= math.sqrt(cpus))
    return processes, cpus // processes


def default_max_threads(nthreads: int) -> int:
    """How many tasks a worker may run at once while they wait on I/O, by
    default: 16 per core of the machine, at most 64, never below ``nthreads``.
    """
    return max(nthreads, min(64, 16 * (os.cpu_count() or 1)))


@dataclasses.dataclass(frozen=True)
class WorkerOptions:
    """What a worker is started with, checked.

    ``memory_limit`` is bytes (0: none); ``fractions`` the target, spill,
    pause and terminate fractions of it (None: that step is off).
    """

    nthreads: int = 1
    max_threads: int = 16
    memory_limit: int = 0
    fractions: memory_.Fractions = (None, None, None, None)
    resources: tuple[tuple[str, float], ...] = ()
    local_directory: str | None = None
    #: Preloads (modules, ``.py`` paths or source text) each worker runs.
    preload: tuple[str, ...] = ()

    @classmethod
    def parse(
        cls,
        nthreads: int = 1,
        max_threads: int | None = None,
        memory_limit: Any = "auto",
        n_workers: int = 1,
        resources: Any = None,
        local_directory: Any = None,
        preload: Any = None,
        **fractions: Any,
    ) -> WorkerOptions:
        """The options of each of ``n_workers`` workers, from Dask's
        arguments: ``memory_limit`` a size (``"4GiB"``, bytes), a fraction
        of the machine's, ``"auto"`` (the machine's, shared) or 0;
        ``resources`` a dict or ``"GPU=2,MEM=10e9"``; ``preload`` a
        preload or a list of them (default: Dask's
        ``distributed.worker.preload``); ``fractions`` the memory steps by
        name (``target=0.6``, ``pause=False``; Dask's configuration for the
        rest).

        Raises
        ------
        ValueError, TypeError
            For a value that cannot be that option, saying which.

        """
        if isinstance(nthreads, bool) or not isinstance(nthreads, int) or nthreads < 1:
            raise ValueError(f"nthreads must be at least 1, not {nthreads!r}")
        if max_threads is None:
            max_threads = default_max_threads(nthreads)
        elif max_threads < nthreads:
            raise ValueError(
                f"max_threads ({max_threads}) must be at least the threads ({nthreads})"
            )
        limit = memory_.parse_memory_limit(memory_limit, n_workers, _engine.total_memory())
        if isinstance(resources, str):
            amounts = parse_resources(resources)
        else:
            amounts = resource_amounts(resources)
        if preload is None:
            preload = setting("distributed.worker.preload", [])
        preloads = (preload,) if isinstance(preload, str) else tuple(preload or ())
        if not all(isinstance(p, str) for p in preloads):
            raise TypeError(f"preload takes modules, .py paths or source text, not {preload!r}")
        return cls(
            nthreads=nthreads,
            max_threads=max_threads,
            memory_limit=limit,
            fractions=memory_.fractions(**fractions),
            resources=tuple(amounts),
            local_directory=None if local_directory is None else os.fspath(local_directory),
            preload=preloads,
        )

    def arguments(self) -> list[str]:
        """These options as ``shoal worker`` command-line options."""
        args = [
            "--nthreads",
            str(self.nthreads),
            "--max-threads",
            str(self.max_threads),
            "--memory-limit",
            str(self.memory_limit),
            *memory_.fraction_arguments(self.fractions),
        ]
        if self.local_directory is not None:
            args += ["--local-directory", self.local_directory]
        if self.resources:
            args += ["--resources", ",".join(f"{k}={v!r}" for k, v in self.resources)]
        for p in self.preload:
            args += ["--preload", p]
        return args

    def start_runtime(
        self,
        scheduler: str,
        spill_root: str,
        *,
        name: str | None = None,
        listen_host: str | None = None,
        listen_ports: tuple[int, int] = (0, 0),
        timeout: float = 10.0,
        token: str | None = None,
        tls: Any = None,
        whole_process: bool = False,
        kill_on_leave: bool = False,
    ) -> _engine.WorkerRuntime:
        """Start the engine's worker runtime with these options: the one
        place it is made. ``whole_process``: the process is this worker's
        alone, so its memory may pause or restart it; ``kill_on_leave``: a
        restart for memory ends the process (a supervisor starts it again).
        """
        return _engine.WorkerRuntime(
            scheduler,
            nthreads=self.nthreads,
            name=name,
            listen_host=listen_host,
            listen_ports=listen_ports,
            timeout=timeout,
            memory_limit=self.memory_limit,
            max_threads=self.max_threads,
            resources=list(self.resources),
            token=token,
            tls=tls,
            fractions=self.fractions,
            spill_root=spill_root,
            whole_process=whole_process,
            kill_on_leave=kill_on_leave,
        )
