"""The task stream from Python: ``get_task_stream`` and ``performance_report``."""

from __future__ import annotations

import time
from typing import Any

from ..core import arguments, context
from ..core.times import parse_timedelta
from .report import write_report

#: More records than the scheduler keeps, and a position past any end.
_ALL = (1 << 32) - 1
_PAST_THE_END = (1 << 64) - 1


def stream_position(session: Any) -> int:
    """Where the scheduler's task stream ends now."""
    _, end = session.task_stream(_PAST_THE_END, 0)
    return int(end)


def records_since(session: Any, position: int) -> list[dict[str, Any]]:
    """Every task that ran since ``position`` that the scheduler still keeps."""
    records, _ = session.task_stream(position, _ALL)
    return list(records)


def _when(value: Any, now: float) -> float | None:
    """A time bound: seconds since the epoch, or a duration before now."""
    if value is None:
        return None
    if isinstance(value, str):
        ago = parse_timedelta(value)
        assert ago is not None
        return now - ago
    return float(value)


def select(
    records: list[dict[str, Any]], start: Any = None, stop: Any = None, count: int | None = None
) -> list[dict[str, Any]]:
    """The records that started after ``start``, stopped before ``stop``,
    and the newest ``count`` of those.
    """
    now = time.time()
    lo, hi = _when(start, now), _when(stop, now)
    out = [
        r
        for r in records
        if (lo is None or r["startstops"][0]["start"] >= lo)
        and (hi is None or r["startstops"][0]["stop"] <= hi)
    ]
    if count is not None:
        if count < 0:
            raise ValueError(f"count must be 0 or more, not {count}")
        out = out[len(out) - count :] if count else []
    return out


def check_plot(plot: Any, bokeh_resources: Any) -> None:
    """Refuse what shoal cannot draw: Bokeh figures and their resources."""
    arguments.reject("bokeh_resources", bokeh_resources)
    if plot is True:
        raise NotImplementedError(
            "shoal does not make Bokeh figures: use plot='save' to write the task "
            "stream to an HTML file (filename=...), or plot=False for the records"
        )
    if plot not in (False, "save"):
        raise ValueError(f"plot must be False or 'save', not {plot!r}")


def _caller_source(depth: int) -> str:
    """The source of the code ``depth`` frames up (its function, or its
    file if it is a module), or "" where it cannot be found.
    """
    import inspect

    frame = inspect.currentframe()
    try:
        for _ in range(depth + 1):
            if frame is None:
                return ""
            frame = frame.f_back
        if frame is None:
            return ""
        try:
            return inspect.getsource(frame)
        except (OSError, TypeError):
            return ""
    finally:
        del frame


class get_task_stream:
    """Record the tasks that run inside a ``with`` block.

    Parameters
    ----------
    client
        The client to use (default: the default client).
    bokeh_resources
        Not supported (shoal draws no Bokeh figures): leave it None.
    plot
        ``'save'`` writes the block's task stream to ``filename`` as a
        self-contained HTML page when the block ends.
    filename
        Where ``plot='save'`` writes.

    Examples
    --------
    >>> with get_task_stream() as ts:  # doctest: +SKIP
    ...     x.compute()
    >>> ts.data  # doctest: +SKIP
    [{'key': 'inc-...', 'worker': 'tcp://...', 'startstops': (...), 'status': 'OK', ...}]

    """

    def __init__(
        self,
        client: Any = None,
        plot: Any = False,
        filename: str = "task-stream.html",
        bokeh_resources: Any = None,
    ):
        check_plot(plot, bokeh_resources)
        self.client = client
        self.plot = plot
        self.filename = filename
        self.data: list[dict[str, Any]] = []
        self.path: str | None = None

    def __enter__(self) -> get_task_stream:
        self._client = context.default_client(self.client)
        self.start = time.time()
        self._position = stream_position(self._client._session)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.data[:] = records_since(self._client._session, self._position)
        if self.plot == "save":
            self.path = write_report(
                self.filename, self.data, self.start, time.time(), "task stream"
            )


class performance_report:
    """Write a self-contained HTML report of what ran inside a ``with`` block:
    its task stream and a summary per function.

    Parameters
    ----------
    filename
        Where to write (default ``dask-report.html``, as Dask).
    stacklevel
        Whose code the report shows: 1 is the code around the ``with``
        statement, 2 its caller, and so on.
    mode, storage_options
        Not supported: leave them None.
    client
        The client to use (default: the default client).

    Examples
    --------
    >>> with performance_report(filename="report.html"):  # doctest: +SKIP
    ...     client.gather(client.map(scrape, pages))

    """

    def __init__(
        self,
        filename: str = "dask-report.html",
        stacklevel: int = 1,
        mode: Any = None,
        storage_options: Any = None,
        client: Any = None,
    ):
        arguments.reject("mode", mode)
        arguments.reject("storage_options", storage_options)
        if not isinstance(stacklevel, int) or stacklevel < 1:
            raise ValueError(f"stacklevel must be 1 or more, not {stacklevel!r}")
        self.filename = filename
        self.stacklevel = stacklevel
        self.client = client
        self.path: str | None = None
        self.code = ""

    def __enter__(self) -> performance_report:
        self.code = _caller_source(self.stacklevel)
        self._stream = get_task_stream(self.client).__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stream.__exit__(*exc)
        self.path = write_report(
            self.filename,
            self._stream.data,
            self._stream.start,
            time.time(),
            "performance report",
            self.code,
        )
