"""``MemorySampler``: the cluster's memory over time while code runs, as
Dask's ``distributed.diagnostics.MemorySampler``.

A thread asks the scheduler every ``interval`` seconds (its view is what
the workers' health reports said last, every half second) and sums the
measure over the workers.
"""

from __future__ import annotations

import threading
import time
from typing import Any

#: What ``measure=`` may be, and where each is in a worker's metrics.
MEASURES = ("process", "managed", "unmanaged", "spilled")


def _total(info: dict[str, Any], measure: str) -> int:
    total = 0
    for worker in info.get("workers", {}).values():
        metrics = worker.get("metrics", {})
        if measure == "process":
            total += int(metrics.get("memory", 0))
        elif measure == "managed":
            total += int(metrics.get("managed_bytes", 0))
        elif measure == "unmanaged":
            total += int(metrics.get("unmanaged_bytes", 0))
        else:
            total += int(metrics.get("spilled_bytes", {}).get("disk", 0))
    return total


class _Sampling:
    """One ``sample()`` block: a thread that records until the block ends."""

    def __init__(
        self, samples: list[tuple[float, int]], client: Any, measure: str, interval: float
    ):
        self.samples = samples
        self.client = client
        self.measure = measure
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), _total(self.client.scheduler_info(), self.measure)))
            if self._stop.wait(self.interval):
                break
        # one last sample: the block's end
        self.samples.append((time.time(), _total(self.client.scheduler_info(), self.measure)))

    def __enter__(self) -> _Sampling:
        self._thread = threading.Thread(target=self._run, name="shoal-memory-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    async def __aenter__(self) -> _Sampling:
        return self.__enter__()

    async def __aexit__(self, *exc: Any) -> None:
        from ..core import aio

        self._stop.set()
        if self._thread is not None:
            await aio.offload(self._thread.join)


class MemorySampler:
    """Sample the cluster's memory while blocks of code run.

    Examples
    --------
    >>> ms = MemorySampler()  # doctest: +SKIP
    >>> with ms.sample("with spilling"):  # doctest: +SKIP
    ...     df.persist()
    >>> ms.to_pandas()  # doctest: +SKIP

    """

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[float, int]]] = {}

    def sample(
        self,
        label: str | None = None,
        *,
        client: Any = None,
        measure: str = "process",
        interval: float = 0.5,
    ) -> _Sampling:
        """A context manager (``with``, or ``async with`` on an asynchronous
        client) that samples while its block runs.

        Parameters
        ----------
        label
            The name of the series (default: ``"Samples"``, numbered when
            used again).
        client
            The client to ask (default: the default client).
        measure
            ``"process"`` (the workers' resident memory, default),
            ``"managed"`` (the results they hold), ``"unmanaged"`` or
            ``"spilled"`` (bytes on disk).
        interval
            Seconds between samples.

        Returns
        -------
        A context manager.

        Raises
        ------
        ValueError
            For another ``measure``, or a label used already.

        """
        from ..core import context

        if measure not in MEASURES:
            raise ValueError(f"measure must be one of {MEASURES}, not {measure!r}")
        if label is None:
            label = f"Samples-{len(self.samples)}" if self.samples else "Samples"
        if label in self.samples:
            raise ValueError(f"the label {label!r} was sampled already")
        if not interval > 0:
            raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
        self.samples[label] = []
        return _Sampling(self.samples[label], context.client_here(client), measure, interval)

    def to_pandas(self, *, align: bool = False) -> Any:
        """The samples as a pandas DataFrame: a column per label, bytes, by
        time (with ``align``: by time since each block began).
        """
        import pandas as pd

        series = {}
        for label, samples in self.samples.items():
            if not samples:
                continue
            times, values = zip(*samples)
            if align:
                index = pd.to_timedelta([t - times[0] for t in times], unit="s")
            else:
                index = pd.to_datetime(times, unit="s")
            series[label] = pd.Series(values, index=index)
        return pd.DataFrame(series)

    def plot(self, *, align: bool = False, **kwargs: Any) -> Any:
        """Plot the samples in GiB (pandas' ``plot``, with matplotlib)."""
        df = self.to_pandas(align=align) / 2**30
        kwargs.setdefault("ylabel", "Cluster memory (GiB)")
        kwargs.setdefault("xlabel", "time")
        return df.plot(**kwargs)
