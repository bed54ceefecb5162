"""The Client: the user's connection to a shoal cluster."""

from __future__ import annotations

import atexit
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Callable

from . import _engine, _serialize
from ._delayed import Delayed
from ._future import CallbackRunner, Future
from ._graph import graph_specs, persist, submit_graph
from .cluster import LocalCluster, format_bytes
from .errors import FutureCancelledError, rebuild

_default_lock = threading.Lock()
_default_client: Client | None = None
_all_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def default_client(c: Client | None = None) -> Client:
    """Return ``c`` or the current default client; raise if there is none."""
    if c is not None:
        return c
    with _default_lock:
        if _default_client is None or _default_client.status != "running":
            raise ValueError(
                "No clients found. Start a client and point it to a scheduler: "
                "Client() or Client('tcp://host:port')"
            )
        return _default_client


def _current_default() -> Client | None:
    """The default client if it is running, else None."""
    with _default_lock:
        if _default_client is not None and _default_client.status == "running":
            return _default_client
        return None


def get_client() -> Client:
    """Return the default client (the most recent one created)."""
    return default_client()


def _as_workers(workers: Any) -> list[str]:
    if workers is None:
        return []
    if isinstance(workers, str):
        workers = [workers]
    out = []
    for w in workers:
        w = str(w)
        out.append(w[len("tcp://") :] if w.startswith("tcp://") else w)
    return out


def _key_prefix(key: Any, fallback: str) -> str:
    return key if isinstance(key, str) else fallback


