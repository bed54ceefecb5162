"""``Client.get_executor``: the cluster as a :class:`concurrent.futures.Executor`.

Code written for the standard library's executors runs on shoal unchanged:
``submit`` returns a real :class:`concurrent.futures.Future` (so
``concurrent.futures.wait`` and ``as_completed`` work on it), completed from
the shoal future behind it.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .futures import Future

#: ``submit`` options an executor may fix for all its tasks.
_OPTIONS = frozenset(
    {
        "workers",
        "resources",
        "allow_other_workers",
        "retries",
        "priority",
        "pure",
        "retry_delay",
        "retry_max_delay",
        "retry_on",
        "limits",
    }
)


def _copy_outcome(source: Future, target: cf.Future) -> None:
    """Complete ``target`` as ``source`` ended (runs once it is done)."""
    if source.status == "cancelled":
        target.cancel()
        target.set_running_or_notify_cancel()
        return
    if not target.set_running_or_notify_cancel():
        return
    try:
        target.set_result(source.result(timeout=0))
    except BaseException as e:
        target.set_exception(e)


class ClientExecutor(cf.Executor):
    """Runs calls on a shoal cluster (see :meth:`Client.get_executor`).

    Parameters
    ----------
    client
        The client to submit with.
    **kwargs
        Options for every task, as :meth:`Client.submit` takes them; a call
        to :meth:`submit` may give its own, as in Dask.

    """

    def __init__(self, client: Any, **kwargs: Any):
        unknown = set(kwargs) - _OPTIONS
        if unknown:
            raise TypeError(f"unsupported arguments to ClientExecutor: {sorted(unknown)}")
        self._client = client
        self._options = kwargs
        self._futures: set[Future] = set()
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future:
        """Run ``fn(*args, **kwargs)`` on the cluster; task options among
        ``kwargs`` (``pure=``, ``retries=``, ...) apply to this call, over the
        executor's.

        Returns
        -------
        concurrent.futures.Future

        """
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future = self._client.submit(fn, *args, **{**self._options, **kwargs})
            self._futures.add(future)
        out: cf.Future = cf.Future()

        def done(f: Future) -> None:
            with self._lock:
                self._futures.discard(f)
            _copy_outcome(f, out)

        future.add_done_callback(done)

        def cancelled(o: cf.Future) -> None:
            if o.cancelled():
                self._client.cancel([future])

        out.add_done_callback(cancelled)
        return out

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """Like :func:`map`, run on the cluster: results in order.

        Parameters
        ----------
        fn
            The function.
        *iterables
            Its arguments, element by element.
        timeout
            Seconds from this call after which waiting for a result raises
            ``TimeoutError``.
        chunksize
            Accepted for the standard signature; shoal sends every call as
            its own task (only 1 is allowed).

        Returns
        -------
        An iterator of the results.

        """
        if chunksize != 1:
            raise NotImplementedError("shoal sends each call as its own task: leave chunksize=1")
        deadline = None if timeout is None else time.monotonic() + timeout
        futures = [self.submit(fn, *args) for args in zip(*iterables)]

        def results() -> Iterator[Any]:
            try:
                for f in futures:
                    left = None if deadline is None else max(deadline - time.monotonic(), 0)
                    yield f.result(left)
            finally:
                for f in futures:
                    f.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Refuse new calls; wait for the calls not finished if ``wait``,
        else cancel them (as Dask's), as ``cancel_futures`` does too.
        """
        with self._lock:
            self._shutdown = True
            running = list(self._futures)
        if (cancel_futures or not wait) and running:
            self._client.cancel(running)
        if wait and running:
            from .completion import wait as wait_all

            wait_all(running)
