"""What every coordination object shares: finding its client, asking the
scheduler, and moving values (which may hold futures) in and out.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from .._engine import Answer, Coord
from ..core import aio, context, families, serialize
from ..core.errors import ClosedClientError
from ..core.times import parse_timedelta

T = TypeVar("T")


def client_of(client: Any) -> Any:
    """``client``; inside a task, the worker's; else the default client."""
    return context.client_here(client)


def maybe_client(client: Any) -> Any:
    """``client``, the worker's inside a task, the default client, or None
    (an object unpickled where there is no client finds one on first use).
    """
    try:
        return context.client_here(client)
    except ValueError:
        return None


def on_async_client(obj: Any) -> bool:
    """Whether ``obj``'s client is asynchronous (and this is not already
    the synchronous body of one of its calls).
    """
    return bool(getattr(obj.client, "asynchronous", False))


def awaitable(method: Callable[..., T]) -> Callable[..., Any]:
    """Make a coordination call return a coroutine when its object's client
    is asynchronous, as Dask's do: the call then runs off the event loop,
    on a pool kept for waits (so a wait never blocks the loop, nor takes a
    thread from the client's other calls).
    """

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if on_async_client(self):
            return aio.offload_wait(method, self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return call


class AsyncUse:
    """``await obj`` (ready to use) and ``async with obj`` (acquire, then
    release) for coordination objects on an asynchronous client.
    """

    _client: Any = None

    @property
    def client(self) -> Any:
        """The client it asks the scheduler through (None while there is
        none: unpickled where no client runs).
        """
        if self._client is None:
            self._client = maybe_client(None)
        return self._client

    @client.setter
    def client(self, value: Any) -> None:
        self._client = value

    def _start(self) -> None:
        """Whatever the object must ask of the scheduler before use."""

    def __await__(self) -> Generator[Any, None, Any]:
        async def started() -> Any:
            await aio.offload_wait(self._start)
            return self

        return started().__await__()

    async def __aenter__(self) -> Any:
        await aio.offload_wait(self.acquire)  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await aio.offload_wait(self.release)  # type: ignore[attr-defined]


_subscriptions = itertools.count(1)


def next_subscription() -> int:
    """A subscription number no other subscription of this process has
    (pub/sub topics and event-log topics share them).
    """
    return next(_subscriptions)


def new_name(kind: str) -> str:
    """A fresh name for an unnamed object."""
    return f"{kind}-{uuid.uuid4().hex}"


def seconds(timeout: Any) -> float | None:
    """A timeout in seconds (numbers, or Dask's strings like ``"200 ms"``)."""
    t = parse_timedelta(timeout)
    if t is not None and t < 0:
        raise ValueError(f"timeout must not be negative, not {timeout!r}")
    return t


def ask(client: Any, op: Coord, timeout: float | None = None) -> Answer:
    """Send request ``op`` and return the scheduler's answer (an
    ``Answer.TimedOut`` if ``timeout`` seconds passed first).

    A task that waits here keeps its thread, as in Dask (a task holding a
    lock may wait on a variable): to let other tasks run on its thread
    while it waits for them, it calls ``secede()`` first.
    """
    if client is None:
        raise RuntimeError(
            "this object is not properly initialized: it was made (or unpickled) where no "
            "client runs. Start a client first: Client('tcp://host:port')"
        )
    if client.status != "running":
        raise ClosedClientError(f"the client is {client.status}")
    answer = client._session.request(op, timeout)
    if isinstance(answer, Answer.Invalid):
        raise ValueError(answer.message)
    if isinstance(answer, Answer.UnknownKeys):
        # Dask raises TimeoutError here once its timeout passes, waiting for
        # the keys to arrive; shoal's scheduler has every key a client sent
        # before this request, so these will never come.
        raise TimeoutError(
            f"Task {', '.join(answer.keys)} unknown to scheduler (released or cancelled): "
            "a future must be kept by a client to be shared"
        )
    return answer


def ask_count(client: Any, op: Coord) -> int:
    """Send ``op``, whose answer is a count, and return it."""
    answer = ask(client, op)
    assert isinstance(answer, Answer.Count), answer
    return int(answer.n)


def ask_flag(client: Any, op: Coord) -> bool:
    """Send ``op``, whose answer is a yes or no, and return it."""
    answer = ask(client, op)
    assert isinstance(answer, Answer.Flag), answer
    return bool(answer.value)


def dump(client: Any, value: Any, what: str) -> tuple[list[bytes], list[str]]:
    """Pickle a value ``client`` sends for the scheduler to hold (within its
    serialization families); the keys of its futures.
    """
    families.check_sendable(value, getattr(client, "_serializers", None), what)
    return serialize.dumps_held(value, what)


def load(client: Any, frames: list[bytes]) -> Any:
    """Unpickle a held value; futures inside become ``client``'s, and know
    their state when it is returned (as in Dask: a future of a failed task
    says so at once).
    """
    value = serialize.loads_for(frames, client)
    from ..completion import futures_of

    if any(f.status == "pending" for f in futures_of(value)):
        client._session.barrier()
    return value


def timed_out(what: str, timeout: float | None) -> TimeoutError:
    return TimeoutError(f"{what} timed out after {timeout} s")
