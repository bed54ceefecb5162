"""A first-in first-out queue held by the scheduler."""

from __future__ import annotations

from typing import Any

from .._engine import Answer, Coord
from ._request import (
    AsyncUse,
    ask,
    ask_count,
    awaitable,
    dump,
    load,
    maybe_client,
    new_name,
    on_async_client,
    seconds,
    timed_out,
)


class Queue(AsyncUse):
    """A queue shared by clients and tasks, held by the scheduler.

    On an asynchronous client its calls return coroutines; ``await
    Queue(...)`` makes it on the scheduler at once (otherwise its first
    call does).

    Items are any picklable values, futures included: a future in the
    queue keeps its result in the cluster until someone takes it.

    Parameters
    ----------
    name
        Queues with the same name are the same queue (default: a new one).
    client
        The client to use (default: the default client; inside a task, the
        worker's).
    maxsize
        ``put`` waits while the queue holds this many items (0: no bound).
        The first ``Queue`` of a name sets it.

    Examples
    --------
    >>> q = Queue("results")  # doctest: +SKIP
    >>> q.put(client.submit(inc, 1))  # doctest: +SKIP
    >>> q.get().result()  # doctest: +SKIP
    2

    """

    def __init__(self, name: str | None = None, client: Any = None, maxsize: int = 0):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int) or maxsize < 0:
            raise ValueError(f"maxsize must be a whole number, 0 or more, not {maxsize!r}")
        self.client = maybe_client(client)
        self.name = name or new_name("queue")
        self.maxsize = maxsize
        self._made = False
        # On an asynchronous client `await` or the first call makes it;
        # unpickled where no client runs, the first call.
        if self._client is not None and not on_async_client(self):
            self._start()

    def _start(self) -> None:
        if not self._made:
            ask(self.client, Coord.QueueCreate(self.name, self.maxsize))
            self._made = True

    def put(self, value: Any, timeout: Any = None) -> None:
        """Add ``value`` at the end, waiting while the queue is full.

        Parameters
        ----------
        value
            Any picklable value, or a Future.
        timeout
            Seconds (or ``"200 ms"``) to wait for room; forever if None.

        Raises
        ------
        TimeoutError
            If there was no room in time (nothing was put).

        """
        return self._put(value, seconds(timeout))

    @awaitable
    def _put(self, value: Any, t: float | None) -> None:
        # Pickled here, so a future in `value` lives until the scheduler
        # holds it (a coroutine would otherwise keep only its key).
        frames, keys = dump(self.client, value, "a queue item")
        self._start()
        answer = ask(self.client, Coord.QueuePut(self.name, frames, keys), t)
        if isinstance(answer, Answer.TimedOut):
            raise timed_out(f"put on queue {self.name!r}", t)

    def get(self, timeout: Any = None, batch: bool | int = False) -> Any:
        """Take the first item, waiting until there is one.

        Parameters
        ----------
        timeout
            Seconds (or ``"200 ms"``) to wait; forever if None.
        batch
            ``True``: every item there now, as a list, without waiting; a
            number ``n``: a list of ``n`` items, waiting until there are
            that many.

        Returns
        -------
        The item (futures come back as futures of this client), or a list.

        Raises
        ------
        TimeoutError
            If nothing came in time (nothing was taken).

        """
        t = seconds(timeout)
        if batch is True:
            count = 0
        elif batch is False:
            count = 1
        elif isinstance(batch, int) and batch > 0:
            count = batch
        else:
            raise ValueError(f"batch must be True, False or a positive number, not {batch!r}")
        return self._get(count, t, batch is not False)

    @awaitable
    def _get(self, count: int, t: float | None, many: bool) -> Any:
        self._start()
        answer = ask(self.client, Coord.QueueGet(self.name, count), t)
        if not isinstance(answer, Answer.Items):
            raise timed_out(f"get from queue {self.name!r}", t)
        values = [load(self.client, frames) for frames in answer.items]
        return values if many else values[0]

    @awaitable
    def qsize(self) -> int:
        """How many items the queue holds now."""
        self._start()
        return ask_count(self.client, Coord.QueueSize(self.name))

    def __reduce__(self) -> Any:
        return (_rebuild, (self.name, self.maxsize))

    def __repr__(self) -> str:
        return f"<Queue: {self.name}>"


def _rebuild(name: str, maxsize: int) -> Queue:
    return Queue(name, maxsize=maxsize)
