"""A client's session: the one owner of its engine handle.

The engine handle (:class:`shoal._engine.ClientCore`) is the Rust client
core: the connection to the scheduler, the table of keys and their
reference counts, waits and gathers. Futures, completion helpers, graph
submission and the :class:`~shoal.Client` all reach it through a
``Session``.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Callable

from .. import _engine
from . import context, serialize
from .errors import FutureCancelledError, rebuild
from .options import OptionsTable
from .security import Security

_log = logging.getLogger("shoal")


class Session:
    """The engine handle of one client, and the helpers built on it.

    Parameters
    ----------
    address
        The scheduler's address, ``tcp://host:port``.
    timeout
        Seconds to wait for the connection.
    name
        The client's name, as the scheduler shows it.
    security
        The cluster's token and TLS, if it has them (see
        :mod:`shoal.core.security`).

    """

    def __init__(self, address: str, timeout: float, name: str, security: Security | None = None):
        self.security = Security() if security is None else security
        self.security.check_address(address)
        self.engine = _engine.ClientCore(
            address,
            float(timeout),
            name,
            self.security.token,
            tls=self.security.tls_for("client"),
        )
        #: The client this session belongs to (a weak reference, set by the
        #: client): futures found in results become its futures.
        self.owner: Callable[[], Any] = _nobody
        self._callbacks: Callbacks | None = None
        self._callbacks_lock = threading.Lock()
        self._modules_seen = 0
        self._preloaded: set[str] = set()
        self.share_imports()

    @property
    def address(self) -> str:
        """The scheduler's address, ``tcp://host:port``."""
        return self.engine.address

    def function(self, fn: Callable[..., Any]) -> tuple[int, str, list[Any]]:
        """Pickle ``fn`` (cached); returns its hash, its name, and the
        definitions to send along (none if this connection sent it already).
        """
        h, name, data = serialize.dumps_function(fn)
        # The engine dedupes under its lock, so a task never overtakes its
        # function; asking first only saves copying the bytes.
        if self.engine.has_function(h):
            return h, name, []
        return h, name, [_engine.FunctionDef(h, name, data)]

    def share_imports(self) -> None:
        """Tell the workers about third-party packages this process has
        imported since the last call, so they import them ahead of need.

        Cheap when nothing was imported: it compares one length.
        """
        if len(sys.modules) == self._modules_seen:
            return
        self._modules_seen = len(sys.modules)
        fresh = sorted(third_party_packages() - self._preloaded)
        if fresh:
            self._preloaded.update(fresh)
            self.engine.preload(fresh)

    def submit(self, functions: list[Any], options: OptionsTable, specs: list[Any]) -> None:
        """Send functions, the options the specs refer to and the task
        specs (see :mod:`.spec` and :mod:`.options`).
        """
        self.engine.submit(functions, options.to_engine(), specs)

    def outcomes(self, keys: list[str], timeout: float | None = None) -> list[Any] | None:
        """Wait for ``keys``; one :class:`shoal._engine.Outcome` each, or
        None on timeout. Inside a task the wait leaves the worker's thread
        pool (see :func:`.context.blocking`) unless the keys are done.
        """
        if context.in_task() and not self.engine.wait(keys, 0.0):
            with context.blocking():
                return self.engine.gather(keys, timeout)
        return self.engine.gather(keys, timeout)  # done, or not in a task

    def result(self, key: str, timeout: float | None = None) -> Any:
        """The value of ``key``, or raise its error; ``TimeoutError`` if not
        done within ``timeout`` seconds.
        """
        out = self.outcomes([key], timeout)
        if out is None:
            raise TimeoutError(f"Future {key} not done within {timeout} s")
        return value_of(key, out[0], self.owner())

    def add_done_callback(self, key: str, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` from a background thread once ``key`` is done."""
        with self._callbacks_lock:
            if self._callbacks is None:
                self._callbacks = Callbacks(self.engine)
            callbacks = self._callbacks
        callbacks.add(key, fn)

    def close(self) -> None:
        """Close the connection and stop the callback thread."""
        with self._callbacks_lock:
            callbacks, self._callbacks = self._callbacks, None
        if callbacks is not None:
            callbacks.close()
        self.engine.close()


_NOT_SHARED = frozenset({"shoal", "__main__", "__mp_main__", "_engine"})


def third_party_packages() -> set[str]:
    """Packages imported in this process that are neither the standard
    library nor shoal, and that come from a file (so a worker can import
    them too): each top-level package, and the public subpackages one level
    below it (``dask.dataframe``, imported on its own, costs as much as
    ``dask``).
    """
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    names = set()
    for name, module in list(sys.modules.items()):
        parts = name.split(".")
        top = parts[0]
        if len(parts) > 2 or top in stdlib or top in _NOT_SHARED:
            continue
        if any(p.startswith("_") for p in parts) or not getattr(module, "__file__", None):
            continue
        if len(parts) == 1 or hasattr(module, "__path__"):
            names.add(name)
    return names


def _nobody() -> Any:
    return None


def value_of(key: str, outcome: Any, client: Any = None) -> Any:
    """The value an :class:`shoal._engine.Outcome` holds, or raise its
    error. Futures inside the value become futures of ``client``.
    """
    if outcome.kind == "value":
        return serialize.loads_for(outcome.frames, client)
    if outcome.kind == "cancelled":
        raise FutureCancelledError(key)
    raise rebuild(outcome.error)


class Callbacks:
    """Runs done-callbacks on one background thread, in completion order."""

    def __init__(self, engine: Any):
        self._engine = engine
        self._queue = _engine.CompletionQueue()
        self._pending: dict[str, list[Callable[[], Any]]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="shoal-callbacks", daemon=True)
        self._thread.start()

    def add(self, key: str, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` once ``key`` is done."""
        with self._lock:
            self._pending.setdefault(key, []).append(fn)
        self._engine.watch([key], self._queue)

    def _run(self) -> None:
        while True:
            key = self._queue.pop(None)
            if self._closed:
                return
            with self._lock:
                entries = self._pending.pop(key, [])
            for fn in entries:
                try:
                    fn()
                except Exception:
                    _log.exception("Error in a done-callback")

    def close(self) -> None:
        """Stop the thread (callbacks not run yet are dropped)."""
        self._closed = True
        self._queue.push("")  # wake the thread so it sees the flag