class Client:
    """Connect to a shoal cluster, or start a local one, and run tasks on it.

    ``Client()`` starts a :class:`LocalCluster` on this machine (keyword
    arguments such as ``n_workers`` and ``threads_per_worker`` go to it);
    ``Client("tcp://host:port")`` connects to a running scheduler.
    """

    def __init__(
        self,
        address: str | LocalCluster | None = None,
        loop: Any = None,
        timeout: float = 10.0,
        set_as_default: bool = True,
        scheduler_file: str | None = None,
        security: Any = None,
        asynchronous: bool = False,
        name: str | None = None,
        heartbeat_interval: Any = None,
        serializers: Any = None,
        deserializers: Any = None,
        extensions: Any = None,
        direct_to_workers: Any = None,
        connection_limit: int = 512,
        **kwargs: Any,
    ):
        if asynchronous:
            raise NotImplementedError(
                "shoal clients are synchronous; asynchronous=True is not supported"
            )
        if security:
            raise NotImplementedError("TLS and authentication are not supported yet")
        if scheduler_file is not None:
            import json

            with open(scheduler_file) as f:
                address = json.load(f)["address"]
        self.cluster: LocalCluster | None = None
        self._owns_cluster = False
        self.status = "connecting"
        if address is None:
            self.cluster = LocalCluster(**kwargs)
            self._owns_cluster = True
            address = self.cluster.scheduler_address
        elif isinstance(address, LocalCluster):
            self.cluster = address
            address = address.scheduler_address
        elif kwargs:
            raise TypeError(
                f"Unexpected keyword arguments {sorted(kwargs)}: these configure a local "
                "cluster and cannot be used with the address of an existing scheduler"
            )
        if not isinstance(address, str):
            raise TypeError(f"address must be a string like 'tcp://host:port', not {address!r}")
        self.id = f"Client-{uuid.uuid4()}"
        try:
            self._core = _engine.ClientCore(address, float(timeout), name or self.id)
        except Exception:
            if self._owns_cluster and self.cluster is not None:
                self.cluster.close()
            raise
        self._callbacks = CallbackRunner(self._core)
        self.status = "running"
        _all_clients.add(self)
        if set_as_default:
            self._set_default()

    # ----- lifecycle ---------------------------------------------------------

    #: Always False: shoal clients are synchronous (dask checks this).
    asynchronous = False

    def _set_default(self) -> None:
        global _default_client
        with _default_lock:
            _default_client = self
        from ._dask_interop import set_default_scheduler

        set_default_scheduler(self)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self, timeout: float | None = None) -> None:
        """Close this client; also close the local cluster it started."""
        global _default_client
        if self.status == "closed":
            return
        self.status = "closed"
        from ._dask_interop import unset_default_scheduler

        unset_default_scheduler(self)
        self._callbacks.close()
        self._core.close()
        if self._owns_cluster and self.cluster is not None:
            self.cluster.close()
        with _default_lock:
            if _default_client is self:
                _default_client = None

    def shutdown(self) -> None:
        """Shut down the scheduler and every worker of the cluster, then close."""
        if self.status == "running":
            self._core.shutdown_cluster()
        if self.cluster is not None:
            self.cluster.close()
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address, ``tcp://host:port``."""
        return self._core.address

    # ----- submitting ------------------------------------------------------

    def _function(self, func: Callable[..., Any]) -> tuple[int, str, list[tuple[int, str, bytes]]]:
        h, name, data = _serialize.dumps_function(func)
        # The core dedupes under its lock, so a task never overtakes its
        # function; asking first only saves copying the bytes.
        if self._core.has_function(h):
            return h, name, []
        return h, name, [(h, name, data)]

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        key: str | None = None,
        workers: Any = None,
        resources: Any = None,
        retries: int | None = None,
        priority: int = 0,
        fifo_timeout: Any = "100 ms",
        allow_other_workers: bool = False,
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        **kwargs: Any,
    ) -> Future:
        """Run ``func(*args, **kwargs)`` on the cluster; return a Future at once.

        Futures anywhere in the arguments are replaced by their results on the
        worker. With ``pure=True`` (the default) equal calls share one key and
        run once.
        """
        if not callable(func):
            raise TypeError("First input to submit must be a callable function")
        self._check_running()
        h, name, functions = self._function(func)
        frames, deps = _serialize.dumps_args(args, kwargs, name)
        if key is None:
            key = f"{name}-{_engine.token(h, frames) if pure else _serialize.unique_token()}"
        elif not isinstance(key, str):
            raise TypeError(f"key must be a string, not {type(key).__name__}")
        functions, specs = self._graphs_of(deps, functions)
        dep_keys = [d.key for d in deps]
        task = (
            key,
            h,
            frames,
            dep_keys,
            True,
            int(priority),
            int(retries or 0),
            _as_workers(workers),
        )
        specs.append(task)
        self._core.submit(functions, specs)
        return Future._adopt(key, self)

    def _graphs_of(self, deps: list[Any], functions: list[Any]) -> tuple[list[Any], list[Any]]:
        """Specs for the graphs behind Delayed arguments (sent along)."""
        lazy = [d for d in deps if isinstance(d, Delayed)]
        if not lazy:
            return functions, []
        more, specs = graph_specs(lazy, set())
        known = {f[0] for f in functions}
        return functions + [f for f in more if f[0] not in known], specs

    def map(
        self,
        func: Callable[..., Any],
        *iterables: Iterable[Any],
        key: str | list[str] | None = None,
        workers: Any = None,
        retries: int | None = None,
        resources: Any = None,
        priority: int = 0,
        allow_other_workers: bool = False,
        fifo_timeout: Any = "100 ms",
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[Future]:
        """Run ``func`` on each element of the iterables; return a list of Futures.

        The function is pickled once for the whole call. ``key`` may be a
        prefix for the keys or a list of explicit keys.
        """
        if not callable(func):
            raise TypeError("First input to map must be a callable function")
        if not iterables:
            raise TypeError("map needs at least one iterable")
        for it in iterables:
            if isinstance(it, (str, bytes, dict)):
                raise TypeError(f"Dask-style map does not iterate over a {type(it).__name__}")
            if not isinstance(it, Iterable):
                raise TypeError(f"{type(it).__name__} object is not iterable")
        self._check_running()
        h, name, functions = self._function(func)
        prefix = _key_prefix(key, name)
        explicit = key if isinstance(key, (list, tuple)) else None
        keys: list[str] = []
        all_frames: list[list[bytes]] = []
        all_deps: list[list[str]] = []
        lazy: list[Any] = []
        for i, args in enumerate(zip(*iterables)):
            frames, deps = _serialize.dumps_args(args, kwargs, name)
            if deps:
                lazy.extend(d for d in deps if isinstance(d, Delayed))
                deps = [d.key for d in deps]
            if explicit is not None:
                if i >= len(explicit):
                    raise ValueError("map was given fewer keys than elements")
                k = str(explicit[i])
            elif pure:
                k = f"{prefix}-{_engine.token(h, frames)}"
            else:
                k = f"{prefix}-{_serialize.unique_token()}"
            keys.append(k)
            all_frames.append(frames)
            all_deps.append(deps)
        if explicit is not None and len(explicit) != len(keys):
            raise ValueError(f"map was given {len(explicit)} keys for {len(keys)} elements")
        if lazy:
            more, specs = self._graphs_of(lazy, [])
            self._core.submit(more, specs)
        function = functions[0] if functions else None
        self._core.submit_many(
            function,
            h,
            keys,
            all_frames,
            all_deps,
            int(priority),
            int(retries or 0),
            _as_workers(workers),
        )
        return [Future._adopt(k, self) for k in keys]

    def scatter(
        self,
        data: Any,
        workers: Any = None,
        broadcast: bool = False,
        direct: Any = None,
        hash: bool = True,
        timeout: Any = None,
        asynchronous: Any = None,
    ) -> Any:
        """Move data into the cluster; return Futures pointing at it.

        A list or tuple gives a list of Futures, a dict a dict of Futures
        keyed like the input (its keys become the task keys), anything else
        one Future. Scattered data that is lost with its worker is sent again
        from the copy the scheduler keeps. ``broadcast`` is accepted for
        compatibility; workers fetch the data from each other on first use.
        """
        self._check_running()
        if isinstance(data, dict):
            items = [(str(k), v) for k, v in data.items()]
        elif isinstance(data, (list, tuple, set, frozenset)):
            items = [(None, v) for v in data]
        else:
            items = [(None, data)]
        tasks = []
        keys = []
        for k, v in items:
            try:
                frames = _serialize.dumps(v)
            except Exception as e:
                raise TypeError(
                    f"Could not serialize scattered data of type {type(v).__name__}: {e}"
                ) from e
            if k is None:
                token = _engine.token(0, frames) if hash else _serialize.unique_token()
                k = f"{type(v).__name__}-{token}"
            keys.append(k)
            tasks.append((k, _engine.LITERAL_FUNC, frames, [], True, 0, 0, _as_workers(workers)))
        self._core.submit([], tasks)
        futures = [Future._adopt(k, self) for k in keys]
        if isinstance(data, dict):
            return dict(zip(data.keys(), futures))
        if isinstance(data, (list, tuple, set, frozenset)):
            return futures
        return futures[0]

    # ----- results -----------------------------------------------------------

    def gather(
        self,
        futures: Any,
        errors: str = "raise",
        direct: Any = None,
        asynchronous: Any = None,
    ) -> Any:
        """Wait for futures and return their results, in the same structure.

        Futures may be nested in lists, tuples, sets and dicts. With
        ``errors="skip"`` failed futures are left out instead of raising.
        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        if isinstance(futures, Iterator):
            return (self.gather(f, errors=errors) for f in futures)
        keys: dict[str, None] = {}
        _collect_keys(futures, keys)
        if not keys:
            return futures
        key_list = list(keys)
        out = self._core.gather(key_list, None)
        values: dict[str, Any] = {}
        for k, (kind, val) in zip(key_list, out):
            if kind == 0:
                values[k] = _serialize.loads(val)
            elif errors == "raise":
                if kind == 2:
                    raise FutureCancelledError(k)
                raise rebuild(val)
        return _substitute(futures, values)

    def compute(
        self,
        collections: Any,
        sync: bool = False,
        optimize_graph: bool = True,
        workers: Any = None,
        allow_other_workers: bool = False,
        resources: Any = None,
        retries: int = 0,
        priority: int = 0,
        fifo_timeout: Any = "60s",
        actors: Any = None,
        traverse: bool = True,
        **kwargs: Any,
    ) -> Any:
        """Start computing Delayed objects (or dask collections) in the cluster.

        Returns a Future per collection (a single Future for a single
        collection, a list for a list), or the results with ``sync=True``.
        """
        single = not isinstance(collections, (list, tuple, set, frozenset))
        items = [collections] if single else list(collections)
        lazy = [_as_lazy(x) for x in items]
        self._check_running()
        futures = submit_graph(self, [x for x in lazy if isinstance(x, Delayed)])
        it = iter(futures)
        out = [next(it) if isinstance(x, Delayed) else x for x in lazy]
        if sync:
            out = self.gather(out)
        return out[0] if single else out

    def persist(self, collections: Any, optimize_graph: bool = True, **kwargs: Any) -> Any:
        """Start computing in the cluster and return Delayed objects backed by
        the results, so later graphs reuse them instead of recomputing.
        """
        single = not isinstance(collections, (list, tuple, set, frozenset))
        items = [collections] if single else list(collections)
        out = list(persist(*items, traverse=False, scheduler=self))
        return out[0] if single else out

    def get(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        """Run a dask-style task graph and return the values of ``keys``
        (a key or a nested list of keys) -- the ``get`` protocol dask's
        ``compute(scheduler=client)`` uses.
        """
        from ._dask_interop import run_dask_graph

        return run_dask_graph(self, dsk, keys)

    def cancel(self, futures: Any, asynchronous: Any = None, force: bool = False) -> None:
        """Cancel futures.

        They stop running if they have not started, and their ``result()``
        raises ``CancelledError``.
        """
        keys: dict[str, None] = {}
        _collect_keys(futures, keys)
        self._core.cancel(list(keys))

    # ----- the cluster ------------------------------------------------------

    def _check_running(self) -> None:
        if self.status != "running":
            raise RuntimeError(f"this client is {self.status}")

    def scheduler_info(self) -> dict[str, Any]:
        """Ask the scheduler about itself.

        Returns its address, how many tasks it remembers, and its workers
        keyed by address (with how many results each stores and how many
        tasks each has assigned).
        """
        workers, tasks = self._core.identify()
        return {
            "type": "Scheduler",
            "address": self.scheduler_address,
            "tasks": tasks,
            "workers": {w["address"]: w for w in workers},
        }

    def who_has(self, futures: Any = None) -> dict[str, list[str]]:
        """Which workers hold the result of each finished future, by key."""
        keys: dict[str, None] = {}
        _collect_keys(futures, keys)
        return {k: self._core.who_has(k) for k in keys}

    def nthreads(self) -> dict[str, int]:
        """Threads per worker, keyed by worker address."""
        return {w["address"]: w["nthreads"] for w in self._core.workers()}

    ncores = nthreads

    def wait_for_workers(
        self, n_workers: int, timeout: float | None = None, *, without: Iterable[str] = ()
    ) -> None:
        """Block until ``n_workers`` workers are connected.

        With ``without``, also until none of those worker addresses is.
        """
        if not self._core.wait_for_workers(n_workers, timeout, list(without)):
            raise TimeoutError(f"{n_workers} workers did not connect within {timeout} s")

    def __repr__(self) -> str:
        workers = self._core.workers() if self.status == "running" else []
        threads = sum(w["nthreads"] for w in workers)
        memory = sum(w["memory"] for w in workers)
        return (
            f"<Client: {self.scheduler_address!r} processes={len(workers)} "
            f"threads={threads}, memory={format_bytes(memory)}>"
        )

    def _repr_html_(self) -> str:
        workers = self._core.workers() if self.status == "running" else []
        rows = "".join(
            f"<tr><td>{w['name']}</td><td>{w['address']}</td><td>{w['nthreads']}</td>"
            f"<td>{format_bytes(w['memory'])}</td></tr>"
            for w in workers
        )
        return (
            f"<div><h3>Client</h3><p><b>Scheduler:</b> {self.scheduler_address} &nbsp; "
            f"<b>Status:</b> {self.status} &nbsp; <b>Workers:</b> {len(workers)} &nbsp; "
            f"<b>Threads:</b> {sum(w['nthreads'] for w in workers)} &nbsp; "
            f"<b>Memory:</b> {format_bytes(sum(w['memory'] for w in workers))}</p>"
            "<table><tr><th>Worker</th><th>Address</th><th>Threads</th><th>Memory</th></tr>"
            f"{rows}</table></div>"
        )


def _as_lazy(x: Any) -> Any:
    from ._dask_interop import is_dask_collection, wrap_collection

    if isinstance(x, Delayed) or not is_dask_collection(x):
        return x
    return wrap_collection(x)


def _collect_keys(obj: Any, keys: dict[str, None]) -> None:
    if isinstance(obj, Future):
        keys[obj.key] = None
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for x in obj:
            _collect_keys(x, keys)
    elif isinstance(obj, dict):
        for x in obj.values():
            _collect_keys(x, keys)


_SKIP = object()


def _substitute(obj: Any, values: dict[str, Any]) -> Any:
    if isinstance(obj, Future):
        return values.get(obj.key, _SKIP)
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_substitute(x, values) for x in obj]
        items = [x for x in items if x is not _SKIP]
        if isinstance(obj, list):
            return items
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):
            return type(obj)(*items)
        return type(obj)(items)
    if isinstance(obj, dict):
        out = {k: _substitute(v, values) for k, v in obj.items()}
        return {k: v for k, v in out.items() if v is not _SKIP}
    return obj


@atexit.register
def _close_all() -> None:
    for c in list(_all_clients):
        try:
            c.close()
        except Exception:
            pass
