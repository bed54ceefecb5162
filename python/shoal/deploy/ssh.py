"""SSHCluster: a scheduler and workers on machines reached over SSH, as
Dask's ``SSHCluster``.

The first host runs ``shoal scheduler``, every other host runs workers.
Each remote process is started with ``asyncssh`` and gets the cluster's
token and TLS (as PEM text, from this machine's files) on its standard
input, never on a command line; it exits when its SSH channel closes
(its standard input ends), so closing the cluster, or this process dying,
leaves nothing running.
"""

from __future__ import annotations

import asyncio
import collections
import shlex
import sys
import threading
from typing import Any

from .. import _engine
from ..core import security as security_
from ..core.session import Session
from ..core.times import parse_timedelta
from .cluster import Cluster

#: Lines of output kept per remote process, for ``get_logs``.
LOG_LINES = 10_000

#: ``shoal worker`` options ``worker_options`` may set, and their flags.
WORKER_OPTIONS = {
    "nthreads": "--nthreads",
    "memory_limit": "--memory-limit",
    "local_directory": "--local-directory",
    "max_threads": "--max-threads",
    "resources": "--resources",
    "listen_host": "--listen-host",
}
#: ``shoal scheduler`` options ``scheduler_options`` may set.
SCHEDULER_OPTIONS = {
    "port": "--port",
    "dashboard_address": "--dashboard-address",
    "worker_ttl": "--worker-ttl",
    "allowed_failures": "--allowed-failures",
}


