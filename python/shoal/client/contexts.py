"""Which client is current, and running coroutines: ``as_current``,
``current`` and ``sync``. Part of :class:`Client`.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Generator
from typing import Any, Callable

from ..core import aio, context
from ..core.times import parse_timedelta


class ContextCalls:
    """The Client's calls about the current client and coroutines."""

    asynchronous: bool

    @contextlib.contextmanager
    def as_current(self) -> Generator[None, None, None]:
        """Make this client :meth:`current` inside the block (in this
        thread or asyncio task only): work with no client named runs here,
        and futures unpickled here belong to it.

        Examples
        --------
        >>> with client.as_current():  # doctest: +SKIP
        ...     assert Client.current() is client

        """
        with context.as_current(self):
            yield

    @classmethod
    def current(cls, allow_global: bool = True) -> Any:
        """The client of the innermost :meth:`as_current` block; outside
        one, the default client.

        Parameters
        ----------
        allow_global
            False: outside an ``as_current`` block raise instead of
            returning the default client.

        Returns
        -------
        Client

        Raises
        ------
        ValueError
            If there is no such client.

        """
        scoped = context.current_scoped()
        if scoped is not None:
            return scoped
        if allow_global:
            return context.default_client()
        raise ValueError("Not running inside the `as_current` context manager")

    def sync(
        self,
        func: Callable[..., Any],
        *args: Any,
        asynchronous: bool | None = None,
        callback_timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Call ``func(*args, **kwargs)``; if it returns an awaitable,
        return it to await on an asynchronous client, or run it to its end
        and return its result on a synchronous one (as Dask's
        ``Client.sync``).

        Parameters
        ----------
        func
            A function, usually ``async def``.
        *args, **kwargs
            Its arguments.
        asynchronous
            Force either way (default: as this client is).
        callback_timeout
            Seconds (or ``"1 s"``) after which ``TimeoutError`` is raised.

        Returns
        -------
        The result (an awaitable on an asynchronous client).

        Examples
        --------
        >>> async def double(x):
        ...     return 2 * x
        >>> client.sync(double, 21)  # doctest: +SKIP
        42

        """
        timeout = parse_timedelta(callback_timeout)
        result = func(*args, **kwargs)
        if asynchronous is None:
            asynchronous = self.asynchronous
        if not inspect.isawaitable(result):
            return result
        if asynchronous:
            if timeout is None:
                return result
            import asyncio

            return asyncio.wait_for(result, timeout)
        loop = getattr(self, "_loop", None)
        if loop is not None:
            return aio.run_on(aio.as_event_loop(loop), result, timeout)
        return aio.run_to_end(result, timeout)

    @property
    def loop(self) -> Any:
        """The event loop given as ``loop=`` (None: shoal's calls need none)."""
        return getattr(self, "_loop", None)
