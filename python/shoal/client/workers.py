"""The Client's calls about workers rather than single tasks: running
functions on every worker, where data is, retiring, replicating,
restarting and waiting for workers. Part of :class:`Client`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Callable

from .. import _engine
from .._engine import Answer, Coord, RunAnswer
from ..coordination._request import ask
from ..core import aio, arguments, nested, serialize
from ..core.errors import rebuild
from ..core.times import parse_timedelta
from ..futures import Future
from ..worker.uploads import wait_uploaded


def _scheme(address: str, scheme: str) -> str:
    """``address`` with a scheme (``scheme`` if it has none)."""
    return address if "://" in address else _engine.in_scheme(scheme, address)


def worker_names(workers: Any) -> list[str]:
    """``workers=`` as a list of names, hosts or addresses."""
    if workers is None:
        return []
    if isinstance(workers, str):
        return [workers]
    return [str(w) for w in workers]


def _worker_entry(w: Any) -> dict[str, Any]:
    """One worker in ``scheduler_info()``, in Dask's layout."""
    info = w.info
    return {
        "type": "Worker",
        "id": info.name,
        "name": info.name,
        "host": info.host,
        "nthreads": info.nthreads,
        "memory_limit": info.memory,
        "pid": info.pid,
        "resources": dict(info.resources),
        "status": "paused" if w.paused else "running",
        "metrics": {
            "stored": w.stored,
            "assigned": w.assigned,
            "memory": w.rss,
            "managed_bytes": w.managed,
            "spilled_bytes": {"memory": w.managed, "disk": w.spilled},
            "unmanaged_bytes": max(w.rss - w.managed, 0),
        },
        # Kept for callers of shoal's earlier layout.
        "address": info.address,
        "memory": info.memory,
        "stored": w.stored,
        "assigned": w.assigned,
    }


