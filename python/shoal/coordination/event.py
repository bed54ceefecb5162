"""A cluster-wide event flag held by the scheduler."""

from __future__ import annotations

from typing import Any

from .._engine import Answer, Coord
from ._request import AsyncUse, ask, ask_flag, awaitable, maybe_client, new_name, seconds


class Event(AsyncUse):
    """A flag that clients and tasks can wait on, set and clear.

    On an asynchronous client its calls return coroutines.

    Parameters
    ----------
    name
        Events with the same name are the same event (default: a new one).
    client
        The client to use (default: the default client; inside a task, the
        worker's).

    Examples
    --------
    >>> go = Event("go")  # doctest: +SKIP
    >>> def worker_task(go=go):
    ...     go.wait()
    ...     return "started"
    >>> go.set()  # doctest: +SKIP

    """

    def __init__(self, name: str | None = None, client: Any = None):
        self.client = maybe_client(client)
        self.name = name or new_name("event")

    @awaitable
    def set(self) -> None:
        """Set the flag: every waiter wakes."""
        ask(self.client, Coord.EventSet(self.name))

    @awaitable
    def clear(self) -> None:
        """Clear the flag: later waits wait again."""
        ask(self.client, Coord.EventClear(self.name))

    @awaitable
    def is_set(self) -> bool:
        """Whether the flag is set."""
        return ask_flag(self.client, Coord.EventIsSet(self.name))

    def wait(self, timeout: Any = None) -> bool:
        """Wait until the flag is set.

        Parameters
        ----------
        timeout
            Seconds (or ``"200 ms"``) to wait; forever if None.

        Returns
        -------
        bool
            True if it was set, False if the timeout passed first.

        """
        return self._wait(seconds(timeout))

    @awaitable
    def _wait(self, t: float | None) -> bool:
        answer = ask(self.client, Coord.EventWait(self.name), t)
        return not isinstance(answer, Answer.TimedOut)

    def __reduce__(self) -> Any:
        return (Event, (self.name,))

    def __repr__(self) -> str:
        return f"<Event: {self.name}>"
