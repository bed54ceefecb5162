"""``shoal.print`` and ``shoal.warn``: what a task prints or warns shows in
the client's terminal or notebook too, as with Dask's ``distributed.print``
and ``distributed.warn``.

In a task they log an event under the ``"print"`` or ``"warn"`` topic
(every client shows those; see ``shoal/client/events.py``) and then print or
warn in the worker as usual; anywhere else they are the built-ins.
"""

from __future__ import annotations

import builtins
import pickle
import sys
import warnings
from typing import Any, TextIO

from . import task_context


def print(
    *args: Any,
    sep: str | None = " ",
    end: str | None = "\n",
    file: TextIO | None = None,
    flush: bool = False,
) -> None:
    """:func:`print`, shown by the clients too when called in a task.

    Parameters
    ----------
    *args
        What to print (each turned into ``str`` here).
    sep, end, flush
        As for the built-in :func:`print`.
    file
        ``sys.stdout`` (the default) or ``sys.stderr``; another file raises
        ``TypeError`` in a task.

    Examples
    --------
    >>> from shoal import print
    >>> def task(x):
    ...     print("working on", x)  # shows in the client's terminal too
    ...     return x

    """
    worker = task_context.current_worker()
    if worker is not None:
        msg: dict[str, Any] = {
            "args": tuple(map(str, args)),
            "sep": sep,
            "end": end,
            "flush": flush,
        }
        if file is sys.stdout:
            msg["file"] = 1
        elif file is sys.stderr:
            msg["file"] = 2
        elif file is not None:
            raise TypeError(
                f"a task prints to the clients only to sys.stdout or sys.stderr, not {file!r}"
            )
        worker.log_event("print", msg)
    builtins.print(*args, sep=sep, end=end, file=file, flush=flush)


def warn(
    message: str | Warning,
    category: type[Warning] | None = UserWarning,
    stacklevel: int = 1,
    source: Any = None,
) -> None:
    """:func:`warnings.warn`, raised in the clients too when called in a
    task (subject to their own warning filters).

    Parameters
    ----------
    message, category, stacklevel, source
        As for :func:`warnings.warn`.

    Examples
    --------
    >>> from shoal import warn
    >>> def task(x):
    ...     if x < 0:
    ...         warn("negative input")
    ...     return x

    """
    worker = task_context.current_worker()
    if worker is not None:
        msg: dict[str, Any] = {"message": pickle.dumps(message)}
        if category is not None:
            msg["category"] = pickle.dumps(category)
        worker.log_event("warn", msg)
    warnings.warn(message, category, stacklevel + 1, source)
