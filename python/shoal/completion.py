"""``as_completed`` and ``wait``: reacting to futures as they finish."""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import CancelledError
from typing import Any, NamedTuple

from . import _engine
from .core import aio, arguments, context, nested
from .core.graph import Node, is_dask_collection
from .core.times import parse_timedelta
from .futures import BaseActorFuture, Future

ALL_COMPLETED = "ALL_COMPLETED"
FIRST_COMPLETED = "FIRST_COMPLETED"
FIRST_EXCEPTION = "FIRST_EXCEPTION"


class DoneAndNotDoneFutures(NamedTuple):
    """What :func:`wait` returns."""

    done: set[Future]
    not_done: set[Future]


def futures_of(obj: Any, strict: bool = False) -> list[Future]:
    """The futures in ``obj``, each Future object once (two Futures of one
    key are two, as in Dask): a future, a persisted ``Delayed``,
    a persisted dask collection (the futures of its partitions), or lists,
    tuples, sets and dicts of them, nested.

    Parameters
    ----------
    obj
        What to look in.
    strict
        Raise ``TypeError`` for anything else found (by default it is
        passed over, as in Dask).

    Returns
    -------
    list of Future

    Raises
    ------
    ValueError
        For a ``Delayed`` that was not persisted: it has no futures yet.

    Examples
    --------
    >>> df = client.persist(df)  # doctest: +SKIP
    >>> len(futures_of(df)) == df.npartitions  # doctest: +SKIP
    True

    """
    found: dict[int, Future] = {}
    for x in nested.leaves(obj):
        if isinstance(x, Future):
            found.setdefault(id(x), x)
        elif isinstance(x, Node):
            if x._future is None:
                raise ValueError(
                    f"{x!r} is lazy and has no futures to follow: persist it first "
                    "(x = x.persist(), or client.compute(x)) and pass the result"
                )
            found.setdefault(id(x._future), x._future)
        elif is_dask_collection(x):
            # A graph holds much else besides: never strict there.
            for f in futures_of(_graph_values(x.__dask_graph__())):
                found.setdefault(id(f), f)
        elif strict:
            raise TypeError(f"expected Futures or persisted collections, got {type(x).__name__}")
    return list(found.values())


def _graph_values(graph: Any) -> list[Any]:
    """What a dask graph's nodes hold that may be futures: data nodes'
    values and tasks' arguments (old-style tuples as they are).
    """
    out = []
    for node in graph.values():
        if hasattr(node, "value") and hasattr(node, "dependencies"):
            out.append(node.value)
        elif hasattr(node, "args") and hasattr(node, "kwargs"):
            out.extend(node.args)
            out.extend(node.kwargs.values())
        else:
            out.append(node)
    return out


def _engines(futures: Iterable[Future]) -> dict[int, tuple[Any, list[Future]]]:
    """Futures grouped by the engine handle of their client."""
    by_engine: dict[int, tuple[Any, list[Future]]] = {}
    for f in futures:
        if not isinstance(f, Future):
            raise TypeError(f"expected Futures, got {type(f).__name__}")
        engine = f._session
        by_engine.setdefault(id(engine), (engine, []))[1].append(f)
    return by_engine


