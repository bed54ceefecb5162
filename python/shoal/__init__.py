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
* ``shoal.worker``, ``shoal.deploy``: the worker process and ``LocalCluster``;
* ``shoal.client``: ``Client``; ``shoal.cli``: the ``shoal`` command.
"""

from .client import Client, default_client, get_client
from .completion import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    DoneAndNotDoneFutures,
    as_completed,
    wait,
)
from .core.errors import FutureCancelledError, KilledWorker
from .delayed import Delayed, compute, delayed, persist
from .deploy.local import LocalCluster
from .diagnostics import get_task_stream, performance_report, progress
from .futures import Future

__version__ = "0.1.0"

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    "Client",
    "Delayed",
    "DoneAndNotDoneFutures",
    "Future",
    "FutureCancelledError",
    "KilledWorker",
    "LocalCluster",
    "as_completed",
    "compute",
    "default_client",
    "delayed",
    "get_client",
    "get_task_stream",
    "performance_report",
    "persist",
    "progress",
    "wait",
]