class _Loop:
    """An asyncio loop on a thread of its own, for the SSH connections."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="shoal-ssh", daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class _Remote:
    """One process started over SSH, its output kept."""

    def __init__(self, name: str, host: str, process: Any):
        self.name = name
        self.host = host
        self.process = process
        self.log: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        loop = asyncio.get_running_loop()
        #: Its first two lines of output, as they come.
        self.head: list[asyncio.Future[str]] = [loop.create_future() for _ in range(2)]
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        n = 0
        async for line in self.process.stdout:
            self.log.append(line.rstrip("\n"))
            if n < len(self.head):
                self.head[n].set_result(line)
            n += 1
        for f in self.head[n:]:
            f.set_exception(
                RuntimeError(f"{self.name} on {self.host} exited:\n" + "\n".join(self.log))
            )
            # Whoever awaits it gets the error; nobody else need hear of it.
            f.exception()

    async def stop(self, timeout: float) -> None:
        """End its standard input (its lifeline) and wait for it to exit."""
        try:
            self.process.stdin.write_eof()
        except Exception:
            pass  # the channel is gone already
        try:
            await asyncio.wait_for(self.process.wait_closed(), timeout)
        except asyncio.TimeoutError:
            self.process.kill()  # asks sshd to signal it
        await asyncio.gather(self.reader, return_exceptions=True)


class SSHCluster(Cluster):
    """A scheduler on the first of ``hosts`` and workers on the others,
    started over SSH.

    Parameters
    ----------
    hosts
        Host names or addresses: the scheduler runs on the first and
        listens there; one worker starts on each of the others (a host may
        be named more than once).
    connect_options
        Keyword arguments of ``asyncssh.connect`` (``username``,
        ``client_keys``, ``known_hosts``, ``port``, ...), one dict for all
        hosts or a list with one per host.
    worker_options
        ``nthreads``, ``memory_limit``, ``local_directory``,
        ``max_threads``, ``resources``, ``listen_host``: options of
        ``shoal worker``.
    scheduler_options
        ``port`` (default 8786), ``dashboard_address`` (default: none),
        ``worker_ttl``, ``allowed_failures``: options of ``shoal scheduler``.
    remote_python
        The Python with shoal installed on the hosts (default: this
        process's executable, which suits hosts sharing its file system),
        one for all or a list with one per host.
    security
        A :class:`~shoal.Security`: its token (a new one if it has none)
        and, if it has TLS, its certificates (read here, sent as text) are
        what every process uses; ``True`` means ``Security.temporary()``.
    timeout
        Seconds to wait for the scheduler and the workers to start.

    Examples
    --------
    >>> cluster = SSHCluster(["10.0.0.1", "10.0.0.2", "10.0.0.3"],
    ...                      connect_options={"known_hosts": None})  # doctest: +SKIP
    >>> client = Client(cluster)  # doctest: +SKIP

    """

    def __init__(
        self,
        hosts: list[str],
        connect_options: dict[str, Any] | list[dict[str, Any]] | None = None,
        worker_options: dict[str, Any] | None = None,
        scheduler_options: dict[str, Any] | None = None,
        remote_python: str | list[str] | None = None,
        security: Any = None,
        timeout: Any = "60s",
        **kwargs: Any,
    ):
        if kwargs:
            raise TypeError(f"SSHCluster() got unexpected arguments {sorted(kwargs)}")
        if isinstance(hosts, str) or not hosts:
            raise ValueError("hosts must be a list of at least one host (the scheduler's)")
        try:
            import asyncssh  # noqa: F401
        except ImportError:
            raise ImportError(
                "SSHCluster needs asyncssh: pip install 'shoal[ssh]' (or asyncssh)"
            ) from None
        self.hosts = list(hosts)
        self._connect = _per_host(connect_options or {}, self.hosts, "connect_options")
        self._python = _per_host(remote_python or sys.executable, self.hosts, "remote_python")
        self._worker_args = _arguments(worker_options or {}, WORKER_OPTIONS, "worker_options")
        options = {"port": 8786, **(scheduler_options or {})}
        self._scheduler_args = _arguments(options, SCHEDULER_OPTIONS, "scheduler_options")
        if "dashboard_address" not in options:
            self._scheduler_args.append("--no-dashboard")
        self.security = security_.cluster_credentials(security)
        self._timeout = parse_timedelta(timeout) or 60.0
        self._loop = _Loop()
        self._connections: dict[int, Any] = {}
        self._scheduler: _Remote | None = None
        self._workers: list[_Remote] = []
        self._started = 0
        self._address = ""
        self._dashboard: str | None = None
        self.status = "starting"
        try:
            self._loop.run(self._start_scheduler(), self._timeout)
            self._monitor = Session(self._address, self._timeout, "cluster-monitor", self.security)
            self._start_workers(len(self.hosts) - 1)
            self.n_workers = len(self.hosts) - 1
            if not self._monitor.wait_for_workers(self.n_workers, self._timeout):
                outputs = {r.name: "\n".join(r.log) for r in self._workers}
                raise TimeoutError(
                    f"{self.n_workers} workers did not connect within {self._timeout} s: {outputs}"
                )
        except BaseException:
            self.close()
            raise
        security_.remember(self._address, self.security)
        self.status = "running"

    # ----- processes ---------------------------------------------------------

    async def _connection(self, i: int) -> Any:
        import asyncssh

        if i not in self._connections:
            self._connections[i] = await asyncssh.connect(self.hosts[i], **self._connect[i])
        return self._connections[i]

    async def _spawn(self, i: int, name: str, argv: list[str], role: str) -> _Remote:
        import asyncssh

        conn = await self._connection(i)
        command = shlex.join([self._python[i], "-m", "shoal", *argv])
        # Its errors go with its output.
        process = await conn.create_process(command, stderr=asyncssh.STDOUT)
        process.stdin.write(security_.credentials_line(self.security, role) + "\n")
        return _Remote(name, self.hosts[i], process)

    async def _start_scheduler(self) -> None:
        argv = ["scheduler", "--host", self.hosts[0], *self._scheduler_args]
        argv += ["--credentials-stdin", "--lifeline"]
        self._scheduler = await self._spawn(0, "scheduler", argv, "scheduler")
        first = await self._scheduler.head[0]
        if not first.startswith("Scheduler at: "):
            raise RuntimeError(f"the scheduler on {self.hosts[0]} said: {first.strip()}")
        self._address = first.split(": ", 1)[1].strip()
        if "--no-dashboard" not in self._scheduler_args:
            # The next line names the dashboard.
            second = await self._scheduler.head[1]
            if second.startswith("Dashboard at: "):
                self._dashboard = second.split(": ", 1)[1].strip().removesuffix("/status")

    def _start_workers(self, n: int) -> None:
        hosts = list(range(1, len(self.hosts))) or [0]

        async def start() -> None:
            for _ in range(n):
                i = hosts[self._started % len(hosts)]
                name = f"ssh-{self._started}"
                self._started += 1
                argv = ["worker", self._address, "--name", name, *self._worker_args]
                argv += ["--credentials-stdin", "--lifeline"]
                self._workers.append(await self._spawn(i, name, argv, "worker"))

        self._loop.run(start(), self._timeout)

    def _prepare_stop(self, workers: list[Any]) -> Any:
        return workers

    def _stop_workers(self, token: Any, retired: list[str]) -> None:
        gone = {_engine.strip_scheme(a) for a in retired}
        names = {w.info.name for w in token if _engine.strip_scheme(w.info.address) in gone}
        stopping = [r for r in self._workers if r.name in names]
        self._workers = [r for r in self._workers if r.name not in names]

        async def stop() -> None:
            await asyncio.gather(*(r.stop(10.0) for r in stopping))

        self._loop.run(stop())

    # ----- what users see ----------------------------------------------------

    @property
    def scheduler_address(self) -> str:
        """Where clients and workers connect."""
        return self._address

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's status page, or None if it runs none."""
        return None if self._dashboard is None else f"{self._dashboard}/status"

    def _scheduler_logs(self) -> str:
        """The remote scheduler's output (its log lines and anything else it
        printed).
        """
        return "" if self._scheduler is None else "\n".join(self._scheduler.log)

    def close(self, timeout: float | None = None) -> None:
        """Shut the cluster down: the scheduler tells its workers to go, then
        every SSH channel and connection is closed.
        """
        if self.status == "closed":
            return
        self.status = "closed"
        self.stop_adapting()
        if self._monitor is not None:
            try:
                self._monitor.shutdown_cluster()
            finally:
                self._monitor.close()
        if self._address:
            security_.forget(self._address)
        wait = 10.0 if timeout is None else float(timeout)

        async def stop() -> None:
            remotes = self._workers + ([self._scheduler] if self._scheduler else [])
            await asyncio.gather(*(r.stop(wait) for r in remotes))
            for conn in self._connections.values():
                conn.close()
            await asyncio.gather(
                *(c.wait_closed() for c in self._connections.values()), return_exceptions=True
            )

        try:
            self._loop.run(stop(), wait + 10.0)
        finally:
            self._loop.close()


def _per_host(value: Any, hosts: list[str], what: str) -> list[Any]:
    """``value`` for each host: one for all, or a list with one per host."""
    if isinstance(value, list):
        if len(value) != len(hosts):
            raise ValueError(f"{what} has {len(value)} entries for {len(hosts)} hosts")
        return list(value)
    return [value] * len(hosts)


def _arguments(options: dict[str, Any], known: dict[str, str], what: str) -> list[str]:
    """Command-line flags for ``options``; an unknown one is a TypeError."""
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise TypeError(f"{what} does not take {unknown}; it takes {sorted(known)}")
    argv: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        if name == "resources" and isinstance(value, dict):
            value = ",".join(f"{k}={v!r}" for k, v in value.items())
        argv += [known[name], str(value)]
    return argv