def wait(fs: Any, timeout: Any = None, return_when: str = ALL_COMPLETED) -> DoneAndNotDoneFutures:
    """Wait until futures are done; return ``(done, not_done)`` sets.

    Parameters
    ----------
    fs
        A Future, a persisted collection, or a (nested) list of them.
    timeout
        Seconds, or a string such as ``"200 ms"``; forever if None. With
        ``ALL_COMPLETED`` a timeout raises ``TimeoutError``, as in Dask.
    return_when
        ``"ALL_COMPLETED"`` (the default), ``"FIRST_COMPLETED"`` or
        ``"FIRST_EXCEPTION"``.

    Returns
    -------
    DoneAndNotDoneFutures
        The ``done`` and ``not_done`` sets (a coroutine returning them,
        when the futures belong to an asynchronous client).

    Examples
    --------
    >>> done, not_done = wait(client.map(inc, range(4)))  # doctest: +SKIP

    """
    fs = futures_of(fs, strict=True)
    try:
        timeout = parse_timedelta(timeout)
    except TypeError:
        raise TypeError(
            f"wait's timeout must be seconds or a string like '200 ms', not {timeout!r}: "
            "to wait for several futures pass them in one list, wait([x, y])"
        ) from None
    if return_when not in (ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION):
        raise ValueError(
            "return_when must be one of ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION; "
            f"got {return_when!r}"
        )
    groups = _engines(fs)
    if fs and fs[0].client.asynchronous:
        return _await(fs, timeout, return_when)  # type: ignore[return-value]
    with context.blocking():
        if return_when == ALL_COMPLETED:
            for core, group in groups.values():
                if not core.wait([f._key for f in group], timeout):
                    raise TimeoutError(f"futures not done within {timeout} s")
        else:
            _wait_first(fs, groups, timeout, return_when)
    done = {f for f in fs if f.done()}
    return DoneAndNotDoneFutures(done, set(fs) - done)


async def _await(
    fs: list[Future], timeout: float | None, return_when: str
) -> DoneAndNotDoneFutures:
    """``wait`` for an asynchronous client: holds no thread while waiting."""
    if return_when == ALL_COMPLETED:
        try:
            await aio.all_done(fs, timeout)
        except TimeoutError:
            raise TimeoutError(f"futures not done within {timeout} s") from None
    else:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pending = [f for f in fs if not f.done()]
            if len(pending) < len(fs) and (
                return_when == FIRST_COMPLETED or any(f.status == "error" for f in fs)
            ):
                break
            left = None if deadline is None else deadline - time.monotonic()
            if not pending or (left is not None and left <= 0):
                break
            await aio.first_done(pending, left)
    done = {f for f in fs if f.done()}
    return DoneAndNotDoneFutures(done, set(fs) - done)


def _wait_first(fs: list[Future], groups: dict, timeout: float | None, return_when: str) -> None:
    """Block until one future is done (FIRST_COMPLETED) or one erred or all
    are done (FIRST_EXCEPTION), or ``timeout`` passes.
    """
    by_key = {f._key: f for f in fs}
    if return_when == FIRST_COMPLETED and any(f.done() for f in fs):
        return
    if return_when == FIRST_EXCEPTION and any(f.status == "error" for f in fs):
        return
    queue = _engine.CompletionQueue()
    for core, group in groups.values():
        core.watch([f._key for f in group], queue)
    remaining = set(by_key)
    while remaining:
        key = queue.pop(timeout)
        if key is None:
            return
        remaining.discard(key)
        if return_when == FIRST_COMPLETED or by_key[key].status == "error":
            return


