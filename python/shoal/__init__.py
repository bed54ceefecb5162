"""shoal: a parallel task engine for Python, with Dask's futures API and an engine in Rust.

Start a cluster on this machine and run functions on it::

    from shoal import Client
    client = Client()                   # a scheduler and one worker per core
    futures = client.map(inc, range(8)) # runs in parallel
    client.gather(futures)

or build a lazy graph and compute it::

    from shoal import delayed, compute
    total = sum(delayed(inc)(x) for x in range(8))
    total.compute()

The package is layered; each layer imports only the ones below it:

* ``shoal.core``: the engine handle (``Session``), task specs, keys, graph
  submission, serialization, errors, the default-client registry;
* ``shoal.futures``, ``shoal.completion``: ``Future``, ``as_completed``, ``wait``;
* ``shoal.dask``: dask graphs on shoal and shoal objects in dask;
* ``shoal.delayed``: ``delayed``, ``compute``, ``persist``;
* ``shoal.diagnostics``: ``progress``, ``get_task_stream``, ``performance_report``;
* ``shoal.coordination``: ``Queue``, ``Variable``, ``Lock``, ``Semaphore``,
  ``MultiLock``, ``Event``, ``Pub``/``Sub``, held by the scheduler;
* ``shoal.worker``, ``shoal.deploy``: the worker process (and, for tasks,
  ``get_worker``, ``secede``, ``rejoin``, ``worker_client``) and ``LocalCluster``;
* ``shoal.actor``: ``Actor`` handles on objects living on workers;
* ``shoal.client``: ``Client``; ``shoal.cli``: the ``shoal`` command.
"""

from concurrent.futures import CancelledError

from .actor import Actor, ActorFuture
from .client import Client, default_client, fire_and_forget, get_client
from .completion import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    DoneAndNotDoneFutures,
    as_completed,
    futures_of,
    wait,
)
from .coordination import Event, Lock, MultiLock, Pub, Queue, Semaphore, Sub, Variable
from .core.errors import ClosedClientError, FutureCancelledError, KilledWorker, Reschedule
from .core.security import Security
from .delayed import Delayed, compute, delayed, persist
from .deploy.local import LocalCluster
from .diagnostics import get_task_stream, performance_report, progress
from .futures import BaseActorFuture, Future
from .joblib_backend import install as _install_joblib_backend
from .worker.plugins import (
    Environ,
    NannyPlugin,
    PipInstall,
    SchedulerPlugin,
    UploadDirectory,
    WorkerPlugin,
)
from .worker.task_context import (
    get_current_task,
    get_worker,
    local_client,
    rejoin,
    secede,
    worker_client,
)
from .worker.task_output import print, warn  # noqa: A004 (Dask's names)

__version__ = "0.1.0"

#: What shoal's calls raise when their ``timeout=`` passes (Dask's name for
#: the built-in ``TimeoutError``).
TimeoutError = TimeoutError  # noqa: A001, PLW0127 (re-exported under Dask's name)


def __getattr__(name: str) -> object:
    # Imported on first use: they pull in modules a local cluster never needs.
    if name == "SSHCluster":
        from .deploy.ssh import SSHCluster

        return SSHCluster
    if name == "SLURMCluster":
        from .deploy.slurm import SLURMCluster

        return SLURMCluster
    raise AttributeError(f"module 'shoal' has no attribute {name!r}")


_install_joblib_backend()

__all__ = [
    "Reschedule",
    "local_client",
    "BaseActorFuture",
    "CancelledError",
    "TimeoutError",
    "WorkerPlugin",
    "UploadDirectory",
    "SchedulerPlugin",
    "PipInstall",
    "NannyPlugin",
    "Environ",
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Actor",
    "ActorFuture",
    "Client",
    "ClosedClientError",
    "Delayed",
    "DoneAndNotDoneFutures",
    "Event",
    "Future",
    "FutureCancelledError",
    "KilledWorker",
    "LocalCluster",
    "Lock",
    "MultiLock",
    "Pub",
    "Queue",
    "SLURMCluster",
    "SSHCluster",
    "Security",
    "Semaphore",
    "Sub",
    "Variable",
    "as_completed",
    "compute",
    "default_client",
    "delayed",
    "fire_and_forget",
    "futures_of",
    "get_client",
    "get_current_task",
    "get_task_stream",
    "get_worker",
    "performance_report",
    "persist",
    "print",
    "progress",
    "rejoin",
    "secede",
    "wait",
    "warn",
    "worker_client",
]
