"""The Client: the user's connection to a shoal cluster."""

from __future__ import annotations

import atexit
import functools
import os
import time
import uuid
import weakref
from collections.abc import Generator, Iterable, Iterator
from typing import Any, Callable

from .actor import factory as actor_factory
from .cfexecutor import ClientExecutor
from .client_cluster import ClusterMethods, collect_keys, worker_names
from .core import aio, arguments, context, keys, lift, options, serialize
from .core.arguments import UNSET
from .core.graph import graph_specs
from .core.options import OptionsTable
from .core.retry import retry_filter
from .core.scatter import scatter as scatter_items
from .core.security import resolve as resolve_security
from .core.session import Session, value_of
from .core.sizes import format_bytes
from .core.spec import task_spec
from .core.times import parse_timedelta
from .dask import config as dask_config
from .dask.graphs import run_dask_graph
from .delayed import Delayed, as_node, collect, delayed, persist_on, submit_nodes
from .deploy.local import LocalCluster
from .deploy.spec import Cluster
from .futures import Future
from .worker import context as worker_context

_all_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def default_client(c: Client | None = None) -> Client:
    """Return ``c`` or the current default client.

    Raises
    ------
    ValueError
        If there is no running default client.

    """
    return context.default_client(c)


def get_client(
    address: str | None = None, timeout: Any = None, resolve_address: bool = True
) -> Client:
    """The client to use here: inside a task, the worker's own client (to
    submit tasks from tasks); elsewhere the default client, or a client of
    the scheduler at ``address``.

    Parameters
    ----------
    address
        A scheduler's address: a client connected to it (an existing one,
        else a new one).
    timeout
        How long to wait to connect (seconds, or a string like ``"10 s"``).
    resolve_address
        Compare addresses without their ``tcp://`` (the default); False
        compares them as given.

    Returns
    -------
    Client

    Raises
    ------
    ValueError
        Outside a task, with no default client and no ``address``.

    Examples
    --------
    >>> def fib(n):
    ...     if n < 2:
    ...         return n
    ...     client = get_client()
    ...     a, b = client.submit(fib, n - 1), client.submit(fib, n - 2)
    ...     return a.result() + b.result()

    """
    seconds = parse_timedelta(timeout)
    worker = worker_context.current_worker()

    def same(a: str, b: str) -> bool:
        if resolve_address:
            return a.split("://")[-1] == b.split("://")[-1]
        return a == b

    if worker is not None and (address is None or same(address, worker.scheduler_address)):
        return worker.client(timeout=10.0 if seconds is None else seconds)
    if address is not None:
        for c in list(_all_clients):
            if c.status == "running" and same(c.scheduler_address, address):
                return c
        return Client(address, timeout=10.0 if seconds is None else seconds)
    return context.default_client()


def _reject_task_options(fifo_timeout: Any, actors: Any = None) -> None:
    if fifo_timeout is UNSET and not actors:
        return  # the common case, kept cheap: submit is called in tight loops
    arguments.reject("fifo_timeout", fifo_timeout)
    arguments.reject("actors", actors)


