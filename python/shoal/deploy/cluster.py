"""What every cluster shares, as Dask's ``SpecCluster``: scaling to a number
of workers, scaling itself to the work (:meth:`Cluster.adapt`), retiring
workers gracefully, and how it shows itself.

A cluster type says how to start ``n`` workers (:meth:`Cluster._start_workers`)
and how to stop the ones the scheduler retired (:meth:`Cluster._stop_workers`);
the scheduler decides which workers can go and moves their results first.
"""

from __future__ import annotations

import html
import logging
import math
import threading
from typing import Any

from .. import _engine
from ..core import serialize
from ..core.session import Session
from ..core.sizes import format_bytes
from ..core.times import parse_timedelta
from ..dask import config as dask_config


class Cluster:
    """The part of a cluster that does not depend on where workers run.

    Subclasses set ``self._monitor`` (a :class:`~shoal.core.session.Session`
    to the scheduler) and implement ``_start_workers(n)`` (start ``n`` more;
    they connect on their own), ``_prepare_stop(workers)`` (about to retire
    these workers, by ``scheduler_info()`` entry: keep them from being
    started again; returns a token for ``_stop_workers``) and
    ``_stop_workers(token, retired)`` (the scheduler retired these
    addresses: release whatever ran them, and start again anything it did
    not retire).
    """

    _monitor: Session | None = None
    _adaptive: Adaptive | None = None
    #: The workers the cluster aims for (``scale`` sets it).
    n_workers: int = 0
    status: str = "created"

    # ----- what subclasses provide ------------------------------------------

    @property
    def scheduler_address(self) -> str:
        """Where clients and workers connect."""
        raise NotImplementedError

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's status page, or None."""
        raise NotImplementedError

    def _start_workers(self, n: int) -> None:
        raise NotImplementedError

    def _prepare_stop(self, workers: list[_engine.WorkerState]) -> Any:
        raise NotImplementedError

    def _stop_workers(self, token: Any, retired: list[str]) -> None:
        raise NotImplementedError

    def close(self, timeout: float | None = None) -> None:
        """Stop the workers and the scheduler."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ----- scaling -----------------------------------------------------------

    @property
    def workers(self) -> dict[str, _engine.WorkerInfo]:
        """The connected workers, keyed by address."""
        if self._monitor is None:
            return {}
        return {w.address: w for w in self._monitor.workers()}

    def scale(self, n: int | None = None, **kwargs: Any) -> None:
        """Start or retire workers until the cluster has ``n``.

        Workers to retire are chosen by the scheduler's view (those holding
        least first); their results move to workers that stay before they
        close. Calling ``scale`` stops :meth:`adapt`.

        Parameters
        ----------
        n
            The number of workers wanted.
        **kwargs
            Dask's ``cores=`` and ``memory=`` are refused with
            ``NotImplementedError``: give a number of workers.

        Examples
        --------
        >>> cluster.scale(4)  # doctest: +SKIP

        """
        if kwargs:
            raise NotImplementedError(
                f"scale() takes a number of workers; {sorted(kwargs)} are not supported"
            )
        if n is None or isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"scale() needs a number of workers (0 or more), not {n!r}")
        self.stop_adapting()
        self._scale_to(n)

    def _scale_to(self, n: int) -> None:
        if self.status == "closed":
            raise RuntimeError("the cluster is closed")
        current = self.n_workers
        if n > current:
            self._start_workers(n - current)
            self.n_workers = n
        elif n < current:
            self.retire_workers(n=current - n)

    def retire_workers(self, workers: list[str] | None = None, n: int | None = None) -> list[str]:
        """Retire workers gracefully: the scheduler sends them no more tasks,
        copies their results to workers that stay, then closes them.

        Parameters
        ----------
        workers
            Addresses or names of the workers to retire.
        n
            Otherwise, how many to retire (those holding least first).

        Returns
        -------
        list of str
            The addresses of the workers retired; a worker whose results
            have nowhere to go is not retired.

        """
        if self._monitor is None:
            return []
        known = list(self._monitor.identify().workers)
        if workers is not None:
            wanted = {_engine.strip_scheme(w) for w in workers}
            chosen = [
                w
                for w in known
                if _engine.strip_scheme(w.info.address) in wanted or w.info.name in wanted
            ]
        else:
            chosen = sorted(known, key=lambda w: (w.stored, w.assigned))[: n or 0]
        if not chosen:
            return []
        token = self._prepare_stop(chosen)
        retired: list[str] = []
        try:
            answer = self._monitor.request(
                _engine.Coord.RetireWorkers([w.info.address for w in chosen])
            )
            if isinstance(answer, _engine.Answer.Names):
                retired = [self._monitor.security.scheme + a for a in answer.names]
        finally:
            self._stop_workers(token, retired)
        self.n_workers = max(self.n_workers - len(retired), 0)
        return retired

    def adapt(
        self,
        minimum: int = 0,
        maximum: float = math.inf,
        interval: Any = "1s",
        wait_count: int = 3,
        target_duration: Any = "5s",
        **kwargs: Any,
    ) -> Adaptive:
        """Scale the cluster to the work, between ``minimum`` and
        ``maximum`` workers, as Dask's ``adapt``.

        Every ``interval`` the scheduler says how many workers would finish
        the work it has in ``target_duration`` (at the mean task time seen
        so far); the cluster grows to that at once, and shrinks to it after
        ``wait_count`` checks in a row asked for fewer, retiring workers
        gracefully (never one whose results have nowhere to go).

        Parameters
        ----------
        minimum, maximum
            Bounds on the number of workers.
        interval
            Time between checks (``"1s"``, seconds).
        wait_count
            Checks in a row that must ask for fewer workers before any is
            retired.
        target_duration
            How long the work waiting should take with the workers wanted.
        **kwargs
            Dask's ``minimum_cores``/``maximum_memory`` and the like are
            refused with ``NotImplementedError``.

        Returns
        -------
        Adaptive
            Stop it with ``.stop()``, or call :meth:`scale`.

        Examples
        --------
        >>> cluster.adapt(minimum=0, maximum=10)  # doctest: +SKIP

        """
        if kwargs:
            raise NotImplementedError(
                f"adapt() takes minimum and maximum numbers of workers; {sorted(kwargs)} "
                "are not supported"
            )
        self.stop_adapting()
        self._adaptive = Adaptive(self, minimum, maximum, interval, wait_count, target_duration)
        return self._adaptive

    def stop_adapting(self) -> None:
        """Stop :meth:`adapt`, if it runs."""
        adaptive, self._adaptive = self._adaptive, None
        if adaptive is not None:
            adaptive.stop()

    # ----- logs ------------------------------------------------------------

    def get_logs(
        self, cluster: bool = True, scheduler: bool = True, workers: bool = True
    ) -> dict[str, str]:
        """Recent log lines (info and above) of the scheduler and of every
        worker, as Dask's ``get_logs``.

        Parameters
        ----------
        cluster
            Include what the cluster manager itself kept (job output, ...),
            under ``"Cluster"``, if it keeps any.
        scheduler
            Include the scheduler's, under ``"Scheduler"``.
        workers
            Include each connected worker's, under its address.

        Returns
        -------
        dict
            ``{name: text}``, one line per record, ``LEVEL message``.

        Examples
        --------
        >>> print(cluster.get_logs()["Scheduler"])  # doctest: +SKIP

        """
        logs: dict[str, str] = {}
        if cluster:
            own = self._cluster_logs()
            if own is not None:
                logs["Cluster"] = own
        if scheduler:
            logs["Scheduler"] = self._scheduler_logs()
        if workers and self._monitor is not None:
            targets = [w.address for w in self._monitor.workers()]
            call = serialize.dumps((_engine.recent_logs, (), {}))
            for address, answer in self._monitor.run_on_workers(targets, call):
                if isinstance(answer, _engine.RunAnswer.Value):
                    logs[address] = _text(serialize.loads(answer.frames))
        return logs

    def _cluster_logs(self) -> str | None:
        """What the cluster manager kept, if anything."""
        return None

    def _scheduler_logs(self) -> str:
        """The scheduler's recent lines: by default it runs in this process."""
        return _text(_engine.recent_logs())

    # ----- how it shows itself ----------------------------------------------

    def __repr__(self) -> str:
        workers = self.workers
        threads = sum(w.nthreads for w in workers.values())
        memory = sum(w.memory for w in workers.values())
        dashboard = "" if self.dashboard_link is None else f", dashboard={self.dashboard_link!r}"
        name = getattr(self, "name", None)
        named = "" if name is None else f"{name!r}, "
        return (
            f"{type(self).__name__}({named}{self.scheduler_address!r}{dashboard}, "
            f"workers={len(workers)}, threads={threads}, memory={format_bytes(memory)})"
        )

    def _repr_html_(self) -> str:
        workers = (
            {}
            if self._monitor is None
            else {w.info.address: w for w in self._monitor.identify().workers}
        )
        rows = "".join(
            f"<tr><td>{html.escape(a)}</td><td>{html.escape(str(w.info.name))}</td>"
            f"<td>{w.info.nthreads}</td><td>{'paused' if w.paused else 'running'}</td></tr>"
            for a, w in sorted(workers.items())
        )
        link = self.dashboard_link
        dashboard = (
            f'<p>Dashboard: <a href="{html.escape(link)}" target="_blank">'
            f"{html.escape(link)}</a></p>"
            if link
            else ""
        )
        adaptive = (
            f"<p>Adaptive: {self._adaptive.minimum} to {self._adaptive.maximum} workers</p>"
            if self._adaptive is not None
            else ""
        )
        return (
            f"<div><h3>{type(self).__name__}</h3>"
            f"<p>Scheduler: {html.escape(self.scheduler_address)}</p>{dashboard}{adaptive}"
            f"<table><tr><th>worker</th><th>name</th><th>threads</th><th>status</th></tr>"
            f"{rows}</table></div>"
        )


