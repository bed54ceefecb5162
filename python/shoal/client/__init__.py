"""The Client, split by what it does: ``client`` (connecting, closing,
reprs), ``submit`` (tasks and results), ``collections`` (Delayed objects and
dask collections), ``workers`` (calls about the workers), ``recreate``
(running a task again here) and ``datasets`` (published datasets).
"""

from .client import Client, default_client, get_client
from .workers import fire_and_forget

__all__ = ["Client", "default_client", "get_client", "fire_and_forget"]
