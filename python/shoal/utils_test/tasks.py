"""Functions to run as tasks in tests, by the names of Dask's
``distributed.utils_test`` (``inc``, ``slowinc``, ``varying``, ...).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from itertools import count
from typing import Any


def inc(x: Any) -> Any:
    """``x + 1``."""
    return x + 1


def dec(x: Any) -> Any:
    """``x - 1``."""
    return x - 1


def mul(x: Any, y: Any) -> Any:
    """``x * y``."""
    return x * y


def div(x: Any, y: Any) -> Any:
    """``x / y`` (a task that errs for ``y == 0``)."""
    return x / y


def throws(x: Any) -> Any:
    """Always raises ``RuntimeError("hello!")``."""
    raise RuntimeError("hello!")


def double(x: Any) -> Any:
    """``x * 2``."""
    return x * 2


def slowinc(x: Any, delay: float = 0.02) -> Any:
    """``x + 1`` after sleeping ``delay`` seconds."""
    time.sleep(delay)
    return x + 1


def slowdec(x: Any, delay: float = 0.02) -> Any:
    """``x - 1`` after sleeping ``delay`` seconds."""
    time.sleep(delay)
    return x - 1


def slowdouble(x: Any, delay: float = 0.02) -> Any:
    """``2 * x`` after sleeping ``delay`` seconds."""
    time.sleep(delay)
    return 2 * x


def randominc(x: Any, scale: float = 1) -> Any:
    """``x + 1`` after sleeping a random time up to ``scale`` seconds."""
    import random

    time.sleep(random.random() * scale)
    return x + 1


def slowadd(x: Any, y: Any, delay: float = 0.02) -> Any:
    """``x + y`` after sleeping ``delay`` seconds."""
    time.sleep(delay)
    return x + y


def slowsum(seq: Any, delay: float = 0.02) -> Any:
    """``sum(seq)`` after sleeping ``delay`` seconds."""
    time.sleep(delay)
    return sum(seq)


def slowidentity(*args: Any, delay: float = 0.02) -> Any:
    """Its one argument (or the tuple of them) after sleeping ``delay`` seconds."""
    time.sleep(delay)
    return args[0] if len(args) == 1 else args


def lock_inc(x: Any, lock: Any) -> Any:
    """``x + 1`` while holding ``lock``."""
    with lock:
        return x + 1


def block_on_event(event: Any) -> None:
    """Wait until ``event`` (a :class:`shoal.Event`) is set."""
    event.wait()


async def asyncinc(x: Any, delay: float = 0.02) -> Any:
    """``x + 1`` after ``await asyncio.sleep(delay)``."""
    await asyncio.sleep(delay)
    return x + 1


# Calls counted per varying() function; looked up through sys.modules so a
# function pickled to a worker on threads of this process counts here too.
_calls: dict[int, int] = {}
_varying_ids = count()


def _next_call(ident: int) -> int:
    table = sys.modules[__name__]._calls
    i = table.get(ident, 0)
    table[ident] = i + 1
    return i


def varying(items: list[Any]) -> Callable[[], Any]:
    """A function returning ``items[0]``, then ``items[1]``, ... on each call
    (raising the item if it is an exception, ``IndexError`` past the end).

    Calls are counted in this process: use it on workers on threads
    (``gen_cluster``'s default).
    """
    ident = next(_varying_ids)
    items = list(items)

    def func() -> Any:
        i = _next_call(ident)
        if i >= len(items):
            raise IndexError(i)
        if isinstance(items[i], BaseException):
            raise items[i]
        return items[i]

    return func


def _apply(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return func(*args, **kwargs)


def map_varying(itemslists: list[list[Any]]) -> tuple[Callable[..., Any], list[Any]]:
    """``(apply, [varying(items) for items in itemslists])``, for ``client.map``."""
    return _apply, [varying(items) for items in itemslists]
