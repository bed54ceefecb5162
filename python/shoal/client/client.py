"""The Client: the user's connection to a shoal cluster (its lifecycle and
reprs; what it does is in the sibling modules it is made of).
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import uuid
import weakref
from collections.abc import Generator
from typing import Any, Callable

from .. import _engine
from ..core import aio, arguments, context, families
from ..core.arguments import UNSET
from ..core.errors import ClosedClientError
from ..core.preload import Preloads
from ..core.security import resolve as resolve_security
from ..core.session import Session
from ..core.settings import setting
from ..core.sizes import format_bytes
from ..core.times import parse_timedelta
from ..dask import config as dask_config
from ..deploy.cluster import Cluster
from ..deploy.local import LocalCluster
from ..worker import task_context as worker_context
from .collections import Collections
from .contexts import ContextCalls
from .datasets import DatasetMethods
from .diagnostics import DiagnosticCalls
from .events import EventCalls
from .gathering import Gathering
from .held import Held
from .metadata import MetadataCalls
from .plugins import PluginCalls
from .recreate import Recreating
from .restarts import RestartCalls
from .submit import Submitting
from .versions import VersionCalls
from .workers import WorkerCalls

_all_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@dataclasses.dataclass(frozen=True)
class SchedulerHandle:
    """The scheduler a client talks to.

    Attributes
    ----------
    address : str
        ``tcp://host:port`` (``tls://`` with TLS).

    """

    address: str


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
    >>> def total(paths):
    ...     client = get_client()  # in a task: the worker's client
    ...     return sum(client.gather(client.map(os.path.getsize, paths)))

    """
    seconds = parse_timedelta(timeout)
    worker = worker_context.current_worker()

    def same(a: str, b: str) -> bool:
        if resolve_address:
            return _engine.strip_scheme(a) == _engine.strip_scheme(b)
        return a == b

    if worker is not None and (address is None or same(address, worker.scheduler_address)):
        return worker.client(timeout=10.0 if seconds is None else seconds)
    if address is not None:
        for c in list(_all_clients):
            if c.status == "running" and same(c.scheduler_address, address):
                return c
        return Client(address, timeout=10.0 if seconds is None else seconds)
    return context.default_client()


