"""A named value held by the scheduler."""

from __future__ import annotations

from typing import Any

from .._engine import Answer, Coord
from ._request import (
    AsyncUse,
    ask,
    awaitable,
    dump,
    load,
    maybe_client,
    new_name,
    seconds,
    timed_out,
)


class Variable(AsyncUse):
    """A value shared by clients and tasks, held by the scheduler.

    On an asynchronous client its calls return coroutines.

    The value may be a future: the variable keeps its result in the
    cluster until the variable is set to something else or deleted.

    Parameters
    ----------
    name
        Variables with the same name are the same variable.
    client
        The client to use (default: the default client; inside a task, the
        worker's).

    Examples
    --------
    >>> stop = Variable("stop")  # doctest: +SKIP
    >>> stop.set(False)  # doctest: +SKIP
    >>> stop.get()  # doctest: +SKIP
    False

    """

    def __init__(self, name: str | None = None, client: Any = None):
        self.client = maybe_client(client)
        self.name = name or new_name("variable")

    def set(self, value: Any, timeout: Any = None) -> Any:
        """Set the value (any picklable value, or a Future).

        Parameters
        ----------
        value
            The new value.
        timeout
            Accepted for Dask's signature; setting never waits.

        """
        seconds(timeout)  # checked, though a set is answered at once
        return self._set(value)

    @awaitable
    def _set(self, value: Any) -> None:
        # Pickled here, so a future in `value` lives until the scheduler
        # holds it (a coroutine would otherwise keep only its key).
        frames, keys = dump(self.client, value, "a variable's value")
        ask(self.client, Coord.VariableSet(self.name, frames, keys))

    def get(self, timeout: Any = None) -> Any:
        """The value, waiting until one is set.

        Parameters
        ----------
        timeout
            Seconds (or ``"200 ms"``) to wait; forever if None.

        Raises
        ------
        TimeoutError
            If no value was set in time.

        """
        return self._get(seconds(timeout))

    @awaitable
    def _get(self, t: float | None) -> Any:
        answer = ask(self.client, Coord.VariableGet(self.name), t)
        if not isinstance(answer, Answer.Items):
            raise timed_out(f"get of variable {self.name!r}", t)
        return load(self.client, answer.items[0])

    def delete(self) -> Any:
        """Delete the variable (a future it held may then be released)."""
        return self._delete()

    @awaitable
    def _delete(self) -> None:
        ask(self.client, Coord.VariableDelete(self.name))

    def __reduce__(self) -> Any:
        return (Variable, (self.name,))

    def __repr__(self) -> str:
        return f"<Variable: {self.name}>"
