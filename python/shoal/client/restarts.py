"""The Client's calls that restart workers or wait for them. Part of
:class:`Client`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import _engine
from ..core import aio
from ..core.times import parse_timedelta


class RestartCalls:
    """Mixin of :class:`Client`: restarting workers, and waiting for them."""

    # Provided by Client (its other parts).
    _session: Any
    run: Callable[..., Any]
    _check_running: Callable[[], None]

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


def _worker_is_process() -> bool:
    from ..worker import main

    return main.is_process()


def _restart_worker_process() -> None:
    from ..worker import main

    main.restart_process()