class HostedScheduler(Cluster):
    """A cluster whose scheduler runs on threads of this process
    (``self._scheduler``, an ``_engine.Scheduler``).
    """

    _scheduler: Any

    @property
    def scheduler_address(self) -> str:
        """Where clients and workers connect, ``tcp://host:port``."""
        return self._scheduler.address

    @property
    def dashboard_link(self) -> str | None:
        """The dashboard's status page, or None if it runs none."""
        url = self._scheduler.dashboard
        return None if url is None else dask_config.dashboard_link(url)


_log = logging.getLogger("shoal")


def _text(records: list[tuple[str, str]]) -> str:
    return "\n".join(f"{level} {message}" for level, message in records)


class Adaptive:
    """A cluster scaling itself to the work (see :meth:`Cluster.adapt`)."""

    def __init__(
        self,
        cluster: Cluster,
        minimum: int,
        maximum: float,
        interval: Any,
        wait_count: int,
        target_duration: Any,
    ):
        if minimum < 0 or maximum < minimum:
            raise ValueError(
                f"adapt() needs 0 <= minimum <= maximum, not minimum={minimum}, maximum={maximum}"
            )
        if wait_count < 1:
            raise ValueError(f"wait_count must be at least 1, not {wait_count}")
        self.cluster = cluster
        self.minimum = minimum
        self.maximum = maximum
        self.interval = parse_timedelta(interval) or 1.0
        self.wait_count = wait_count
        self.target_duration = parse_timedelta(target_duration) or 5.0
        #: Checks in a row that asked for fewer workers.
        self.close_counts = 0
        #: ``(wanted, had)`` at every decision that changed the cluster.
        self.log: list[tuple[int, int]] = []
        #: Why the last check could not scale, if it could not.
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoal-adaptive", daemon=True)
        self._thread.start()

    def recommendation(self) -> int:
        """How many workers the cluster should have now, within the bounds."""
        monitor = self.cluster._monitor
        if monitor is None:
            return self.minimum
        answer = monitor.request(
            _engine.Coord.AdaptiveTarget(min(int(self.target_duration * 1000), 2**32 - 1))
        )
        assert isinstance(answer, _engine.Answer.Count), answer
        return int(min(max(answer.n, self.minimum), self.maximum))

    def adapt(self) -> None:
        """One check: scale up at once, down after ``wait_count`` in a row."""
        wanted = self.recommendation()
        have = self.cluster.n_workers
        if wanted > have:
            self.close_counts = 0
            self.log.append((wanted, have))
            self.cluster._scale_to(wanted)
        elif wanted < have:
            self.close_counts += 1
            if self.close_counts >= self.wait_count:
                self.close_counts = 0
                self.log.append((wanted, have))
                self.cluster._scale_to(wanted)
        else:
            self.close_counts = 0

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if self.cluster.status == "closed":
                return
            try:
                self.adapt()
            except Exception as e:
                # The cluster closed under us: done. Anything else (a
                # submission refused, a host unreachable) is said once and
                # tried again at the next check.
                if self.cluster.status == "closed":
                    return
                said = f"{type(e).__name__}: {e}"
                if said != self.last_error:
                    _log.warning("adapt could not scale the cluster: %s", said)
                self.last_error = said
            else:
                self.last_error = None

    def stop(self) -> None:
        """Stop scaling; the cluster keeps the workers it has."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __repr__(self) -> str:
        return f"Adaptive(minimum={self.minimum}, maximum={self.maximum})"
