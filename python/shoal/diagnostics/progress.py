"""``progress``: a live progress bar for futures, in a terminal or Jupyter."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, TextIO

from .. import _engine
from ..completion import as_completed, futures_of
from ..core.times import parse_timedelta
from ..futures import Future


class _Tally:
    """Counts of finished futures per group, filled by a background thread."""

    def __init__(self, futures: list[Future]):
        self.total: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.erred = 0
        self.lock = threading.Lock()
        self.finished = threading.Event()
        for f in futures:
            name = _engine.key_prefix(f._key)
            self.total[name] = self.total.get(name, 0) + 1
            self.done.setdefault(name, 0)
        self.started = time.monotonic()
        self._thread = threading.Thread(
            target=self._follow, args=(futures,), name="shoal-progress", daemon=True
        )
        self._thread.start()

    def _follow(self, futures: list[Future]) -> None:
        try:
            for f in as_completed(futures):
                with self.lock:
                    self.done[_engine.key_prefix(f._key)] += 1
                    if f.status == "error":
                        self.erred += 1
        finally:
            self.finished.set()

    def counts(self) -> tuple[int, int, int]:
        with self.lock:
            return sum(self.done.values()), sum(self.total.values()), self.erred


def _line(done: int, total: int, erred: int, elapsed: float, width: int) -> str:
    frac = 1.0 if total == 0 else done / total
    filled = int(round(width * frac))
    rate = done / elapsed if elapsed > 0 else 0.0
    text = (
        f"[{'#' * filled}{' ' * (width - filled)}] | {100 * frac:3.0f}% Completed | "
        f"{done}/{total} tasks | {rate:,.1f} tasks/s | {elapsed:5.1f}s"
    )
    if erred:
        text += f" | {erred} erred"
    return text


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()  # type: ignore[attr-defined]
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress(
    *futures: Any,
    notebook: bool | None = None,
    multi: bool = True,
    complete: bool = True,
    group_by: str = "prefix",
    interval: Any = "100ms",
    width: int = 40,
    file: TextIO | None = None,
) -> Any:
    """Show the progress of futures as they finish.

    In a terminal it draws one line, updated in place, with the share done,
    counts, the rate and the time taken, and returns once every future is
    done. In a Jupyter notebook it returns a live widget at once, with one
    bar per function when ``multi`` (``pip install "shoal[notebook]"`` adds
    the ``ipywidgets`` it needs).

    Parameters
    ----------
    *futures
        Futures, persisted ``Delayed`` objects, or collections of them.
    notebook
        Draw a widget (True) or a text line (False); default: a widget inside
        a Jupyter kernel.
    multi
        In a notebook, one bar per function name (True) or one bar (False).
        The terminal line is always one bar.
    complete
        Count every future (True), or only those not yet done when called.
    group_by
        How bars are grouped with ``multi``: ``"prefix"`` (the function name).
    interval
        Time between redraws (a number of seconds or a string like ``"100ms"``).
    width
        Characters in the terminal bar.
    file
        Where the terminal line goes (default standard output). Off a
        terminal, only the final line is written.

    Returns
    -------
    None in a terminal; the widget in a notebook.

    Examples
    --------
    >>> futures = client.map(slow, range(100))  # doctest: +SKIP
    >>> progress(futures, width=10)  # doctest: +SKIP
    [##########] | 100% Completed | 100/100 tasks | 48.7 tasks/s |   2.1s

    """
    if group_by != "prefix":
        raise NotImplementedError(
            f"shoal does not support group_by={group_by!r} yet: bars are grouped by "
            "function name (group_by='prefix')"
        )
    every = parse_timedelta(interval)
    if every is None or every <= 0:
        raise ValueError(f"interval must be a positive duration, not {interval!r}")
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive whole number, not {width!r}")
    found = futures_of(list(futures))
    if not complete:
        found = [f for f in found if not f.done()]
    if notebook is None:
        notebook = _in_notebook()
    tally = _Tally(found)
    if notebook:
        from .widget import progress_widget

        return progress_widget(tally, multi=multi, interval=every)
    out = sys.stdout if file is None else file
    live = hasattr(out, "isatty") and out.isatty()
    while True:
        finished = tally.finished.wait(every)
        done, total, erred = tally.counts()
        text = _line(done, total, erred, time.monotonic() - tally.started, width)
        if finished:
            out.write(("\r" if live else "") + text + "\n")
            out.flush()
            return None
        if live:
            out.write("\r" + text)
            out.flush()