class WorkerCalls:
    """The Client's calls about its workers."""

    def _check_running(self) -> None:  # provided by Client
        raise NotImplementedError

    def _request(self, op: Coord) -> Answer:
        self._check_running()
        return ask(self, op)

    @aio.maybe_async
    def run(
        self,
        function: Callable[..., Any],
        *args: Any,
        workers: Any = None,
        wait: bool = True,
        nanny: bool = False,
        on_error: str = "raise",
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        """Run ``function(*args, **kwargs)`` on every worker, outside the
        task slots, and return the results by worker address.

        A function with a ``dask_worker`` parameter gets the worker (see
        :func:`shoal.get_worker`). ``async def`` functions are awaited on the
        worker's event loop.

        Parameters
        ----------
        function
            The function to run.
        *args, **kwargs
            Its arguments.
        workers
            Addresses (or one address) of the workers to run on (default:
            all).
        wait
            False: start the calls and return None at once.
        nanny
            Not supported (shoal workers have no nanny); leave False.
        on_error
            ``"raise"`` the first error, ``"return"`` it in place of the
            result, or ``"ignore"`` the workers that failed.

        Returns
        -------
        dict
            ``{worker address: result}``, or None with ``wait=False``.

        Examples
        --------
        >>> import os
        >>> client.run(os.getpid)  # doctest: +SKIP
        {'tcp://127.0.0.1:40123': 4021, 'tcp://127.0.0.1:40125': 4022}

        """
        if not callable(function):
            raise TypeError("run needs a callable function")
        arguments.reject("nanny", nanny)
        if on_error not in ("raise", "return", "ignore"):
            raise ValueError(f"on_error must be 'raise', 'return' or 'ignore', not {on_error!r}")
        self._check_running()
        if workers is None:
            targets = [w.address for w in self._session.workers()]
        else:
            targets = [workers] if isinstance(workers, str) else list(workers)
            targets = [_scheme(w, self._session.security.scheme) for w in targets]
        try:
            call = serialize.dumps((function, args, kwargs))
        except Exception as e:
            raise TypeError(f"Could not serialize the call to {function!r}: {e}") from e
        if not wait:
            import threading

            engine = self._session
            threading.Thread(
                target=engine.run_on_workers, args=(targets, call), daemon=True
            ).start()
            return None
        results: dict[str, Any] = {}
        for address, answer in self._session.run_on_workers(targets, call):
            if isinstance(answer, RunAnswer.Value):
                results[address] = serialize.loads_for(answer.frames, self)
                continue
            if isinstance(answer, RunAnswer.Raised):
                error: BaseException = rebuild(answer.error)
            else:
                error = OSError(f"could not run {function!r} on {address}: {answer.message}")
            if on_error == "raise":
                raise error
            if on_error == "return":
                results[address] = error
        return results

    def run_on_scheduler(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Not possible on shoal: its scheduler is written in Rust and runs
        no Python.

        Raises
        ------
        NotImplementedError
            Always, naming what to use instead.

        """
        raise NotImplementedError(
            "shoal's scheduler runs no Python, so run_on_scheduler cannot call "
            f"{getattr(function, '__name__', function)!r}. Ask the scheduler with "
            "client.scheduler_info(), who_has(), has_what() or processing(); run code on "
            "the workers with client.run(); share state with Variable, Queue or "
            "publish_dataset()"
        )

    @aio.maybe_async
    def who_has(self, futures: Any = None) -> dict[str, list[str]]:
        """Which workers hold each result, by key.

        Parameters
        ----------
        futures
            Futures (or lists, dicts of them); every key in memory if None.

        Returns
        -------
        dict
            ``{key: [worker address, ...]}``.

        """
        found: dict[str, None] = {}
        if futures is not None:
            collect_keys(futures, found, names=True)
            if not found:
                return {}
        answer = self._request(Coord.WhoHas(list(found)))
        assert isinstance(answer, Answer.Map), answer
        return {
            k: [_scheme(a, self._session.security.scheme) for a in v] for k, v in answer.entries
        }

    @aio.maybe_async
    def has_what(self, workers: Any = None) -> dict[str, list[str]]:
        """The keys each worker holds.

        Parameters
        ----------
        workers
            Addresses to report on (default: all workers).

        Returns
        -------
        dict
            ``{worker address: [key, ...]}``.

        """
        return self._by_worker(Coord.HasWhat(), workers)

    @aio.maybe_async
    def processing(self, workers: Any = None) -> dict[str, list[str]]:
        """The keys assigned to each worker and not finished.

        Returns
        -------
        dict
            ``{worker address: [key, ...]}``.

        """
        return self._by_worker(Coord.Processing(), workers)

    def _by_worker(self, op: Coord, workers: Any) -> dict[str, list[str]]:
        answer = self._request(op)
        assert isinstance(answer, Answer.Map), answer
        scheme = self._session.security.scheme
        out = {_scheme(a, scheme): list(keys) for a, keys in answer.entries}
        if workers is None:
            return out
        wanted = {
            _scheme(w, self._session.security.scheme)
            for w in ([workers] if isinstance(workers, str) else workers)
        }
        return {a: k for a, k in out.items() if a in wanted}

    @aio.maybe_async
    def nthreads(self, workers: Any = None) -> dict[str, int]:
        """Threads per worker, by worker address."""
        out = {w.address: w.nthreads for w in self._session.workers()}
        if workers is None:
            return out
        wanted = {
            _scheme(w, self._session.security.scheme)
            for w in ([workers] if isinstance(workers, str) else workers)
        }
        return {a: n for a, n in out.items() if a in wanted}

    def scheduler_info(self, n_workers: int = -1) -> dict[str, Any]:
        """The scheduler and its workers, in Dask's layout.

        Parameters
        ----------
        n_workers
            How many workers to list (all if -1).

        Returns
        -------
        dict
            ``type``, ``id``, ``address``, ``started`` (seconds since the
            epoch), ``tasks`` (how many it remembers), ``limits``, and
            ``workers`` keyed by address, each with ``name``, ``host``,
            ``nthreads``, ``memory_limit``, ``pid``, ``id``, ``type``,
            ``status`` (``"running"``, or ``"paused"`` while short of
            memory) and ``metrics``: ``stored``, ``assigned``, and in Dask's
            names ``memory`` (the process's resident bytes),
            ``managed_bytes`` (results held in memory), ``spilled_bytes``
            (``{"memory": ..., "disk": ...}``) and ``unmanaged_bytes``
            (resident memory that is not results).

        """
        self._check_running()
        identity = self._session.identify()
        workers = identity.workers
        sid, started = self._session.scheduler_identity()
        if n_workers is not None and n_workers >= 0:
            workers = workers[:n_workers]
        return {
            "type": "Scheduler",
            "id": sid,
            "address": self._session.address,
            "started": started,
            "tasks": identity.tasks,
            "n_workers": len(workers),
            "total_threads": sum(w.info.nthreads for w in workers),
            "workers": {w.info.address: _worker_entry(w) for w in workers},
            "limits": {
                lim.name: {
                    "concurrency": lim.concurrency,
                    "rate": lim.rate,
                    "burst": lim.burst,
                    "running": lim.running,
                    "waiting": lim.waiting,
                }
                for lim in identity.limits
            },
        }

    @aio.maybe_async
    def retire_workers(
        self, workers: Any = None, close_workers: bool = True, **kwargs: Any
    ) -> dict[str, dict[str, Any]]:
        """Retire workers gracefully: the scheduler sends them no new task,
        copies the results only they hold to workers that stay, then closes
        them. A worker whose results have nowhere to go is not retired.

        Parameters
        ----------
        workers
            Addresses or names of the workers to retire (one, or a list);
            all idle workers (running and queuing nothing) if None.
        close_workers
            Close the retired workers (the only choice shoal offers: False
            raises ``NotImplementedError``).
        **kwargs
            Dask's other options (``remove``, ``n``...) raise
            ``NotImplementedError``.

        Returns
        -------
        dict
            ``{address: worker info}`` of the workers retired, as
            :meth:`scheduler_info` showed them.

        Examples
        --------
        >>> client.retire_workers(["tcp://127.0.0.1:40123"])  # doctest: +SKIP
        {'tcp://127.0.0.1:40123': {...}}

        """
        if not close_workers:
            raise NotImplementedError(
                "retire_workers(close_workers=False) is not supported: retired workers close"
            )
        if kwargs:
            raise NotImplementedError(f"retire_workers() does not support {sorted(kwargs)}")
        info = self.scheduler_info()["workers"]
        if workers is None:
            names = [a for a, w in info.items() if w["metrics"]["assigned"] == 0]
        else:
            names = [workers] if isinstance(workers, str) else list(workers)
        if not names:
            return {}
        from ..deploy.cluster import Cluster

        if isinstance(self.cluster, Cluster):
            # Through the cluster, so it does not start them again.
            retired = self.cluster.retire_workers(names)
        else:
            answer = self._request(Coord.RetireWorkers(names))
            assert isinstance(answer, Answer.Names), answer
            retired = [_scheme(a, self._session.security.scheme) for a in answer.names]
        return {a: info.get(a, {}) for a in retired}

    @aio.maybe_async
    def replicate(
        self,
        futures: Any,
        n: int | None = None,
        workers: Any = None,
        branching_factor: int = 2,
    ) -> None:
        """Copy results onto more workers, and wait until they are there.

        Waits for the futures first. Copies spread like a tree: each round,
        every worker holding a result sends it to at most
        ``branching_factor`` new workers. With ``n``, copies beyond ``n``
        (among ``workers``) are dropped. Tasks then read a local copy, and a
        result survives the loss of all but one of its holders.

        Parameters
        ----------
        futures
            Futures (or lists, dicts of them).
        n
            How many workers should hold each result (all of ``workers``
            if None).
        workers
            Worker addresses, names or hosts that may hold copies (default:
            every worker).
        branching_factor
            New copies per holder per round (at least 1).

        Raises
        ------
        ValueError
            If ``n`` or ``branching_factor`` is below 1, or ``workers``
            names no connected worker.

        Examples
        --------
        >>> x = client.scatter(table)  # doctest: +SKIP
        >>> client.replicate(x)  # doctest: +SKIP
        >>> len(client.who_has(x)[x.key]) == len(client.nthreads())  # doctest: +SKIP
        True

        """
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"n must be a positive number of workers, not {n!r}")
        if isinstance(branching_factor, bool) or not isinstance(branching_factor, int):
            raise TypeError(f"branching_factor must be an int, not {branching_factor!r}")
        if branching_factor < 1:
            raise ValueError(f"branching_factor must be at least 1, not {branching_factor}")
        names = worker_names(workers)
        found: dict[str, None] = {}
        collect_keys(futures, found, names=True)
        self._replicate(list(found), n, names, branching_factor)

    def _replicate(
        self, keys: list[str], n: int | None, workers: list[str], branching_factor: int
    ) -> None:
        """Waits for ``keys``, then replicates them (see :meth:`replicate`)."""
        if not keys:
            return
        self._check_running()
        self._session.wait(keys, None)
        self._request(Coord.Replicate(keys, n or 0, workers, min(branching_factor, 2**32 - 1)))

    @aio.maybe_async
    def upload_file(self, filename: str | os.PathLike, load: bool = True) -> None:
        """Send a local file to every worker, now and later, and make it
        importable there.

        A ``.py`` file becomes an importable module (reloaded where an older
        version was imported); a ``.egg`` or ``.zip`` goes on ``sys.path``.
        Workers that join later get it too. Files live in each worker's own
        directory, removed when the worker exits.

        Parameters
        ----------
        filename
            The file to send.
        load
            Import it on every current worker now (the module, or the
            packages at the top of an archive), so an error in it is raised
            here.

        Raises
        ------
        FileNotFoundError
            If there is no such file.
        Exception
            Whatever importing it raised on a worker, with ``load``.

        Examples
        --------
        >>> client.upload_file("helpers.py")  # doctest: +SKIP
        >>> client.submit(lambda: __import__("helpers").VERSION).result()  # doctest: +SKIP

        """
        import hashlib

        self._check_running()
        path = os.fspath(filename)
        with open(path, "rb") as f:
            data = f.read()
        name = os.path.basename(path)
        self._session.upload(name, data)
        self.run(wait_uploaded, name, hashlib.sha256(data).hexdigest(), load, 60.0)

    @aio.maybe_async
    def dump_cluster_state(
        self,
        filename: str = "dask-cluster-dump",
        write_from_scheduler: bool | None = None,
        exclude: Iterable[str] = (),
        format: str = "msgpack",
    ) -> str:
        """Write what the scheduler and every worker report about
        themselves to one file, to read when something is stuck: the
        scheduler's view of the workers, each worker's running tasks and
        their stacks, what it holds, and every process's versions.

        Parameters
        ----------
        filename
            The file, without its suffix (``.msgpack.gz`` or ``.yaml`` is
            added).
        write_from_scheduler
            Dask writes from the scheduler's process; shoal's scheduler runs
            no Python, so the client writes it (True raises
            ``NotImplementedError``).
        exclude
            Fields of each worker's report to leave out.
        format
            ``"msgpack"`` (gzipped) or ``"yaml"``.

        Returns
        -------
        str
            The path written.

        Raises
        ------
        ValueError
            For another format.

        Examples
        --------
        >>> client.dump_cluster_state("stuck")  # doctest: +SKIP
        'stuck.msgpack.gz'

        """
        if format not in ("msgpack", "yaml"):
            raise ValueError(f"Unsupported format {format!r}: use 'msgpack' or 'yaml'")
        if write_from_scheduler:
            raise NotImplementedError(
                "shoal's scheduler runs no Python: the client writes the dump "
                "(leave write_from_scheduler unset)"
            )
        skip = set(exclude)
        workers = {
            address: {k: v for k, v in report.items() if k not in skip}
            for address, report in self.run(_worker_report).items()
        }
        state = {
            "scheduler": self.scheduler_info(),
            "workers": workers,
            "versions": self.get_versions(),  # type: ignore[attr-defined]
        }
        if format == "yaml":
            import yaml

            path = f"{filename}.yaml"
            with open(path, "w") as f:
                yaml.safe_dump(state, f)
            return path
        import gzip

        try:
            import msgpack
        except ImportError:
            raise ImportError(
                "format='msgpack' needs the msgpack package (pip install msgpack); "
                "or use format='yaml'"
            ) from None

        path = f"{filename}.msgpack.gz"
        with gzip.open(path, "wb") as f:
            f.write(msgpack.packb(state, default=str))
        return path

    @aio.maybe_async
    def benchmark_hardware(self) -> dict[str, dict[str, float]]:
        """How fast the workers' memory and disks are, and the network
        between them: bytes per second by size moved, averaged over the
        workers (over pairs of workers for the network), as Dask's.

        Returns
        -------
        dict
            ``{"memory": {...}, "disk": {...}, "network": {...}}``, each
            ``{"1.00 KiB": bytes_per_second, ...}`` (empty without workers;
            ``network`` needs two).

        Examples
        --------
        >>> client.benchmark_hardware()["disk"]  # doctest: +SKIP
        {'1.00 KiB': 2.1e6, '1.00 MiB': 4.3e8, '16.00 MiB': 9.8e8}

        """
        from ..diagnostics import hardware

        workers = sorted(self.nthreads())
        if not workers:
            return {"memory": {}, "disk": {}, "network": {}}
        memory = self.run(hardware.memory_rates)
        disk = self.run(_disk_rates)
        return {
            "memory": hardware.averaged(list(memory.values())),
            "disk": hardware.averaged(list(disk.values())),
            "network": hardware.network_rates(self, workers),
        }

    @aio.maybe_async
    def get_worker_logs(
        self, n: int | None = None, workers: Any = None, nanny: bool = False
    ) -> dict[str, list[tuple[str, str]]]:
        """Each worker's recent log lines (info and above, kept in memory),
        newest last, as ``(level, message)`` pairs.

        Parameters
        ----------
        n
            The most lines per worker (default: all kept).
        workers
            Addresses or names (default: every worker).
        nanny
            Dask's nanny logs: shoal's worker processes have no nanny
            (True raises ``NotImplementedError``).

        Examples
        --------
        >>> client.get_worker_logs(n=10)  # doctest: +SKIP

        """
        arguments.reject("nanny", nanny)
        return self.run(_engine.recent_logs, n, workers=workers)

    def nbytes(self, keys: Any = None, summary: bool = True) -> dict[str, int]:
        """The size of the results this client holds futures for (those of
        ``keys``, futures or keys, if given), by key; with ``summary``, summed
        by key prefix (``inc-...`` -> ``inc``), as Dask's.

        Examples
        --------
        >>> client.nbytes(summary=False)  # doctest: +SKIP
        {'inc-64456584d8a2e7176e2cd177efaa15f2': 28}

        """
        found: dict[str, None] = {}
        if keys is None:
            names = self._session.keys()
        else:
            collect_keys(keys, found, names=True)
            names = list(found)
        sizes = {}
        for k in names:
            info = self._session.result_info(k)
            if info is not None:
                sizes[k] = int(info[1])
        if not summary:
            return sizes
        out: dict[str, int] = {}
        for k, size in sizes.items():
            prefix = k.rsplit("-", 1)[0] if "-" in k else k
            out[prefix] = out.get(prefix, 0) + size
        return out

    @aio.maybe_async
    def call_stack(self, futures: Any = None, keys: Any = None) -> dict[str, dict[str, list[str]]]:
        """The stacks of the tasks running now, by worker and key: those of
        ``futures`` (futures or persisted collections) and ``keys``, or all.

        Examples
        --------
        >>> client.call_stack(stuck_future)  # doctest: +SKIP
        {'tcp://127.0.0.1:40123': {'load-8f1c...': ['  File "...", line 12, ...']}}

        """
        from ..completion import futures_of

        wanted = list(keys or [])
        if futures is not None:
            wanted += [f.key for f in futures_of(futures)]
        stacks = self.run(_call_stacks, sorted(set(wanted)) or None)
        return {address: s for address, s in stacks.items() if s}

    @aio.maybe_async
    def restart_workers(
        self, workers: Iterable[str], timeout: Any = "30 s", raise_for_error: bool = True
    ) -> dict[str, str]:
        """Restart some worker processes (fresh interpreters), as Dask's:
        their results are computed again where needed, and the futures of
        this client stay.

        Parameters
        ----------
        workers
            Worker addresses or names.
        timeout
            How long to wait for as many workers as before to be connected.
        raise_for_error
            Raise ``TimeoutError`` if they are not back in time (else say so
            in the answer).

        Returns
        -------
        dict
            ``{address: "OK"}``, or ``"timed out"`` without
            ``raise_for_error``.

        Raises
        ------
        ValueError
            For a worker that is not a process of its own (a
            ``LocalCluster(processes=False)``): Dask needs a nanny there.

        Examples
        --------
        >>> client.restart_workers(["tcp://10.0.0.5:40123"])  # doctest: +SKIP
        {'tcp://10.0.0.5:40123': 'OK'}

        """
        self._check_running()
        seconds = parse_timedelta(timeout)
        engine = self._session
        chosen = _resolve_workers(engine, workers)
        if not chosen:
            return {}
        own = self.run(_worker_is_process, workers=chosen)
        threads = [w for w in chosen if not own.get(w)]
        if threads:
            raise ValueError(
                f"Restarting workers requires a nanny: {', '.join(threads)} run on threads of "
                "another process (processes=False), so there is no process to start again"
            )
        total = len(engine.workers())
        self.run(_restart_worker_process, workers=chosen, on_error="ignore")
        try:
            self.wait_for_workers(total, seconds, without=chosen)
        except TimeoutError:
            if raise_for_error:
                raise
            return {w: "timed out" for w in chosen}
        return {w: "OK" for w in chosen}

    @aio.maybe_async
    def restart(self, timeout: Any = "30 s", wait_for_workers: bool = True) -> None:
        """Restart every worker process and cancel this client's futures.

        As in Dask: the futures of this client are cancelled (their
        ``result()`` raises ``CancelledError``), every worker process is
        replaced by a fresh interpreter (so imported modules and global state
        are gone), and the call returns once as many workers as before are
        connected again. Tasks other clients hold run again on the new
        workers.

        Parameters
        ----------
        timeout
            How long to wait for the workers to come back (seconds or a
            string such as ``"30 s"``).
        wait_for_workers
            Wait for them (default); False returns once they were told.

        Raises
        ------
        RuntimeError
            If a worker is not a process of its own (a ``LocalCluster`` with
            ``processes=False``): there is no fresh process to start.
        TimeoutError
            If the workers are not back within ``timeout``.

        """
        self._check_running()
        seconds = parse_timedelta(timeout)
        engine = self._session
        before = [w.address for w in engine.workers()]
        if before:
            own = self.run(_worker_is_process)
            if not all(own.values()):
                raise RuntimeError(
                    "restart() needs workers that are processes of their own; this cluster "
                    "runs workers as threads of one process (processes=False)"
                )
        engine.cancel(engine.keys())
        # Each worker replaces itself at once, so its answer never comes.
        self.run(_restart_worker_process, on_error="ignore")
        if wait_for_workers and before:
            self.wait_for_workers(len(before), seconds, without=before)

    @aio.maybe_async
    def wait_for_workers(
        self, n_workers: int, timeout: Any = None, *, without: Iterable[str] = ()
    ) -> None:
        """Block until ``n_workers`` workers are connected.

        Parameters
        ----------
        n_workers
            How many workers to wait for.
        timeout
            Seconds, or a string such as ``"30 s"``; raise ``TimeoutError``
            after.
        without
            Also wait until none of these worker addresses is connected.

        """
        if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
            raise ValueError(f"n_workers must be a whole number, 1 or more, not {n_workers!r}")
        t = parse_timedelta(timeout)
        self._check_running()
        if not self._session.wait_for_workers(n_workers, t, list(without)):
            raise TimeoutError(f"{n_workers} workers did not connect within {timeout}")


def _resolve_workers(engine: Any, workers: Iterable[str]) -> list[str]:
    """The addresses of the connected workers named (by address, with or
    without its scheme, or by name).

    Raises
    ------
    ValueError
        For a name that is no connected worker.

    """
    known = engine.workers()
    out = []
    for w in workers:
        bare = _engine.strip_scheme(w)
        found = [
            i.address
            for i in known
            if w in (i.address, i.name) or bare == _engine.strip_scheme(i.address)
        ]
        if not found:
            raise ValueError(f"no connected worker is called {w!r}")
        out.append(found[0])
    return out


def _disk_rates(dask_worker: Any) -> dict[str, float]:
    from ..diagnostics import hardware

    return hardware.disk_rates(dask_worker.local_directory)


def _worker_report(dask_worker: Any) -> dict[str, Any]:
    """What a worker says of itself in a cluster dump (plain data only)."""
    return {
        "address": dask_worker.address,
        "name": dask_worker.name,
        "nthreads": dask_worker.nthreads,
        "running": dask_worker.call_stacks(),
        "stored_bytes": dask_worker.spilled_bytes,
        "plugins": sorted(dask_worker.plugins),
        "actors": sorted(dask_worker.actors),
    }


def _call_stacks(keys: Any, dask_worker: Any) -> dict[str, list[str]]:
    return dask_worker.call_stacks(None if keys is None else set(keys))


def _worker_is_process() -> bool:
    from ..worker import main

    return main.is_process()


def _restart_worker_process() -> None:
    from ..worker import main

    main.restart_process()


def collect_keys(obj: Any, found: dict[str, None], names: bool = False, owner: Any = None) -> None:
    """The keys of the futures in ``obj`` (a Future, or lists, tuples, sets
    and dicts of them), into ``found``; with ``names``, strings are keys too.

    Raises
    ------
    ValueError
        With ``owner``, for a future another client made.

    """
    for x in nested.leaves(obj):
        if isinstance(x, Future):
            if owner is not None and x.client is not owner:
                raise ValueError(
                    f"Futures created by another client: {x!r} belongs to {x.client!r}, "
                    f"not {owner!r}; gather it with its own client"
                )
            found[x.key] = None
        elif names and isinstance(x, str):
            found[x] = None


def fire_and_forget(obj: Any) -> None:
    """Run these futures to the end even if nothing keeps them: the
    scheduler holds them until they finish, also after their client goes.

    Parameters
    ----------
    obj
        A Future, or lists, tuples, sets and dicts of them.

    Examples
    --------
    >>> fire_and_forget(client.submit(write_to_database, record))  # doctest: +SKIP

    """
    by_client: dict[int, tuple[Any, list[str]]] = {}
    for x in nested.leaves(obj):
        if isinstance(x, Future):
            by_client.setdefault(id(x.client), (x.client, []))[1].append(x.key)
    for client, keys in by_client.values():
        client._request(Coord.FireAndForget(keys))
