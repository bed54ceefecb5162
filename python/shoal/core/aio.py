"""The asynchronous client's plumbing: awaiting keys without holding a thread,
and running the synchronous implementation of a call off the event loop.

A session's done-callback thread (woken by the Rust client core when keys
complete, or fail because the connection is gone) resolves the asyncio
futures waiting on them with ``call_soon_threadsafe``. So ``await future``
holds no thread while the task runs; only fetching a result that is done
(which may read it from a worker) runs on a small thread pool, as do the
client's other calls.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # asyncio is imported where an event loop already runs
    import asyncio

T = TypeVar("T")

_local = threading.local()


def in_sync_call() -> bool:
    """Whether this thread runs the synchronous body of an asynchronous call
    (so nested calls must not return coroutines again).
    """
    return getattr(_local, "depth", 0) > 0


def loop_running() -> bool:
    """Whether this thread runs an asyncio event loop now."""
    import asyncio

    return asyncio._get_running_loop() is not None


def wants_coroutine(client: Any, asynchronous: Any) -> bool:
    """Whether a call given ``asynchronous=`` (None: as ``client`` is)
    returns a coroutine rather than its result.
    """
    if asynchronous is None:
        return bool(client.asynchronous)
    return bool(asynchronous) and not in_sync_call()


def run_blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` as the synchronous body of a call (so its nested calls
    return results, not coroutines) in this thread.
    """
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        return fn(*args, **kwargs)
    finally:
        _local.depth -= 1


class LazyPool:
    """A thread pool made on first use: a program that never needs it
    starts no threads. Call it for the pool.
    """

    def __init__(self, max_workers: int, name: str) -> None:
        self._max_workers = max_workers
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __call__(self) -> ThreadPoolExecutor:
        """The pool (made now if this is its first use)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix=self._name)
            return self._pool


#: Where asynchronous calls run their blocking bodies.
_executor = LazyPool(32, "shoal-async")

#: Where asynchronous coordination calls wait (a lock, an event, a queue):
#: such a wait may last as long as the program, so it must not take a
#: thread from the client's other calls (a release behind 32 waiting
#: acquires would never run).
_waiters = LazyPool(1024, "shoal-wait")


def offload(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Coroutine[Any, Any, T]:
    """A coroutine running ``fn(*args, **kwargs)`` on shoal's thread pool, so
    the event loop is never blocked by it.
    """
    return _offload(_executor, fn, args, kwargs)


def offload_wait(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Coroutine[Any, Any, T]:
    """As :func:`offload`, for a call that may wait without bound (on a
    lock, an event, a queue): it runs on a pool of its own.
    """
    return _offload(_waiters, fn, args, kwargs)


def _offload(
    pool: LazyPool, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Coroutine[Any, Any, T]:
    def call() -> T:
        return run_blocking(fn, *args, **kwargs)

    async def run() -> T:
        import asyncio

        return await asyncio.get_running_loop().run_in_executor(pool(), call)

    return run()


def maybe_async(method: Callable[..., T]) -> Callable[..., Any]:
    """Make a client method return a coroutine when its client is
    asynchronous (as Dask's do), and run it directly otherwise.
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.asynchronous:
            return offload(method, self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return wrapper


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _when_done(session: Any, key: str) -> asyncio.Future[None]:
    """An asyncio future of the running loop, resolved once ``key`` of
    ``session`` is done, by the session's callback thread.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(_resolve, fut)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more

    session.add_done_callback(key, wake)
    return fut


async def all_done(futures: Iterable[Any], timeout: float | None = None) -> None:
    """Return once every shoal Future is done, holding no thread meanwhile.

    Raises
    ------
    TimeoutError
        If they are not all done within ``timeout`` seconds.

    """
    await keys_done([(f._session, f._key) for f in futures if not f.done()], timeout)


async def keys_done(keys: list[tuple[Any, str]], timeout: float | None = None) -> None:
    """Return once every ``(session, key)`` is done (see :func:`all_done`)."""
    import asyncio

    waits = [_when_done(session, key) for session, key in keys]
    if waits:
        await asyncio.wait_for(asyncio.gather(*waits), timeout)


async def first_done(futures: Iterable[Any], timeout: float | None = None) -> bool:
    """Return once one shoal Future is done: True, or False after ``timeout``."""
    import asyncio

    futures = list(futures)
    if not futures or any(f.done() for f in futures):
        return True
    waits = [_when_done(f._session, f._key) for f in futures]
    done, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    for w in pending:
        w.cancel()
    return bool(done)


def run_to_end(awaitable: Any, timeout: float | None = None) -> Any:
    """Run ``awaitable`` to its end on an event loop of its own, in a
    thread of its own (so it works whether or not the calling thread runs a
    loop), and return its result; ``TimeoutError`` after ``timeout``
    seconds.
    """
    import asyncio

    async def main() -> Any:
        return await asyncio.wait_for(awaitable, timeout)

    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = asyncio.run(main())
        except BaseException as e:  # raised again in the caller
            out["error"] = e

    thread = threading.Thread(target=run, name="shoal-sync")
    thread.start()
    thread.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def as_event_loop(loop: Any) -> Any:
    """The asyncio event loop a ``loop=`` argument names: None, an asyncio
    loop, or a tornado ``IOLoop`` (its ``asyncio_loop``).

    Raises
    ------
    TypeError
        For anything else.

    """
    import asyncio

    if loop is None or isinstance(loop, asyncio.AbstractEventLoop):
        return loop
    inner = getattr(loop, "asyncio_loop", None)
    if isinstance(inner, asyncio.AbstractEventLoop):
        return inner
    raise TypeError(f"loop= takes an asyncio event loop (or a tornado IOLoop), not {loop!r}")


def run_on(loop: Any, awaitable: Any, timeout: float | None = None) -> Any:
    """Run ``awaitable`` on ``loop``, an event loop running in another
    thread, and return its result; ``TimeoutError`` after ``timeout``
    seconds. A loop that is not running (or is this thread's) is not
    waited on: the awaitable runs on a loop of its own instead.
    """
    import asyncio

    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if not loop.is_running() or loop is current or loop.is_closed():
        return run_to_end(awaitable, timeout)

    async def main() -> Any:
        return await asyncio.wait_for(awaitable, timeout)

    return asyncio.run_coroutine_threadsafe(main(), loop).result()
