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
"""

from ._completion import (
    ALL_COMPLETED,
    FIRST_COMPLETED,
    FIRST_EXCEPTION,
    DoneAndNotDoneFutures,
    as_completed,
    wait,
)
from ._delayed import Delayed, delayed
from ._future import Future
from ._graph import compute, persist
from .client import Client, default_client, get_client
from .cluster import LocalCluster
from .errors import FutureCancelledError, KilledWorker

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
    "persist",
    "wait",
]
