"""Actors: one stateful object living on one worker, as in Dask.

``client.submit(Counter, actor=True)`` runs a task that builds the object on
a worker and keeps it there; the task's result is an :class:`Actor`, a
small picklable handle naming the worker and the key. Calling a method on
the handle sends the call straight to that worker's data server (the path
``Client.run`` takes, outside the task slots) and returns an
:class:`ActorFuture` at once. Reading an attribute waits and returns its
value, as in Dask.

Calls from one handle run in the order they were made: each carries a
sequence number, and the worker runs a handle's calls in that order, one at
a time per actor. The object goes when its future is released (the worker
drops it when the scheduler frees the key), or when its worker dies; calls
then raise an error saying so.
"""

from __future__ import annotations

import inspect
import itertools
import threading
import uuid
from collections.abc import Generator
from concurrent.futures import Future as ConcurrentFuture
from typing import Any

from ._engine import RunAnswer
from .core import aio, context, serialize
from .core.errors import rebuild
from .core.times import parse_timedelta
from .futures import BaseActorFuture
from .worker import task_context as worker_context

#: Where actor method calls wait for their answers.
_sender_pool = aio.LazyPool(64, "shoal-actor")
_factories: dict[type, ActorFactory] = {}


class ActorFactory:
    """The function of an actor's task: builds the object on the worker,
    keeps it there, and returns its :class:`Actor` handle.
    """

    def __init__(self, cls: type):
        self.cls = cls
        self.__name__ = cls.__name__

    def __call__(self, *args: Any, **kwargs: Any) -> Actor:
        """Build the object in this worker and return its handle."""
        worker = worker_context.get_worker()
        key = worker_context.current_key()
        if key is None:
            raise RuntimeError("an actor is created by a task: use submit(cls, actor=True)")
        worker.actors[key] = ActorHost(self.cls(*args, **kwargs))
        return Actor(self.cls, worker.address, key)


def factory(cls: Any) -> ActorFactory:
    """The (cached) task function creating actors of class ``cls``.

    Raises
    ------
    TypeError
        If ``cls`` is not a class.

    """
    if not isinstance(cls, type):
        raise TypeError(f"actor=True needs a class to instantiate, not {cls!r}")
    f = _factories.get(cls)
    if f is None:
        f = _factories[cls] = ActorFactory(cls)
    return f


class ActorHost:
    """An actor's object on its worker, and the order its calls run in."""

    def __init__(self, obj: Any):
        self.obj = obj
        self._turn = threading.Condition()
        self._next: dict[str, int] = {}

    def call(self, caller: str, seq: int, name: str | None, args: tuple, kwargs: dict) -> Any:
        """Run call ``seq`` of handle ``caller`` once its earlier calls ran,
        alone on this actor; an attribute that is not callable is read, and
        a call without a name only takes its turn.
        """
        with self._turn:
            while self._next.get(caller, 0) != seq:
                self._turn.wait()
            try:
                if name is None:
                    return None
                attr = getattr(self.obj, name)
                return attr(*args, **kwargs) if callable(attr) else attr
            finally:
                self._next[caller] = seq + 1
                self._turn.notify_all()


def actor_call(
    key: str,
    caller: str,
    seq: int,
    name: str | None,
    args: tuple,
    kwargs: dict,
    dask_worker: Any,
) -> Any:
    """Runs on the actor's worker (sent like a ``Client.run`` call)."""
    host = dask_worker.actors.get(key)
    if host is None:
        raise RuntimeError(
            f"actor {key} is not on worker {dask_worker.address}: its future was released, "
            "or the worker restarted"
        )
    return host.call(caller, seq, name, args, kwargs)


class ActorFuture(BaseActorFuture):
    """The future result of a method call on an :class:`Actor`.

    ``result()`` waits for it; ``await`` works too, and :func:`as_completed`
    takes it.
    """

    def __init__(self, inner: ConcurrentFuture):
        self._inner = inner

    def result(self, timeout: Any = None) -> Any:
        """Wait for the call and return its value, or raise its error.

        Parameters
        ----------
        timeout
            Seconds (or a string such as ``"1 s"``); forever if None.

        Returns
        -------
        The method's return value.

        """
        timeout = parse_timedelta(timeout)
        if not self._inner.done():
            with context.blocking():
                return self._inner.result(timeout)
        return self._inner.result()

    def done(self) -> bool:
        """Whether the call finished."""
        return self._inner.done()

    def exception(self, timeout: Any = None) -> BaseException | None:
        """Wait and return the call's exception, or None."""
        return self._inner.exception(parse_timedelta(timeout))

    def __await__(self) -> Generator[Any, None, Any]:
        import asyncio  # loaded already: an event loop runs this

        return asyncio.wrap_future(self._inner).__await__()

    def add_done_callback(self, fn: Any) -> None:
        """Call ``fn(self)`` once the call has finished (from the thread that
        finishes it, or now if it has).
        """
        self._inner.add_done_callback(lambda _: fn(self))

    def __repr__(self) -> str:
        return "<ActorFuture>"


