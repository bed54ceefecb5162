"""Publish and subscribe: messages to every current subscriber of a topic.

Messages go through the scheduler, which forwards each to the subscribers
it has when the message arrives; a subscriber keeps what it received until
it takes it. Messages published before a subscriber existed are not
delivered to it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from .._engine import Coord
from ..core import aio, serialize
from ._request import ask, awaitable, client_of, next_subscription, seconds, timed_out


def _reject_worker(worker: Any) -> None:
    if worker is not None:
        raise NotImplementedError(
            "Pub/Sub(worker=...) is not supported: messages go through the scheduler"
        )


class Pub:
    """Publish messages to a topic.

    Parameters
    ----------
    name
        The topic.
    worker
        Not supported (messages go through the scheduler); leave None.
    client
        The client to use (default: the default client; inside a task, the
        worker's).

    Examples
    --------
    >>> pub = Pub("progress")  # doctest: +SKIP
    >>> pub.put({"done": 10})  # doctest: +SKIP

    """

    def __init__(self, name: str, worker: Any = None, client: Any = None):
        _reject_worker(worker)
        self.client = client_of(client)
        self.name = name

    def put(self, msg: Any) -> None:
        """Send ``msg`` (any picklable value, not a future) to every
        current subscriber.
        """
        frames, keys = serialize.dumps_held(msg, "a published message")
        if keys:
            raise TypeError("published messages cannot hold futures: use a Queue")
        ask(self.client, Coord.Publish(self.name, frames))

    def __reduce__(self) -> Any:
        return (Pub, (self.name,))

    def __repr__(self) -> str:
        return f"<Pub: {self.name}>"


class Sub:
    """Receive the messages published to a topic from now on.

    Parameters
    ----------
    name
        The topic.
    worker
        Not supported (messages go through the scheduler); leave None.
    client
        The client to use (default: the default client; inside a task, the
        worker's).

    Examples
    --------
    >>> sub = Sub("progress")  # doctest: +SKIP
    >>> sub.get(timeout="5 s")  # doctest: +SKIP
    {'done': 10}

    """

    def __init__(self, name: str, worker: Any = None, client: Any = None):
        _reject_worker(worker)
        self.client = client_of(client)
        self.name = name
        self._sub = next_subscription()
        ask(self.client, Coord.Subscribe(name, self._sub))
        weakref.finalize(self, _unsubscribe, self.client, self._sub)

    def get(self, timeout: Any = None) -> Any:
        """The next message, waiting until one comes (a coroutine to await,
        with an asynchronous client).

        Raises
        ------
        TimeoutError
            If none came within ``timeout`` (seconds or ``"200 ms"``).

        """
        return self._get(seconds(timeout))

    @awaitable
    def _get(self, t: float | None) -> Any:
        engine = self.client._session
        if engine.buffered(self._sub):
            frames = engine.next_published(self._sub, 0.0)
        else:
            frames = engine.next_published(self._sub, t)
        if frames is None:
            raise timed_out(f"get from topic {self.name!r}", t)
        return serialize.loads(frames)

    @property
    def buffer(self) -> int:
        """How many received messages wait to be taken."""
        return int(self.client._session.buffered(self._sub))

    def __iter__(self) -> Iterator[Any]:
        while True:
            yield self.get()

    def __aiter__(self) -> Sub:
        return self

    async def __anext__(self) -> Any:
        return await aio.offload_wait(self._get, None)

    def __reduce__(self) -> Any:
        return (Sub, (self.name,))

    def __repr__(self) -> str:
        return f"<Sub: {self.name}>"


def _unsubscribe(client: Any, sub: int) -> None:
    if client.status == "running":
        try:
            ask(client, Coord.Unsubscribe(sub))
        except Exception:
            pass  # the connection is going: the scheduler drops it anyway