class as_completed(Iterator[Any]):
    """Iterate over futures in the order they complete.

    ``with_results=True`` yields ``(future, result)`` pairs, as Dask's: a
    failed task's exception is raised, unless ``raise_errors=False``, which
    yields ``(type, exception, traceback)`` as its result; a cancelled
    future yields its ``CancelledError`` as its result. More futures can be
    added while iterating.
    """

    def __init__(
        self,
        futures: Iterable[Future] | None = None,
        loop: Any = None,
        with_results: bool = False,
        raise_errors: bool = True,
        *,
        timeout: Any = None,
    ):
        arguments.reject("loop", loop)
        self._queue = _engine.CompletionQueue()
        self._futures: dict[str, list[Future]] = defaultdict(list)
        self._ready: deque[Future] = deque()
        self._lock = threading.Lock()
        self.with_results = with_results
        self.raise_errors = raise_errors
        self.timeout = parse_timedelta(timeout)
        if futures is not None:
            self.update(futures)

    def add(self, future: Any) -> None:
        """Add one future (or an actor's :class:`~shoal.actor.ActorFuture`)
        to the set being waited on.
        """
        if isinstance(future, BaseActorFuture):
            key = f"actor-call-{id(future)}"
            with self._lock:
                self._futures[key].append(future)
            future.add_done_callback(lambda _: self._queue.push(key))
            return
        if not isinstance(future, Future):
            raise TypeError(f"as_completed expects Futures, got {type(future).__name__}")
        with self._lock:
            self._futures[future._key].append(future)
        future._session.watch([future._key], self._queue)

    def update(self, futures: Any) -> None:
        """Add several futures: an iterable of them, or a persisted
        collection (its partitions' futures).
        """
        if is_dask_collection(futures):
            futures = futures_of(futures)
        for f in futures:
            self.add(f)

    def __repr__(self) -> str:
        for key in self._queue.drain():
            self._absorb(key)
        with self._lock:
            waiting = sum(len(v) for v in self._futures.values())
        return f"<as_completed: waiting={waiting} done={len(self._ready)}>"

    __str__ = __repr__

    def count(self) -> int:
        """How many futures have not been yielded yet."""
        with self._lock:
            return sum(len(v) for v in self._futures.values()) + len(self._ready)

    def is_empty(self) -> bool:
        """Whether every future has been yielded."""
        return self.count() == 0

    def has_ready(self) -> bool:
        """Whether a completed future is waiting to be yielded."""
        return bool(self._ready) or len(self._queue) > 0

    def _absorb(self, key: str) -> None:
        with self._lock:
            futures = self._futures.pop(key, [])
        self._ready.extend(futures)

    def _next_future(self, block: bool = True) -> Future | None:
        while not self._ready:
            if self.is_empty():
                raise StopIteration
            if not block and len(self._queue) == 0:
                return None
            with context.blocking():
                key = self._queue.pop(self.timeout)
            if key is None:
                raise TimeoutError(f"no future completed within {self.timeout} s")
            self._absorb(key)
        return self._ready.popleft()

    def _emit(self, f: Future) -> Any:
        if not self.with_results:
            return f
        try:
            return f, f.result()
        except CancelledError as e:
            return f, e
        except BaseException as e:
            if self.raise_errors:
                raise
            return f, (type(e), e, e.__traceback__)

    def __iter__(self) -> as_completed:
        return self

    def __aiter__(self) -> as_completed:
        return self

    async def __anext__(self) -> Any:
        """``async for``: the next completed future, holding no thread while
        it waits (results, with ``with_results``, are fetched off the loop).
        """
        import time

        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            try:
                f = self._next_future(block=False)
            except StopIteration:
                raise StopAsyncIteration from None
            if f is not None:
                break
            with self._lock:
                waiting = [fs[0] for fs in self._futures.values() if fs]
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"no future completed within {self.timeout} s")
            if any(isinstance(f, BaseActorFuture) for f in waiting):
                # an actor call completes on a thread: wait for the queue there
                key = await aio.offload_wait(self._queue.pop, left)
                if key is None:
                    raise TimeoutError(f"no future completed within {self.timeout} s")
                self._absorb(key)
            elif not await aio.first_done(waiting, left):
                raise TimeoutError(f"no future completed within {self.timeout} s")
        if not self.with_results:
            return f
        return await aio.offload(self._emit, f)

    def __next__(self) -> Any:
        f = self._next_future()
        assert f is not None
        return self._emit(f)

    def next_batch(self, block: bool = True) -> list[Any]:
        """Every completed future, waiting for at least one if ``block``."""
        for key in self._queue.drain():
            self._absorb(key)
        if not self._ready and block:
            f = self._next_future()
            if f is not None:
                self._ready.appendleft(f)
        out = []
        while self._ready:
            out.append(self._emit(self._ready.popleft()))
        return out

    def batches(self) -> Iterator[list[Any]]:
        """Yield lists of completed futures, as many as are ready at a time."""
        while not self.is_empty():
            try:
                yield self.next_batch(block=True)
            except StopIteration:
                return

    def clear(self) -> None:
        """Forget every future not yielded yet."""
        with self._lock:
            self._futures.clear()
        self._ready.clear()
