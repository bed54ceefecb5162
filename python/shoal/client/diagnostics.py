"""The Client's diagnostics of a running cluster: a dump of its state,
stacks of running tasks, profiles, logs, sizes and the hardware's speed.
Part of :class:`Client`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import _engine
from ..core import aio, arguments
from ..worker import profile as worker_profile
from .workers import collect_keys


class DiagnosticCalls:
    """Mixin of :class:`Client`: what a cluster is doing and how fast."""

    # Provided by Client (its other parts).
    _session: Any
    run: Callable[..., Any]
    scheduler_info: Callable[..., Any]
    nthreads: Callable[..., Any]
    get_versions: Callable[..., Any]
    _check_running: Callable[[], None]

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
    def story(self, *keys_or_stimuli: Any, on_error: str = "raise") -> list[tuple]:
        """The scheduler's story of these tasks: every transition it made,
        oldest first, as Dask's ``Client.story`` gives them.

        The scheduler keeps its latest 100,000 transitions, by key, so the
        story of a key covers earlier runs and tasks since forgotten. Each
        entry is ``("scheduler", key, start, finish, {}, stimulus,
        timestamp)``: the state left and the one entered (Dask's names:
        ``released``, ``waiting``, ``queued``, ``processing``, ``memory``,
        ``erred``, ``forgotten``), the kind of event that caused it
        (``update-graph``, ``task-finished``, ``worker-lost``, ...; shoal
        has no per-event stimulus ids, so a stimulus given here matches
        nothing) and when, in seconds since the epoch. Workers keep no
        story of their own: entries all come from the scheduler.

        Parameters
        ----------
        *keys_or_stimuli
            Keys (or futures) whose story to tell.
        on_error
            ``"raise"`` (the default) or ``"ignore"``: whether a failure to
            reach the scheduler raises or gives an empty story.

        Returns
        -------
        list of tuple
            The transitions, oldest first.

        Raises
        ------
        ValueError
            If ``on_error`` is neither ``"raise"`` nor ``"ignore"``.

        Examples
        --------
        >>> x = client.submit(inc, 1)  # doctest: +SKIP
        >>> [(start, finish) for _, _, start, finish, *_ in client.story(x.key)]  # doctest: +SKIP
        [('released', 'queued'), ('queued', 'processing'), ('processing', 'memory')]

        """
        if on_error not in ("raise", "ignore"):
            raise ValueError(f"on_error must be 'raise' or 'ignore', not {on_error!r}")
        found: dict[str, None] = {}
        collect_keys(list(keys_or_stimuli), found, names=True)
        try:
            answer = self._request(_engine.Coord.Story(list(found)))
        except (OSError, RuntimeError, TimeoutError):
            if on_error == "raise":
                raise
            return []
        assert isinstance(answer, _engine.Answer.Story), answer
        # The scheduler's clock counts from its start: placed on this
        # machine's clock by the answer's own time.
        offset = time.time() - answer.now
        return [
            ("scheduler", e.key, e.start, e.finish, {}, e.stimulus, offset + e.time)
            for e in answer.entries
        ]

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
            wanted += [f._key for f in futures_of(futures)]
        stacks = self.run(_call_stacks, sorted(set(wanted)) or None)
        return {address: s for address, s in stacks.items() if s}

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
        from ..diagnostics import report, task_stream

        task_stream.check_plot(plot, bokeh_resources)
        self._check_running()
        data = task_stream.select(task_stream.records_since(self._session, 0), start, stop, count)
        if plot == "save":
            # The page starts at the first task's start (see write_report).
            now = time.time()
            return data, report.write_report(filename, data, now, now, "task stream")
        return data

    @aio.maybe_async
    def profile(
        self,
        key: str | None = None,
        start: float | None = None,
        stop: float | None = None,
        workers: Any = None,
        merge_workers: bool = True,
        plot: bool = False,
        filename: str | None = None,
        server: bool = False,
        scheduler: bool = False,
    ) -> dict[str, Any]:
        """The statistical profile of the tasks the workers ran, as Dask's:
        every worker samples its running tasks' stacks (see
        :mod:`shoal.worker.profile`; Dask's
        ``distributed.worker.profile.enabled`` turns it off).

        Parameters
        ----------
        key
            Only tasks of this key prefix (``"inc"``); default: all.
        start, stop
            The window, in seconds since the epoch (``time.time()``);
            default: everything kept (the last hour).
        workers
            Addresses or names of the workers to ask; default: all.
        merge_workers
            One profile for all (default), or one per worker address.
        plot, filename, server, scheduler
            Dask's plots, and profiles of its servers' own threads: shoal
            has neither (its scheduler and servers run no Python), so each
            raises ``NotImplementedError`` unless left unset.

        Returns
        -------
        dict
            A tree of call sites: ``count``, ``description`` and
            ``children`` by ``identifier`` (Dask's format).

        Examples
        --------
        >>> tree = client.profile(key="load")  # doctest: +SKIP
        >>> tree["count"]  # doctest: +SKIP
        412

        """
        for name, value in (
            ("plot", plot),
            ("filename", filename),
            ("server", server),
            ("scheduler", scheduler),
        ):
            arguments.reject(name, value)
        trees = self.run(_worker_profile, start, stop, key, workers=workers)
        if not merge_workers:
            return trees
        return worker_profile.merge(*trees.values())


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


def _worker_profile(
    start: float | None, stop: float | None, key: str | None, dask_worker: Any
) -> dict[str, Any]:
    return dask_worker.get_profile(start, stop, key)
