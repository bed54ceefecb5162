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
    direct
        Whether data connections go straight to the workers (False: the
        scheduler carries them, Dask's ``direct_to_workers=False``).

    """

    def __init__(
        self,
        address: str,
        timeout: float,
        name: str,
        security: Security | None = None,
        direct: bool = True,
    ):
        self.security = Security() if security is None else security
        self.security.check_address(address)
        self._core = _engine.ClientCore(
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
        #: Held by a graph sent in parts from its first part to its last
        #: (one such graph at a time).
        self.submitting = threading.RLock()
        self._preloaded: set[str] = set()
        self._cancel_reasons: dict[str, str] = {}
        self.direct = direct
        self.share_imports()

    @property
    def address(self) -> str:
        """The scheduler's address, ``tcp://host:port``."""
        return self._core.address

    def function(self, fn: Callable[..., Any]) -> tuple[int, str, list[Any]]:
        """Pickle ``fn`` (cached); returns its hash, its name, and the
        definitions to send along (none if this connection sent it already).
        """
        h, name, data = serialize.dumps_function(fn)
        # The engine dedupes under its lock, so a task never overtakes its
        # function; asking first only saves copying the bytes.
        if self._core.has_function(h):
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
            self._core.preload(fresh)

    def submit(self, functions: list[Any], options: OptionsTable, specs: list[Any]) -> None:
        """Send functions, the options the specs refer to and the task
        specs (see :mod:`.spec` and :mod:`.options`).
        """
        warn_if_large(self._core.submit(functions, options.to_engine(), specs))

    def submit_specs(
        self, functions: list[Any], options: list[_engine.TaskOptions], specs: list[Any]
    ) -> None:
        """:meth:`submit` with the options already as the engine sends them
        (one task's, on ``submit``'s quick path).
        """
        warn_if_large(self._core.submit(functions, options, specs))

    def submit_part(
        self, functions: list[Any], options: OptionsTable, specs: list[Any], last: bool
    ) -> int:
        """Send one part of a graph sent in parts (hold :attr:`submitting`
        from the first part to the last: the engine sends one graph in parts
        at a time, and other submissions meanwhile join it); returns its
        bytes of functions and arguments, for :func:`warn_if_large` once the
        graph is sent.
        """
        return self._core.submit(functions, options.to_engine(), specs, last)

    def submit_graph_part(self, part: Any, options: OptionsTable, last: bool) -> int:
        """:meth:`submit_part` for a :class:`shoal._engine.GraphPart` (the
        specs of a part of a graph, read from its nodes by the engine);
        returns its bytes of functions and arguments.
        """
        return self._core.submit_graph_part(part, options.to_engine(), last)

    # ----- keys: their state and this client's references ---------------

    def status(self, key: str) -> str | None:
        """The key's state as this client knows it (None: not one of its)."""
        return self._core.status(key)

    def result_info(self, key: str) -> tuple[str, int] | None:
        """The type name and size of ``key``'s result, once it is in memory."""
        return self._core.result_info(key)

    def error(self, key: str) -> _engine.TaskError | None:
        """Why ``key`` failed, if it did."""
        return self._core.error(key)

    def add_ref(self, key: str) -> None:
        """One more future of this client holds ``key``."""
        self._core.add_ref(key)

    def drop_ref(self, key: str) -> None:
        """One future of this client for ``key`` is gone."""
        self._core.drop_ref(key)

    def broken(self) -> str | None:
        """Why this client can no longer reach the scheduler (its
        connection broke, or the scheduler removed it), if it cannot.
        """
        return self._core.broken()

    def keys(self) -> list[str]:
        """The keys this client holds futures for."""
        return self._core.keys()

    def retry(self, keys: list[str]) -> None:
        """Compute these erred keys again (with the erred tasks upstream)."""
        self._core.retry(keys)

    def refcount(self, key: str) -> int:
        """How many futures of this client hold ``key`` (0: none)."""
        return self._core.refcount(key)

    def cancel(self, keys: list[str], reason: str | None = None) -> None:
        """Cancel ``keys`` for this client (``reason`` shows in the error
        their results raise).
        """
        if reason is not None:
            for k in keys:
                self._cancel_reasons[k] = reason
            while len(self._cancel_reasons) > 10_000:  # the oldest go first
                self._cancel_reasons.pop(next(iter(self._cancel_reasons)))
        self._core.cancel(keys)

    def cancel_reason(self, key: str) -> str:
        """Why ``key`` was cancelled, as given to :meth:`cancel`."""
        return self._cancel_reasons.get(key, "cancelled")

    def wait(self, keys: list[str], timeout: float | None = None) -> bool:
        """Whether ``keys`` are all done within ``timeout`` seconds."""
        return self._core.wait(keys, timeout)

    def watch(self, keys: list[str], queue: _engine.CompletionQueue) -> None:
        """Push each of ``keys`` onto ``queue`` once it is done."""
        self._core.watch(keys, queue)

    # ----- the cluster ---------------------------------------------------

    @property
    def dashboard(self) -> str | None:
        """The dashboard's URL, if the scheduler runs one."""
        return self._core.dashboard

    def workers(self) -> list[_engine.WorkerInfo]:
        """The connected workers."""
        return self._core.workers()

    def identify(self) -> _engine.Identity:
        """The workers and their state, the task count and the limits."""
        return self._core.identify()

    def barrier(self) -> None:
        """Return once the scheduler has applied everything this client
        sent before, and this client has what the scheduler sent before
        answering (a connection's messages are applied in order): a round
        trip.
        """
        self._core.identify()

    def scheduler_identity(self) -> tuple[str, float]:
        """The scheduler's id and start time."""
        return self._core.scheduler_identity()

    def wait_for_workers(
        self, n: int, timeout: float | None = None, without: list[str] | None = None
    ) -> bool:
        """Whether ``n`` workers, none of ``without`` (addresses), are
        connected within ``timeout`` seconds.
        """
        return self._core.wait_for_workers(n, timeout, without or [])

    def run_on_workers(
        self, workers: list[str], call: list[Any], timeout: float | None = None
    ) -> list[tuple[str, _engine.RunAnswer]]:
        """Run a pickled call on each of ``workers``; their answers."""
        return self._core.run_on_workers(workers, call, timeout, self.direct)

    def request(self, op: _engine.Coord, timeout: float | None = None) -> _engine.Answer:
        """Send a coordination request; the scheduler's answer."""
        return self._core.request(op, timeout)

    def buffered(self, sub: int) -> int:
        """How many messages of subscription ``sub`` wait to be taken."""
        return self._core.buffered(sub)

    def next_published(self, sub: int, timeout: float | None = None) -> list[Any] | None:
        """The next message of subscription ``sub`` (None on timeout)."""
        return self._core.next_published(sub, timeout)

    def set_limit(
        self, name: str, concurrency: int | None, rate: float | None, burst: float | None
    ) -> None:
        """Create or change a cluster-wide limit."""
        self._core.set_limit(name, concurrency, rate, burst)

    def register_plugin(self, name: str, plugin: list[Any] | None) -> None:
        """Keep a pickled worker plugin for workers that join later (None:
        forget the plugin of that name).
        """
        self._core.register_plugin(name, plugin)

    def upload(self, name: str, data: bytes) -> None:
        """Send a file for every worker to save and import."""
        self._core.upload(name, data)

    def task_stream(self, since: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Tasks that ran, from position ``since``; and the next position."""
        return self._core.task_stream(since, limit)

    def put_on_workers(
        self, puts: list[tuple[str, list[tuple[str, list[Any]]]]], timeout: float
    ) -> list[str | None]:
        """Send values straight to workers (see ``ClientCore.put_on_workers``);
        per worker, why it did not take them (None: it did).
        """
        return self._core.put_on_workers(puts, timeout, self.direct)

    def shutdown_cluster(self) -> None:
        """Stop the scheduler and its workers."""
        self._core.shutdown_cluster()

    # ----- results ---------------------------------------------------------

    def outcomes(
        self, keys: list[str], timeout: float | None = None, direct: bool | None = None
    ) -> list[Any] | None:
        """Wait for ``keys``; one :class:`shoal._engine.Outcome` each, or
        None on timeout. Inside a task the wait leaves the worker's thread
        pool (see :func:`.context.blocking`) unless the keys are done.
        ``direct``: read results from their workers, or (False) through the
        scheduler; by default as the session is.
        """
        direct = self.direct if direct is None else direct
        if context.in_task() and not self._core.wait(keys, 0.0):
            with context.blocking():
                return self._core.gather(keys, timeout, direct)
        return self._core.gather(keys, timeout, direct)  # done, or not in a task

    def first_error(self, keys: list[str]) -> str | None:
        """Block until every key is done or one of them failed (so a gather
        raises the first error at once, as in Dask); the failed key, if one
        did. Inside a task the wait leaves the worker's thread pool.
        """
        if context.in_task() and not self._core.wait(keys, 0.0):
            with context.blocking():
                return self._core.first_error(keys)
        return self._core.first_error(keys)  # done, or not in a task

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
                self._callbacks = Callbacks(self._core)
            callbacks = self._callbacks
        callbacks.add(key, fn)

    def close(self) -> None:
        """Close the connection and stop the callback thread."""
        with self._callbacks_lock:
            callbacks, self._callbacks = self._callbacks, None
        if callbacks is not None:
            callbacks.close()
        self._core.close()


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


#: Dask's key for the size of a submission above which it warns.
LARGE_GRAPH_KEY = "distributed.admin.large-graph-warning-threshold"


def warn_if_large(size: int) -> None:
    """Warn (``UserWarning``, as Dask) when a submission's pickled tasks and
    functions are larger than Dask's ``large-graph-warning-threshold``
    (10 MB by default). Submissions under 64 kB are not checked (the
    configuration is not read on the quick path of small tasks).
    """
    if size < 65_536:
        return
    from .settings import setting
    from .sizes import format_bytes, parse_bytes

    limit = setting(LARGE_GRAPH_KEY, "10MB")
    threshold = parse_bytes(limit) if isinstance(limit, str) else int(limit)
    if size > threshold:
        import warnings

        warnings.warn(
            f"Sending large graph of size {format_bytes(size)}. The data is pickled into "
            "the tasks and sent to the scheduler with them: load it inside a task, or "
            "scatter it once (client.scatter) and pass the future, so it is sent one time. "
            f"(Dask's {LARGE_GRAPH_KEY} sets when this warns.)",
            UserWarning,
            stacklevel=_outside_shoal(),
        )


def _outside_shoal() -> int:
    """The ``stacklevel`` of the first caller outside shoal's package."""
    package = __name__.rsplit(".", 2)[0] + "."
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(package):
        frame = frame.f_back
        level += 1
    return level


def value_of(key: str, outcome: _engine.Outcome, client: Any = None) -> Any:
    """The value an :class:`shoal._engine.Outcome` holds, or raise its
    error. Futures inside the value become futures of ``client``.
    """
    if isinstance(outcome, _engine.Outcome.Value):
        return serialize.loads_for(outcome.frames, client)
    if isinstance(outcome, _engine.Outcome.Cancelled):
        session = getattr(client, "_session", None)
        reason = "cancelled" if session is None else session.cancel_reason(key)
        raise FutureCancelledError(key, reason)
    raise rebuild(outcome.error)  # Outcome.Error


def values_of(outcomes: list[Any], client: Any = None) -> list[Any]:
    """The values of outcomes that all hold one, in order; futures inside
    them become futures of ``client``.
    """
    return serialize.loads_many_for([o.frames for o in outcomes], client)


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