class Client(
    Submitting,
    Gathering,
    Collections,
    WorkerCalls,
    DiagnosticCalls,
    RestartCalls,
    Recreating,
    DatasetMethods,
    VersionCalls,
    EventCalls,
    PluginCalls,
    MetadataCalls,
    ContextCalls,
    Held,
):
    """Connect to a shoal cluster, or start a local one, and run tasks on it.

    Parameters
    ----------
    address
        ``"tcp://host:port"`` of a running scheduler, a cluster object
        (:class:`LocalCluster`, ``SSHCluster``),
        or None to start a local cluster (keyword arguments such as
        ``n_workers`` and ``threads_per_worker`` go to it).
    timeout
        Seconds (or ``"30 s"``) to wait for the connection (default: Dask's
        ``distributed.comm.timeouts.connect``, 30 s).
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
    loop
        An asyncio event loop running in another thread (or a tornado
        ``IOLoop`` on one), on which :meth:`sync` runs coroutines; shoal's
        own calls need no loop.
    serializers, deserializers
        Dask's serialization families (``"msgpack"``, ``"dask"``,
        ``"error"``, ``"pickle"``, ``"cloudpickle"``) this client sends and
        loads values with; without ``"pickle"`` it refuses the rest before
        anything is built (see :mod:`shoal.core.families`). Default: all;
        the deserializers default to the serializers.
    direct_to_workers
        True or unset: the client reads results from (and scatters and
        runs functions on) the workers themselves. ``False``: the scheduler
        carries each of those connections to its worker, for a client that
        can reach the scheduler but not the workers (behind a NAT, through
        an SSH tunnel).

    Dask's ``distributed.client.preload`` configuration names code to run
    as the client starts and closes: a module name, a ``.py`` path or Python
    source text defining ``dask_setup(client)`` and/or
    ``dask_teardown(client)``.

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
        timeout: Any = UNSET,
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
        self._event_handlers: dict[str, tuple[int, Callable[[Any], Any]]] = {}
        self._entered: list[Any] = []
        self._set_as_default = set_as_default
        self._preloads = Preloads(
            setting("distributed.client.preload", None),
            setting("distributed.client.preload-argv", None),
        )
        aio.as_event_loop(loop)  # checked here, used by sync()
        self._loop = loop
        if self._asynchronous and self._loop is None and not aio.loop_running():
            raise RuntimeError(
                "Client(asynchronous=True) needs a running event loop: make it inside "
                "'async def' (await Client(..., asynchronous=True), or async with), "
                "or use a synchronous Client()"
            )
        for option, value in (
            ("heartbeat_interval", heartbeat_interval),
            ("extensions", extensions),
            ("connection_limit", connection_limit),
        ):
            arguments.reject(option, value)
        if direct_to_workers is None:
            direct_to_workers = setting("distributed.client.direct-to-workers", None) or None
        if direct_to_workers is not None and not isinstance(direct_to_workers, bool):
            raise TypeError(
                f"direct_to_workers must be True, False or None, not {direct_to_workers!r}"
            )
        #: Dask's option: True or None (unset) read results from the workers
        #: holding them; False has the scheduler carry every data connection
        #: (for a client that can reach only the scheduler).
        self.direct_to_workers: bool | None = direct_to_workers
        # Dask's serialization families: what this client sends and loads
        # (None: anything); the deserializers default to the serializers.
        self._serializers = families.parse(serializers, "serializers")
        self._deserializers = (
            self._serializers
            if deserializers is None
            else families.parse(deserializers, "deserializers")
        )
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
            if self._loop is None:
                self._loop = getattr(address, "loop", None)
            address = address.scheduler_address
        elif kwargs:
            raise TypeError(
                f"Unexpected keyword arguments {sorted(kwargs)}: these configure a local "
                "cluster and cannot be used with the address of an existing scheduler"
            )
        if not isinstance(address, str):
            hint = " (an instance, not the class)" if isinstance(address, type) else ""
            raise TypeError(
                f"Scheduler address must be a string or a Cluster instance{hint}, not "
                f"{address!r}; an address looks like 'tcp://host:port'"
            )
        try:
            if self.cluster is not None and (security is None or isinstance(security, bool)):
                security = self.cluster.security
            credentials = resolve_security(security, address)
            if timeout is UNSET:
                timeout = setting("distributed.comm.timeouts.connect", "30s")
            seconds = parse_timedelta(timeout)
            if seconds is not None and seconds <= 0:
                # No time to connect at all, as in Dask (TimeoutError is an OSError).
                raise TimeoutError(f"could not connect to {address} within {timeout} s")
            self._session = Session(
                address,
                10.0 if seconds is None else seconds,
                name or self.id,
                credentials,
                direct=self.direct_to_workers is not False,
            )
        except Exception:
            if self._owns_cluster and self.cluster is not None:
                self.cluster.close()
            raise
        self._session.owner = weakref.ref(self)
        self.status = "running"
        _all_clients.add(self)
        if not context.in_task():
            # A task's client does not print its own tasks' output again.
            self._subscribe_events()
        if set_as_default:
            context.set_default(self)
            dask_config.set_default_scheduler(self)
        for pending in self._preloads.calls("dask_setup", self):
            aio.run_to_end(pending)

    # ----- lifecycle ---------------------------------------------------------

    @property
    def asynchronous(self) -> bool:
        """Whether calls that wait return coroutines to await: for a client
        made with ``asynchronous=True``, when called from a thread running
        an event loop. As in Dask, from any other thread (a task on a worker
        in this process, a thread pool) its calls return results.
        """
        return self._asynchronous and not aio.in_sync_call() and aio.loop_running()

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

    # `with`/`async with` makes the client current in the block, as Dask's
    # do; leaving it from another thread or task raises ValueError.

    async def __aenter__(self) -> Client:
        await self._astart()
        if self._set_as_default:
            # As Dask's: inside the block this is the client, even where
            # another one became the default meanwhile.
            self._entered.append(context.enter_current(self))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            if self._entered:
                context.leave_current(self._entered.pop())
        finally:
            await aio.offload(self._close)

    def __enter__(self) -> Client:
        if self._asynchronous:
            raise RuntimeError(
                "an asynchronous client is used with 'async with Client(asynchronous=True)'"
            )
        if self._set_as_default:
            self._entered.append(context.enter_current(self))
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._entered:
                context.leave_current(self._entered.pop())
        finally:
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
        for pending in self._preloads.calls("dask_teardown", self):
            aio.run_to_end(pending)
        dask_config.unset_default_scheduler(self)
        self._session.close()
        if self._owns_cluster and self.cluster is not None:
            self.cluster.close(parse_timedelta(timeout))
        context.unset_default(self)

    def shutdown(self) -> None:
        """Shut down the scheduler and every worker of the cluster, then close."""
        if self.status == "running":
            self._session.shutdown_cluster()
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
        old = self._session
        self._session = Session(old.address, 10.0, self.id, old.security, direct=old.direct)
        self._session.owner = weakref.ref(self)
        self.status = "running"
        _all_clients.add(self)
        if not context.in_task():
            # A task's client does not print its own tasks' output again.
            self._subscribe_events()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:
            pass

    @property
    def scheduler_address(self) -> str:
        """The scheduler's address, ``tcp://host:port``."""
        return self._session.address

    @property
    def scheduler(self) -> SchedulerHandle:
        """The scheduler this client talks to (its ``address``), as Dask's
        ``client.scheduler.address``.
        """
        return SchedulerHandle(self._session.address)

    def write_scheduler_file(self, scheduler_file: str) -> None:
        """Write the scheduler's address to ``scheduler_file`` (JSON, as
        Dask's), for ``Client(scheduler_file=...)`` in other processes.

        Raises
        ------
        ValueError
            If the file exists already.

        Examples
        --------
        >>> client.write_scheduler_file("scheduler.json")  # doctest: +SKIP
        >>> other = Client(scheduler_file="scheduler.json")  # doctest: +SKIP

        """
        import json  # rarely needed: kept off the start-up path

        if os.path.exists(scheduler_file):
            raise ValueError(f"{scheduler_file} exists already: choose a new file")
        self._check_running()
        with open(scheduler_file, "w") as f:
            json.dump({"address": self.scheduler_address}, f)

    def _check_running(self) -> None:
        if self.status != "running":
            if self.status == "newly-created":
                raise RuntimeError(
                    "this asynchronous client has not started: "
                    "use 'await Client(..., asynchronous=True)' or 'async with'"
                )
            raise ClosedClientError(f"this client is {self.status}")

    # ----- submitting ------------------------------------------------------

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's status page, ``http://host:port/status``, or None
        if the scheduler runs no dashboard. Dask's
        ``distributed.dashboard.link`` template shapes it (a JupyterHub
        proxy's path, say).

        Examples
        --------
        >>> client = Client(n_workers=2)  # doctest: +SKIP
        >>> client.dashboard_link  # doctest: +SKIP
        'http://127.0.0.1:8787/status'

        """
        if self.cluster is not None:  # the cluster's own link, as in Dask
            return self.cluster.dashboard_link
        url = self._session.dashboard
        return None if url is None else dask_config.dashboard_link(url)

    def _workers(self) -> list[Any]:
        return self._session.workers() if self.status == "running" else []

    def __repr__(self) -> str:
        if self.status != "running":
            return f"<Client: No scheduler connected ({self.status})>"
        workers = self._workers()
        threads = sum(w.nthreads for w in workers)
        memory = sum(w.memory for w in workers)
        link = self.dashboard_link
        dashboard = "" if link is None else f" dashboard={link!r}"
        return (
            f"<Client: {self.scheduler_address!r} processes={len(workers)} "
            f"threads={threads}, memory={format_bytes(memory)}{dashboard}>"
        )

    def _repr_html_(self) -> str:
        import html  # only notebooks need it: kept off the start-up path

        if self.status != "running":
            return f"<div><h3>Client</h3><p>No scheduler connected. ({self.status})</p></div>"
        workers = self._workers()
        rows = "".join(
            f"<tr><td>{html.escape(w.name)}</td><td>{html.escape(w.address)}</td>"
            f"<td>{w.nthreads}</td><td>{format_bytes(w.memory)}</td></tr>"
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
            "<div><h3>Client</h3><p><b>Scheduler:</b> "
            f"{html.escape(self.scheduler_address)} &nbsp; "
            f"{dashboard}"
            f"<b>Status:</b> {self.status} &nbsp; <b>Workers:</b> {len(workers)} &nbsp; "
            f"<strong>Total threads: </strong>{sum(w.nthreads for w in workers)} &nbsp; "
            f"<b>Memory:</b> {format_bytes(sum(w.memory for w in workers))}</p>"
            "<table><tr><th>Worker</th><th>Address</th><th>Threads</th><th>Memory</th></tr>"
            f"{rows}</table></div>"
        )


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