def _unpickled_actor(cls: type, address: str, key: str) -> Actor:
    """A handle arriving in a process: like Dask's, it holds a future of its
    key, so the actor lives at least as long as the handle.
    """
    actor = Actor(cls, address, key)
    # The client receiving the handle (so its own future of the key is
    # still held when the new one is made), else the default one.
    client = serialize.unpickling_client() or context.current_default()
    if client is not None:
        from .futures import Future

        actor._future = Future(key, client)
    return actor


class Actor:
    """A handle on an object living on a worker (see :mod:`shoal.actor`).

    Examples
    --------
    >>> counter = client.submit(Counter, actor=True).result()  # doctest: +SKIP
    >>> counter.increment().result()  # doctest: +SKIP
    1
    >>> counter.n  # doctest: +SKIP
    1

    """

    #: The worker keeps the actor until the scheduler frees this result.
    _keep_until_freed = True

    def __init__(self, cls: type, address: str, key: str):
        self._cls = cls
        self._address = address
        self.key = key
        self._caller = uuid.uuid4().hex
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._future: Any = None

    def __reduce__(self) -> Any:
        return (_unpickled_actor, (self._cls, self._address, self.key))

    def __repr__(self) -> str:
        return f"<Actor: {self._cls.__name__}, key={self.key}>"

    def __dir__(self) -> list[str]:
        names = set(dir(type(self)))
        names.update(a for a in dir(self._cls) if not a.startswith("_"))
        return sorted(names)

    def _client(self) -> Any:
        """The client of the handle's future, else the default one."""
        if self._future is not None and self._future.client.status == "running":
            return self._future.client
        return context.default_client()

    def _send(self, name: str, args: tuple, kwargs: dict) -> ConcurrentFuture:
        host = self._host_here()
        if host is not None:
            # The actor lives on this worker: call it here and now, in its
            # turn, as Dask's eager actor futures do.
            with self._lock:
                seq = next(self._seq)
            done: ConcurrentFuture = ConcurrentFuture()
            try:
                value = host.call(self._caller, seq, name, args, kwargs)
            except Exception as e:
                done.set_exception(e)
                return done
            if inspect.iscoroutine(value):
                # an `async def` method runs on the worker's event loop
                import asyncio

                loop = worker_context.current_worker().event_loop()  # type: ignore[union-attr]
                return asyncio.run_coroutine_threadsafe(value, loop)
            done.set_result(value)
            return done
        client = self._client()
        with self._lock:
            seq = next(self._seq)
            try:
                call = serialize.dumps(
                    (actor_call, (self.key, self._caller, seq, name, args, kwargs), {})
                )
            except Exception as e:
                # The number is spent: tell the worker to skip it, so later
                # calls do not wait for it.
                skip = (actor_call, (self.key, self._caller, seq, None, (), {}), {})
                _sender_pool().submit(self._deliver, client, serialize.dumps(skip))
                failed: ConcurrentFuture = ConcurrentFuture()
                failed.set_exception(TypeError(f"Could not serialize the call to {name}: {e}"))
                return failed
            return _sender_pool().submit(self._deliver, client, call)

    def _host_here(self) -> Any:
        """The actor's host if it lives on the worker running this code."""
        worker = worker_context.current_worker()
        if worker is None or worker.address != self._address:
            return None
        return worker.actors.get(self.key)

    def _deliver(self, client: Any, call: list[bytes]) -> Any:
        address = self._address
        [(_, answer)] = client._session.run_on_workers([address], call)
        if isinstance(answer, RunAnswer.Value):
            return serialize.loads(answer.frames)
        if isinstance(answer, RunAnswer.Raised):
            raise rebuild(answer.error)
        raise RuntimeError(
            f"Worker holding Actor was lost: {address} cannot be reached ({answer.message})"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        attr = getattr(self._cls, name, None)
        if callable(attr):

            def method(*args: Any, separate_thread: bool = True, **kwargs: Any) -> ActorFuture:
                if not separate_thread:
                    raise NotImplementedError(
                        "shoal runs an actor's methods on a thread of its worker, never on "
                        "the worker's event loop: leave separate_thread=True"
                    )
                return ActorFuture(self._send(name, args, kwargs))

            method.__name__ = name
            method.__doc__ = getattr(attr, "__doc__", None)
            return method
        future = ActorFuture(self._send(name, (), {}))
        if self._client().asynchronous:
            return future
        return future.result()
