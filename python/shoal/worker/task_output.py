"""``shoal.print`` and ``shoal.warn``: what a task prints or warns shows in
the client's terminal or notebook too, as with Dask's ``distributed.print``
and ``distributed.warn``.

In a task they log an event under the ``"print"`` or ``"warn"`` topic
(every client shows those; see ``shoal/client/events.py``) and then print or
warn in the worker as usual; anywhere else they are the built-ins.
``Client.forward_logging`` installs :class:`ForwardLogging` in the workers:
their log records go to the client the same way.
"""

from __future__ import annotations

import builtins
import logging
import sys
import threading
import warnings
from typing import Any, TextIO

import cloudpickle

from . import task_context
from .plugins import WorkerPlugin


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
        # By value where need be: a warning class defined in a function or
        # a notebook is not importable by name on the client.
        msg: dict[str, Any] = {"message": cloudpickle.dumps(message)}
        if category is not None:
            msg["category"] = cloudpickle.dumps(category)
        worker.log_event("warn", msg)
    warnings.warn(message, category, stacklevel + 1, source)


#: The event topic of log records forwarded to clients.
FORWARD_TOPIC = "forward-logging"

_forwarding = threading.local()


class _Forwarder(logging.Handler):
    """Logs each record as an event (its attributes, the message formatted,
    any traceback as text) through the worker's client.
    """

    def __init__(self, worker: Any, level: int):
        super().__init__(level)
        self.worker = worker

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(_forwarding, "busy", False):
            return  # a record logged while forwarding one: not again
        _forwarding.busy = True
        try:
            attributes = dict(record.__dict__)
            attributes["msg"] = record.getMessage()
            attributes["args"] = None
            if record.exc_info:
                attributes["exc_text"] = logging.Formatter().formatException(record.exc_info)
            attributes["exc_info"] = None
            attributes.pop("stack_info", None)
            self.worker.log_event(FORWARD_TOPIC, attributes)
        except Exception:
            self.handleError(record)
        finally:
            _forwarding.busy = False


class ForwardLogging(WorkerPlugin):
    """The worker plugin of :meth:`shoal.Client.forward_logging`: records
    of ``logger_name`` (the root logger if None) at ``level`` and above go
    to the clients as events.
    """

    def __init__(self, logger_name: str | None, level: int):
        self.logger_name = logger_name
        self.level = level
        self._handler: _Forwarder | None = None

    def setup(self, worker: Any) -> None:
        """Attach the forwarding handler to the logger."""
        self._handler = _Forwarder(worker, self.level)
        logging.getLogger(self.logger_name).addHandler(self._handler)

    def teardown(self, worker: Any) -> None:
        """Detach it."""
        if self._handler is not None:
            logging.getLogger(self.logger_name).removeHandler(self._handler)
            self._handler = None


def replay_log_record(event: Any) -> None:
    """Handle, in this process, a log record a worker forwarded: through the
    logger of the same name, so this process's logging shows it.
    """
    _, attributes = event
    if isinstance(attributes, dict):
        record = logging.makeLogRecord(attributes)
        logging.getLogger(record.name).handle(record)