class Client(ClusterMethods):
    """Connect to a shoal cluster, or start a local one, and run tasks on it.

    Parameters
    ----------
    address
        ``"tcp://host:port"`` of a running scheduler, a cluster object
        (:class:`LocalCluster`, ``SSHCluster``),
        or None to start a local cluster (keyword arguments such as
        ``n_workers`` and ``threads_per_worker`` go to it).
    timeout
        Seconds to wait for the connection.
    set_as_default
        Make this the client that futures, ``compute`` and dask use.
    scheduler_file
        A JSON file with the scheduler's ``"address"``.
    name
        This client's name, as the scheduler shows it.
    security
        A :class:`~shoal.Security` with the cluster's token and, for a
        ``tls://`` address, its TLS options. Without one the token comes
        from ``SHOAL_TOKEN`` or the file ``SHOAL_TOKEN_FILE`` names; a
        cluster started in this process needs none. With no address,
        ``security=True`` starts a local cluster with TLS
        (``Security.temporary()``).
    asynchronous
        Make an asynchronous client, as in Dask: it connects when awaited
        (``await Client(..., asynchronous=True)`` or ``async with``), its
        waiting calls (``gather``, ``scatter``, ``Future.result``, ``run``,
        ``close``, ...) return coroutines, and awaiting never blocks the
        running event loop. ``await future`` works with any client.

    Examples
    --------
    >>> client = Client(n_workers=4)  # doctest: +SKIP
    >>> client.gather(client.map(inc, range(4)))  # doctest: +SKIP
    [1, 2, 3, 4]

    """

    def __init__(
        self,
        address: str | Cluster | None = None,
        loop: Any = None,
        timeout: Any = 10.0,
        set_as_default: bool = True,
        scheduler_file: str | None = None,
        security: Any = None,
        asynchronous: bool = False,
        name: str | None = None,
        heartbeat_interval: Any = None,
        serializers: Any = None,
        deserializers: Any = None,
        extensions: Any = UNSET,
        direct_to_workers: Any = None,
        connection_limit: Any = UNSET,
        **kwargs: Any,
    ):
        self.status = "connecting"
        self.cluster: Cluster | None = None
        self._owns_cluster = False
        self._asynchronous = bool(asynchronous)
        for option, value in (
            ("loop", loop),
            ("heartbeat_interval", heartbeat_interval),
            ("serializers", serializers),
            ("deserializers", deserializers),
            ("extensions", extensions),
            ("direct_to_workers", direct_to_workers),
            ("connection_limit", connection_limit),
        ):
            arguments.reject(option, value)
        self.id = f"Client-{uuid.uuid4()}"
        start = functools.partial(
            self._connect, address, timeout, set_as_default, scheduler_file, name, security, kwargs
        )
        if self._asynchronous:
            # Connecting blocks: it happens on a thread when awaited.
            self.status = "newly-created"
            self._pending_start: Callable[[], None] | None = start
        else:
            self._pending_start = None
            start()

    def _connect(
        self,
        address: Any,
        timeout: Any,
        set_as_default: bool,
        scheduler_file: str | None,
        name: str | None,
        security: Any,
        kwargs: dict[str, Any],
    ) -> None:
        if scheduler_file is not None:
            import json  # rarely needed: kept off the start-up path

            with open(scheduler_file) as f:
                address = json.load(f)["address"]
        if address is None:
            self.cluster = LocalCluster(security=security, **kwargs)
            self._owns_cluster = True
            address = self.cluster.scheduler_address
        elif isinstance(address, Cluster):
            self.cluster = address
            address = address.scheduler_address
        elif kwargs:
            raise TypeError(
                f"Unexpected keyword arguments {sorted(kwargs)}: these configure a local "
                "cluster and cannot be used with the address of an existing scheduler"
            )
        if not isinstance(address, str):
            raise TypeError(f"address must be a string like 'tcp://host:port', not {address!r}")
        try:
            if self.cluster is not None and (security is None or isinstance(security, bool)):
                security = self.cluster.security
            credentials = resolve_security(security, address)
            seconds = parse_timedelta(timeout)
            self._session = Session(
                address, 10.0 if seconds is None else seconds, name or self.id, credentials
            )
        except Exception:
            if self._owns_cluster and self.cluster is not None:
                self.cluster.close()
            raise
        self._session.owner = weakref.ref(self)
        self.status = "running"
        _all_clients.add(self)
        if set_as_default:
            context.set_default(self)
            dask_config.set_default_scheduler(self)

    # ----- lifecycle ---------------------------------------------------------

    @property
    def asynchronous(self) -> bool:
        """Whether calls that wait return coroutines to await (a client
        made with ``asynchronous=True``), as in Dask.
        """
        return self._asynchronous and not aio.in_sync_call()

    def __await__(self) -> Generator[Any, None, Client]:
        return self._astart().__await__()

    async def _astart(self) -> Client:
        start, self._pending_start = self._pending_start, None
        if start is not None:
            try:
                await aio.offload(start)
            except BaseException:
                self.status = "closed"
                raise
        return self

    async def __aenter__(self) -> Client:
        return await self._astart()

    async def __aexit__(self, *exc: Any) -> None:
        await aio.offload(self._close)

    def __enter__(self) -> Client:
        if self._asynchronous:
            raise RuntimeError(
                "an asynchronous client is used with 'async with Client(asynchronous=True)'"
            )
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @aio.maybe_async
    def close(self, timeout: Any = None) -> None:
        """Close this client; also close the local cluster it started.

        Parameters
        ----------
        timeout
            Seconds to wait for a local cluster's worker processes to exit.

        Returns
        -------
        None, or a coroutine to await with an asynchronous client.

        """
        self._close(timeout)

    def _close(self, timeout: Any = None) -> None:
        self._pending_start = None
        if self.status in ("closed", "connecting", "newly-created"):
            self.status = "closed"
            return
        self.status = "closed"
        dask_config.unset_default_scheduler(self)
        self._session.close()
        if self._owns_cluster and self.cluster is not None:
            self.cluster.close(parse_timedelta(timeout))
        context.unset_default(self)

    def shutdown(self) -> None:
        """Shut down the scheduler and every worker of the cluster, then close."""
        if self.status == "running":
            self._session.engine.shutdown_cluster()
        if self.cluster is not None:
            self.cluster.close()
        self.close()

    def start(self) -> None:
        """Connect again after :meth:`close` (a no-op while running), to
        the same scheduler.

        Raises
        ------
        RuntimeError
            If the client had started its own cluster, which closed with it.

        """
        if self.status == "running":
            return
        if self._owns_cluster:
            raise RuntimeError("this client's local cluster closed with it: create a new Client()")
        self._session = Session(self._session.address, 10.0, self.id, self._session.security)
        self._session.owner = weakref.ref(self)
        self.status = "running"
        _all_clients.add(self)

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:
            pass

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address, ``tcp://host:port``."""
        return self._session.address

    def _check_running(self) -> None:
        if self.status != "running":
            if self.status == "newly-created":
                raise RuntimeError(
                    "this asynchronous client has not started: "
                    "use 'await Client(..., asynchronous=True)' or 'async with'"
                )
            raise RuntimeError(f"this client is {self.status}")

    # ----- submitting ------------------------------------------------------

    def submit(
        self,
        func: Callable[..., Any],
        *args: Any,
        key: str | None = None,
        workers: Any = None,
        resources: Any = None,
        retries: int | None = None,
        priority: int = 0,
        fifo_timeout: Any = UNSET,
        allow_other_workers: bool = False,
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        retry_delay: float | None = None,
        retry_max_delay: float | None = None,
        retry_on: Any = None,
        limits: str | list[str] | None = None,
        **kwargs: Any,
    ) -> Future:
        """Run ``func(*args, **kwargs)`` on the cluster; return a Future at once.

        Parameters
        ----------
        func
            The function to run.
        *args, **kwargs
            Its arguments. Futures and Delayed objects anywhere inside are
            replaced by their values on the worker.
        key
            The task's key (default: the function's name and a token).
        workers
            Worker names, hosts or addresses the task may run on.
        resources
            Abstract resources the task needs while it runs, like
            ``{"GPU": 1}``: it goes only to a worker started with them (see
            ``shoal worker --resources``) where they are free.
        allow_other_workers
            With ``workers``: run anywhere when none of them is connected.
        retries
            Run a failed task again up to this many times.
        priority
            Higher priority tasks run first.
        pure
            Name the task by its inputs, so equal calls share one key and run
            once (default).
        retry_delay, retry_max_delay
            Make retries wait: ``retry_delay`` seconds before the first,
            doubling (with jitter) up to ``retry_max_delay``. The task holds
            no thread while it waits. Default: retry at once, as Dask.
        retry_on
            An exception class, or a tuple of them: only these errors are
            retried; any other fails the task at once. Default: all.
        limits
            The name of a cluster-wide limit (see :meth:`set_limit`), or a
            list of names: the task waits, holding no thread, until every one
            lets it start.
        actor, actors
            ``func`` is a class: build one object of it on a worker and keep
            it there; the future's result is an :class:`~shoal.Actor`
            handle whose method calls run on that object.
        fifo_timeout
            Dask's option that shoal does not support yet: it raises
            ``NotImplementedError`` unless left unset.

        Returns
        -------
        Future

        Examples
        --------
        >>> client.submit(inc, 1).result()  # doctest: +SKIP
        2

        """
        if not callable(func):
            raise TypeError("First input to submit must be a callable function")
        _reject_task_options(fifo_timeout)
        opts = options.parse(
            priority=priority,
            retries=retries,
            retry_delay=retry_delay,
            retry_max_delay=retry_max_delay,
            workers=workers,
            resources=resources,
            allow_other_workers=allow_other_workers,
            limits=limits,
        )
        self._check_running()
        self._session.share_imports()
        if actor or actors:
            func, pure = actor_factory(func), False  # each call makes a new actor
        func = retry_filter(func, retry_on)
        h, name, functions = self._session.function(func)
        frames, deps = serialize.dumps_args(args, kwargs, name)
        if serialize.nbytes(frames) > lift.MAX_SPEC_BYTES:
            args, kwargs, lifted = lift.lift_large(self.scatter, args, kwargs)
            if lifted:
                frames, deps = serialize.dumps_args(args, kwargs, name)
        if key is None:
            key = keys.task_key(name, h, frames, pure)
        else:
            key = keys.check_key(key)
        table = OptionsTable()
        specs = self._graphs_of(deps, functions, table) if deps else []
        specs.append(task_spec(key, h, frames, [d.key for d in deps], options=table.index(opts)))
        self._session.submit(functions, table, specs)
        return Future._adopt(key, self)

    def _graphs_of(self, deps: list[Any], functions: list[Any], table: OptionsTable) -> list[Any]:
        """Specs for the graphs behind Delayed arguments (sent along, with
        default options under their annotations); adds their functions to
        ``functions``.
        """
        lazy = [d for d in deps if isinstance(d, Delayed)]
        if not lazy:
            return []
        more, specs = graph_specs(lazy, set(), table)
        known = {f.hash for f in functions}
        functions.extend(f for f in more if f.hash not in known)
        return specs

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
        fifo_timeout: Any = UNSET,
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        batch_size: int | None = None,
        retry_delay: float | None = None,
        retry_max_delay: float | None = None,
        retry_on: Any = None,
        limits: str | list[str] | None = None,
        **kwargs: Any,
    ) -> list[Future]:
        """Run ``func`` on each element of the iterables; return a list of Futures.

        Parameters
        ----------
        func
            The function to run.
        *iterables
            Its positional arguments, element by element (as ``map``).
        key
            A prefix for the keys, or a list of explicit keys.
        workers, resources, allow_other_workers
            As for :meth:`submit`.
        retries, priority, pure, retry_delay, retry_max_delay, retry_on, limits
            As for :meth:`submit`.
        **kwargs
            Keyword arguments passed to every call.
        actor, actors
            Make one actor per element (see :meth:`submit`).
        fifo_timeout, batch_size
            Dask's options that shoal does not support yet: each raises
            ``NotImplementedError`` unless left unset.

        Returns
        -------
        list of Future

        Examples
        --------
        >>> client.gather(client.map(inc, range(3)))  # doctest: +SKIP
        [1, 2, 3]

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
        _reject_task_options(fifo_timeout)
        arguments.reject("batch_size", batch_size)
        opts = options.parse(
            priority=priority,
            retries=retries,
            retry_delay=retry_delay,
            retry_max_delay=retry_max_delay,
            workers=workers,
            resources=resources,
            allow_other_workers=allow_other_workers,
            limits=limits,
        )
        self._check_running()
        self._session.share_imports()
        if actor or actors:
            func, pure = actor_factory(func), False  # each call makes a new actor
        func = retry_filter(func, retry_on)
        h, name, functions = self._session.function(func)
        prefix = key if isinstance(key, str) else name
        explicit = key if isinstance(key, (list, tuple)) else None
        all_keys: list[str] = []
        all_frames: list[list[bytes]] = []
        all_deps: list[list[str]] = []
        lazy: list[Any] = []
        for i, args in enumerate(zip(*iterables)):
            frames, deps = serialize.dumps_args(args, kwargs, name)
            if serialize.nbytes(frames) > lift.MAX_SPEC_BYTES:
                args, kw, lifted = lift.lift_large(self.scatter, args, kwargs)
                if lifted:
                    frames, deps = serialize.dumps_args(args, kw, name)
            if deps:
                lazy.extend(d for d in deps if isinstance(d, Delayed))
                deps = [d.key for d in deps]
            if explicit is not None:
                if i >= len(explicit):
                    raise ValueError("map was given fewer keys than elements")
                k = keys.check_key(explicit[i])
            else:
                k = keys.task_key(prefix, h, frames, pure)
            all_keys.append(k)
            all_frames.append(frames)
            all_deps.append(deps)
        if explicit is not None and len(explicit) != len(all_keys):
            raise ValueError(f"map was given {len(explicit)} keys for {len(all_keys)} elements")
        # The graphs behind Delayed arguments go in the same message as the
        # tasks that need them: a task nobody wants and nothing in its
        # message depends on is dropped by the scheduler.
        table = OptionsTable()
        specs = self._graphs_of(lazy, functions, table) if lazy else []
        index = table.index(opts)
        specs.extend(
            task_spec(k, h, f, d, options=index) for k, f, d in zip(all_keys, all_frames, all_deps)
        )
        self._session.submit(functions, table, specs)
        return [Future._adopt(k, self) for k in all_keys]

    @aio.maybe_async
    def scatter(
        self,
        data: Any,
        workers: Any = None,
        broadcast: bool = False,
        direct: Any = None,
        hash: bool = True,
        timeout: Any = UNSET,
        asynchronous: Any = None,
    ) -> Any:
        """Move data into the cluster; return Futures pointing at it.

        Parameters
        ----------
        data
            A list, tuple or set (a list of Futures back), a dict (a dict of
            Futures, its keys becoming the task keys), or one value (one
            Future).
        workers
            Workers the data may live on.
        broadcast
            Copy the data onto every worker (of ``workers``, if given)
            before returning, as :meth:`replicate` does. Without it, workers
            fetch the data from each other on first use.
        hash
            Name data by its content, so equal data shares one key.
        direct
            Values larger than 64 KiB pickled always go straight to a
            worker, and smaller ones through the scheduler (which keeps a
            copy of them); ``direct=True`` is not supported.
        timeout
            Wait until the data is on a worker, at most this long (seconds,
            or a string such as ``"5 s"``); raise ``TimeoutError`` after.
            By default ``scatter`` returns at once.
        asynchronous
            Dask's option that shoal does not support yet: it raises
            ``NotImplementedError`` unless left unset.

        Returns
        -------
        Future, or a list or dict of them.

        """
        arguments.reject("direct", direct, unused=(None, False))
        arguments.reject("asynchronous", asynchronous)
        wait_for = None if timeout is UNSET else parse_timedelta(timeout)
        self._check_running()
        if isinstance(data, dict):
            items: list[tuple[str | None, Any]] = [(str(k), v) for k, v in data.items()]
        elif isinstance(data, (list, tuple, set, frozenset)):
            items = [(None, v) for v in data]
        else:
            items = [(None, data)]
        names = scatter_items(
            self._session,
            items,
            worker_names(workers),
            options.parse(workers=workers),
            hash,
            wait_for,
        )
        futures = [Future._adopt(k, self) for k in names]
        if wait_for is not None and not self._session.engine.wait(names, wait_for):
            raise TimeoutError(f"scattered data did not reach a worker within {timeout}")
        if broadcast:
            self._replicate(names, None, worker_names(workers), 2)
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

        Parameters
        ----------
        futures
            A Future, or lists, tuples, sets and dicts of them (nested), or an
            iterator of them (gathered lazily).
        errors
            ``"raise"`` the first failed future's exception, or ``"skip"``
            failed futures.
        direct
            Large results always come straight from the workers holding
            them; ``direct=False`` is not supported.
        asynchronous
            Dask's options that shoal does not support yet: each raises
            ``NotImplementedError`` unless left unset.

        Returns
        -------
        The results, in the structure of ``futures``.

        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        arguments.reject("direct", direct, unused=(None, True))
        arguments.reject("asynchronous", asynchronous)
        if self.asynchronous:
            return self._agather(futures, errors)
        if isinstance(futures, Iterator):
            return (self.gather(f, errors=errors) for f in futures)
        found: dict[str, None] = {}
        collect_keys(futures, found)
        if not found:
            return futures
        key_list = list(found)
        outcomes = self._session.outcomes(key_list)
        values: dict[str, Any] = {}
        for k, outcome in zip(key_list, outcomes or []):
            if outcome.kind == "value" or errors == "raise":
                values[k] = value_of(k, outcome, self)
        return _substitute(futures, values)

    async def _agather(self, futures: Any, errors: str) -> Any:
        found: dict[str, None] = {}
        collect_keys(futures, found)
        await aio.keys_done([(self._session, k) for k in found])
        return await aio.offload(self.gather, futures, errors)

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
        fifo_timeout: Any = UNSET,
        actors: Any = None,
        traverse: bool = True,
        limits: str | list[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Start computing Delayed objects (or dask collections) in the cluster.

        Parameters
        ----------
        collections
            A Delayed or dask collection, or a list of them.
        sync
            Return the results instead of Futures.
        optimize_graph
            Optimize dask collections' graphs as dask would.
        workers, resources, allow_other_workers, retries, priority
            As for :meth:`submit`, for every task of the graphs.
        traverse
            Look for lazy objects inside lists, tuples, sets and dicts among
            ``collections`` (each such container becomes one Future).
        limits
            Cluster-wide limits every task of the graphs counts against (see
            :meth:`set_limit`).
        fifo_timeout, actors, **kwargs
            Dask's options that shoal does not support yet: each raises
            ``NotImplementedError`` unless left unset.

        Returns
        -------
        A Future per collection (one Future for a single collection), or
        the results with ``sync=True``.

        """
        _reject_task_options(fifo_timeout, actors)
        opts = options.parse(
            priority=priority,
            retries=retries,
            workers=workers,
            resources=resources,
            allow_other_workers=allow_other_workers,
            limits=limits,
        )
        if kwargs:
            raise NotImplementedError(
                f"shoal does not pass optimization options {sorted(kwargs)} to dask yet: "
                "leave them unset"
            )
        single = not isinstance(collections, (list, tuple, set, frozenset))
        items = [collections] if single else list(collections)
        lazy = [self._as_lazy(x, traverse) for x in items]
        self._check_running()
        nodes = [as_node(x, optimize_graph) for x in lazy if x is not None]
        futures = iter(submit_nodes(self, nodes, opts))
        out = [next(futures) if x is not None else item for item, x in zip(items, lazy)]
        if sync:
            out = self.gather(out)
        return out[0] if single else out

    @staticmethod
    def _as_lazy(x: Any, traverse: bool) -> Any:
        """``x`` if lazy; a container of lazy objects as one Delayed (with
        ``traverse``); else None.
        """
        found = collect((x,), traverse)
        if not found:
            return None
        if found[0] is x:
            return x
        return delayed(x)

    def persist(
        self,
        collections: Any,
        optimize_graph: bool = True,
        workers: Any = None,
        allow_other_workers: bool = False,
        resources: Any = None,
        retries: int | None = None,
        priority: int = 0,
        fifo_timeout: Any = UNSET,
        actors: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Start computing in the cluster and return objects backed by the
        results, so later graphs reuse them instead of recomputing.

        A dask collection comes back as the same kind of collection whose
        graph holds futures of its partitions, as in Dask: the data stays
        on the workers until the collection is dropped.

        Parameters
        ----------
        collections
            A Delayed or dask collection, or a list of them.
        optimize_graph
            Optimize dask collections' graphs as dask would.
        workers, resources, allow_other_workers, retries, priority
            As for :meth:`submit`, for every task of the graphs (under any
            ``dask.annotate`` annotations of their own).
        fifo_timeout, actors, **kwargs
            Dask's options that shoal does not support yet: each raises
            ``NotImplementedError`` unless left unset.

        Returns
        -------
        The persisted collection(s), like ``collections``.

        Examples
        --------
        >>> df = client.persist(df)  # doctest: +SKIP
        >>> wait(df)  # doctest: +SKIP

        """
        _reject_task_options(fifo_timeout, actors)
        opts = options.parse(
            priority=priority,
            retries=retries,
            workers=workers,
            resources=resources,
            allow_other_workers=allow_other_workers,
        )
        if kwargs:
            raise NotImplementedError(
                f"shoal does not pass optimization options {sorted(kwargs)} to dask yet: "
                "leave them unset"
            )
        single = not isinstance(collections, (list, tuple, set, frozenset))
        items = [collections] if single else list(collections)
        self._check_running()
        out = persist_on(self, items, optimize_graph=optimize_graph, opts=opts)
        return out[0] if single else out

    def get(
        self,
        dsk: Any,
        keys: Any,
        workers: Any = None,
        allow_other_workers: Any = None,
        resources: Any = None,
        sync: bool = True,
        asynchronous: Any = None,
        direct: Any = None,
        retries: Any = None,
        priority: int = 0,
        fifo_timeout: Any = UNSET,
        actors: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Run a dask-style task graph and return the values of ``keys``.

        This is the protocol ``dask.compute(x, scheduler=client)`` calls.

        Parameters
        ----------
        dsk
            A dict graph (old-style tuples or task-spec nodes) or a graph
            expression.
        keys
            A key or a nested list of keys.
        workers, resources, allow_other_workers, retries, priority
            As for :meth:`submit`, for every task of the graph.
        sync, asynchronous, direct, fifo_timeout, actors
            Dask's options that shoal does not support yet: each raises
            ``NotImplementedError`` unless left unset.
        **kwargs
            None are accepted: an unknown option raises ``TypeError``.

        Returns
        -------
        The values, nested like ``keys``.

        """
        _reject_task_options(fifo_timeout, actors)
        opts = options.parse(
            priority=priority,
            retries=retries,
            workers=workers,
            resources=resources,
            allow_other_workers=allow_other_workers,
        )
        arguments.reject("sync", sync, unused=(True,))
        arguments.reject("asynchronous", asynchronous)
        arguments.reject("direct", direct, unused=(None, True))
        if kwargs:
            raise TypeError(f"get() got unexpected keyword arguments {sorted(kwargs)}")
        self._check_running()
        return run_dask_graph(self, dsk, keys, opts)

    @aio.maybe_async
    def cancel(self, futures: Any, asynchronous: Any = None, force: bool = False) -> None:
        """Cancel futures.

        They stop running if they have not started, and their ``result()``
        raises ``CancelledError``.

        Parameters
        ----------
        futures
            A Future, or lists, tuples, sets and dicts of them.
        asynchronous, force
            Dask's options that shoal does not support yet: each raises
            ``NotImplementedError`` unless left unset.

        """
        arguments.reject("asynchronous", asynchronous)
        arguments.reject("force", force)
        found: dict[str, None] = {}
        collect_keys(futures, found)
        self._session.engine.cancel(list(found))

    def get_executor(self, **kwargs: Any) -> ClientExecutor:
        """This cluster as a :class:`concurrent.futures.Executor`.

        Parameters
        ----------
        **kwargs
            Options for every task, as :meth:`submit` takes them
            (``workers``, ``resources``, ``retries``, ``priority``, ``pure``,
            ...); ``pure`` defaults to False, as in Dask.

        Returns
        -------
        ClientExecutor
            Its ``submit`` returns :class:`concurrent.futures.Future` objects.

        Examples
        --------
        >>> with client.get_executor() as ex:  # doctest: +SKIP
        ...     list(ex.map(inc, range(3)))
        [1, 2, 3]

        """
        return ClientExecutor(self, **kwargs)

    # ----- the cluster ------------------------------------------------------

    def set_limit(
        self,
        name: str,
        concurrency: int | None = None,
        rate: float | None = None,
        burst: float | None = None,
    ) -> None:
        """Create or change a cluster-wide limit on tasks tagged ``limits=name``.

        The scheduler enforces it for every client: a tagged task is not sent
        to a worker until the limit lets it start, so it holds no thread while
        it waits, and other work flows around it. Changes apply at once, also
        to tasks already waiting; ``scheduler_info()["limits"]`` shows each
        limit with its ``running`` and ``waiting`` tasks.

        Parameters
        ----------
        name
            The limit's name.
        concurrency
            At most this many tagged tasks run at once (0 pauses them).
        rate
            At most this many tagged tasks start per second...
        burst
            ... with bursts of up to this many (default 1).

        Examples
        --------
        >>> client.set_limit("api", concurrency=8, rate=10, burst=5)  # doctest: +SKIP
        >>> client.map(call_api, urls, limits="api")  # doctest: +SKIP

        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a limit's name must be a non-empty string, not {name!r}")
        if concurrency is None and rate is None:
            raise ValueError("a limit needs a concurrency, a rate, or both")
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0
        ):
            raise ValueError(f"concurrency must be a whole number, 0 or more, not {concurrency!r}")
        if rate is not None and not float(rate) > 0:
            raise ValueError(f"rate must be a positive number of tasks per second, not {rate!r}")
        if burst is not None and (rate is None or not float(burst) >= 1):
            raise ValueError("burst goes with a rate and must be 1 or more")
        self._check_running()
        self._session.engine.set_limit(
            name,
            concurrency,
            None if rate is None else float(rate),
            None if burst is None else float(burst),
        )

    def get_task_stream(
        self,
        start: Any = None,
        stop: Any = None,
        count: int | None = None,
        plot: Any = False,
        filename: str = "task-stream.html",
        bokeh_resources: Any = None,
    ) -> Any:
        """The tasks that ran recently, as Dask records them.

        The scheduler keeps the most recent 50,000.

        Parameters
        ----------
        start, stop
            Only tasks that started after ``start`` and stopped before
            ``stop``: seconds since the epoch, or a duration before now such
            as ``"60s"`` or ``"500 ms"``.
        count
            Only the newest ``count`` of those.
        plot
            ``'save'`` also writes them to ``filename`` as a self-contained
            HTML page, and returns ``(records, path)``.
        filename
            Where ``plot='save'`` writes.
        bokeh_resources
            Not supported (shoal draws no Bokeh figures): leave it None.

        Returns
        -------
        list of dict
            One per task: ``key``, ``name`` (its function), ``worker``,
            ``thread``, ``status`` (``'OK'`` or ``'error'``), ``nbytes``,
            ``startstops`` (``({'action': 'compute', 'start': ..., 'stop': ...},)``)
            and ``metadata``.

        Examples
        --------
        >>> client.gather(client.map(inc, range(10)))  # doctest: +SKIP
        >>> len(client.get_task_stream(start="10 s"))  # doctest: +SKIP
        10

        """
        from .diagnostics import report, task_stream

        task_stream.check_plot(plot, bokeh_resources)
        self._check_running()
        data = task_stream.select(task_stream.records_since(self._session, 0), start, stop, count)
        if plot == "save":
            # The page starts at the first task's start (see write_report).
            now = time.time()
            return data, report.write_report(filename, data, now, now, "task stream")
        return data

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's status page, ``http://host:port/status``, or None
        if the scheduler runs no dashboard.

        Examples
        --------
        >>> client = Client(n_workers=2)  # doctest: +SKIP
        >>> client.dashboard_link  # doctest: +SKIP
        'http://127.0.0.1:8787/status'

        """
        url = self._session.engine.dashboard
        return None if url is None else f"{url}/status"

    def _workers(self) -> list[dict[str, Any]]:
        return self._session.engine.workers() if self.status == "running" else []

    def __repr__(self) -> str:
        workers = self._workers()
        threads = sum(w["nthreads"] for w in workers)
        memory = sum(w["memory"] for w in workers)
        dashboard = "" if self.dashboard_link is None else f" dashboard={self.dashboard_link!r}"
        return (
            f"<Client: {self.scheduler_address!r} processes={len(workers)} "
            f"threads={threads}, memory={format_bytes(memory)}{dashboard}>"
        )

    def _repr_html_(self) -> str:
        import html  # only notebooks need it: kept off the start-up path

        workers = self._workers()
        rows = "".join(
            f"<tr><td>{w['name']}</td><td>{w['address']}</td><td>{w['nthreads']}</td>"
            f"<td>{format_bytes(w['memory'])}</td></tr>"
            for w in workers
        )
        link = self.dashboard_link
        dashboard = (
            ""
            if link is None
            else f'<b>Dashboard:</b> <a href="{html.escape(link)}" target="_blank">'
            f"{html.escape(link)}</a> &nbsp; "
        )
        return (
            f"<div><h3>Client</h3><p><b>Scheduler:</b> {self.scheduler_address} &nbsp; "
            f"{dashboard}"
            f"<b>Status:</b> {self.status} &nbsp; <b>Workers:</b> {len(workers)} &nbsp; "
            f"<b>Threads:</b> {sum(w['nthreads'] for w in workers)} &nbsp; "
            f"<b>Memory:</b> {format_bytes(sum(w['memory'] for w in workers))}</p>"
            "<table><tr><th>Worker</th><th>Address</th><th>Threads</th><th>Memory</th></tr>"
            f"{rows}</table></div>"
        )


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


def _implicit_client() -> Client:
    """The client ``compute`` uses when there is no default: a worker on
    threads of this process, started on first use and reused. It starts in
    milliseconds; like any shoal worker it runs one task per core while
    tasks compute and more while they wait on I/O (HTTP calls, the usual
    content of lazy graphs built without a cluster).
    """
    return Client(
        processes=False,
        n_workers=1,
        threads_per_worker=os.cpu_count() or 1,
        set_as_default=False,
    )


context.set_implicit_factory(_implicit_client)
context.set_client_class(Client)


@atexit.register
def _close_all() -> None:
    context.close_implicit()
    for c in list(_all_clients):
        try:
            c._close()
        except Exception:
            pass
