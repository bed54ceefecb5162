"""The Client's calls about workers rather than single tasks: running
functions on every worker, where data is, retiring, replicating and
uploading files. Part of :class:`Client` (restarts are in ``restarts``,
diagnostics in ``diagnostics``).
"""

from __future__ import annotations

import os
from typing import Any, Callable

from .. import _engine
from .._engine import Answer, Coord, RunAnswer
from ..completion import futures_of
from ..coordination._request import ask
from ..core import aio, arguments, nested, serialize
from ..core.errors import rebuild
from ..core.keys import dask_key
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
        scheme = self._session.security.scheme
        return {dask_key(k): [_scheme(a, scheme) for a in v] for k, v in answer.entries}

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
        out = {_scheme(a, scheme): [dask_key(k) for k in held] for a, held in answer.entries}
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
    def rebalance(self, futures: Any = None, workers: Any = None) -> None:
        """Move results between workers so each holds about the same bytes
        of them, and wait until they have moved.

        Waits for the futures first. While the fullest worker holds more
        than the emptiest, the largest of its results smaller than the gap
        between them is copied to the emptiest, and then freed where it was
        (kept there too if a task about to run there reads it). Balances the
        bytes of results the scheduler knows each worker holds, not the
        workers' whole memory (Dask's ``rebalance.*`` thresholds on process
        memory are not read).

        Parameters
        ----------
        futures
            Futures (or collections, lists, dicts of them) whose results
            may move; every result in the cluster if None (an empty list
            moves nothing).
        workers
            Worker addresses, names or hosts to balance among; every worker
            if None (an empty list balances nothing). Results on other
            workers stay.

        Raises
        ------
        KeyError
            If ``workers`` names no connected worker (as in Dask).
        ValueError
            If a future is not known to the scheduler.

        Examples
        --------
        >>> parts = client.map(load, files, workers=[first])  # doctest: +SKIP
        >>> client.rebalance(parts)  # doctest: +SKIP
        >>> sorted(len(keys) for keys in client.has_what().values())  # doctest: +SKIP
        [50, 50]

        """
        names = worker_names(workers)
        if workers is not None and not names:
            return  # no workers to balance among (as in Dask, not "all")
        found: dict[str, None] = {}
        if futures is not None:
            collect_keys(futures_of(futures), found)
            if not found:
                return
        self._check_running()
        if found:
            self._session.wait(list(found), None)
        answer = self._request(Coord.Rebalance(list(found), names))
        if isinstance(answer, Answer.Missing):
            # Dask's error for workers it does not know.
            raise KeyError(f"workers={names} names no connected worker")

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


def collect_keys(obj: Any, found: dict[str, None], names: bool = False, owner: Any = None) -> None:
    """The keys of the futures in ``obj`` (a Future, or lists, tuples, sets
    and dicts of them), into ``found``; with ``names``, strings are keys too.

    Raises
    ------
    ValueError
        With ``owner``, for a future another client made.

    """
    if (
        type(obj) is list
        and all(type(x) is Future for x in obj)
        and (owner is None or all(x.client is owner for x in obj))
    ):
        # A flat list of this client's futures (what ``map`` returns), the
        # common case, without the generic walk.
        found.update(dict.fromkeys([x._key for x in obj]))
        return
    for x in nested.leaves(obj):
        if isinstance(x, Future):
            if owner is not None and x.client is not owner:
                raise ValueError(
                    f"Futures created by another client: {x!r} belongs to {x.client!r}, "
                    f"not {owner!r}; gather it with its own client"
                )
            found[x._key] = None
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
            by_client.setdefault(id(x.client), (x.client, []))[1].append(x._key)
    for client, keys in by_client.values():
        client._request(Coord.FireAndForget(keys))
