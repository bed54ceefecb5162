"""``scatter``: data from this process into the cluster.

A small value (at most ``INLINE_LIMIT`` bytes pickled) goes to the scheduler
inside its task spec, which keeps a copy, so it survives its worker. A larger
one goes straight to a worker's data server (``PeerRequest::Put``) from the
memory it lies in (its frames are views of the value's own buffers), and its
spec carries no frames and names that worker: the worker keeps what it was
sent when the scheduler places the key there. As in Dask, such a value is
lost with its worker unless it was replicated.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from .. import _engine
from . import keys, serialize
from .options import Options, OptionsTable
from .sizes import format_bytes
from .spec import LITERAL_FUNC, task_spec

#: Values larger than this (pickled) go straight to a worker.
DIRECT_ABOVE: int = _engine.INLINE_LIMIT

#: How long a put may take when the caller set no timeout (a day).
_NO_TIMEOUT = 86_400.0


def _targets(engine: Any, workers: list[str]) -> list[tuple[str, int]]:
    """Addresses and memory limits (0: none) of the connected workers the
    data may go to (all, or those named by name, host or address in
    ``workers``).
    """
    found = engine.workers()
    if workers:
        wanted = set(workers)
        found = [w for w in found if {w.address, w.name, w.host} & wanted]
    return [(w.address, w.memory) for w in found]


def _holder(turn: Any, count: int, size: int) -> str:
    """The next worker in ``turn`` whose memory limit can hold ``size``
    bytes.

    Raises
    ------
    ValueError
        If none of the ``count`` workers can: the value would only make
        each of them restart.

    """
    largest = 0
    for _ in range(count):
        address, limit = next(turn)
        if limit == 0 or size < limit:
            return address
        largest = max(largest, limit)
    raise ValueError(
        f"Cannot scatter a value of {format_bytes(size)}: it is larger than the memory "
        f"limit of every worker it may go to (the largest is {format_bytes(largest)}). "
        "Split it into smaller pieces, or start workers with a larger memory_limit."
    )


def scatter(
    session: Any,
    items: list[tuple[str | None, Any]],
    workers: list[str],
    options: Options,
    hash: bool,
    timeout: float | None,
    direct: bool | None = None,
) -> list[str]:
    """Send ``items`` ((key or None, value) pairs) into the cluster; returns
    their keys, each holding one new reference for a future.

    ``direct`` sends every value straight to a worker (True) or every value
    through the scheduler (False); by default values above
    ``DIRECT_ABOVE`` bytes go straight to a worker.

    Raises
    ------
    TypeError
        If a value cannot be pickled.
    ValueError
        If a value is larger than the memory limit of every worker it may go
        to.
    ConnectionError
        If a worker could not be reached and the value could not go through
        the scheduler either.

    """
    engine = session
    above = {None: DIRECT_ABOVE, True: -1, False: float("inf")}[direct]
    targets = _targets(engine, workers)
    if direct and not targets:
        # As Dask: a direct scatter waits for a worker to send to.
        if not engine.wait_for_workers(1, _NO_TIMEOUT if timeout is None else timeout):
            raise TimeoutError(f"no worker to scatter to joined within {timeout} s")
        targets = _targets(engine, workers)
    turn = None
    if targets:
        start = random.randrange(len(targets))
        turn = itertools.cycle(targets[start:] + targets[:start])
    names: list[str] = []
    frames_of: dict[str, list[Any]] = {}
    puts: dict[str, list[tuple[str, list[Any]]]] = {}
    direct: dict[str, str] = {}
    for k, v in items:
        try:
            frames = serialize.dumps(v)
        except Exception as e:
            raise TypeError(
                f"Could not serialize scattered data of type {type(v).__name__}: {e}"
            ) from e
        if k is None:
            k = keys.task_key(type(v).__name__, 0, frames, hash)
        names.append(k)
        frames_of[k] = frames
        size = serialize.nbytes(frames)
        fresh = k not in direct and engine.status(k) is None
        if turn is not None and fresh and size > above:
            address = _holder(turn, len(targets), size)
            direct[k] = address
            puts.setdefault(address, []).append((k, frames))
    if puts:
        sent = list(puts.items())
        wait = _NO_TIMEOUT if timeout is None else timeout
        for (_, batch), error in zip(sent, engine.put_on_workers(sent, wait)):
            if error is not None:
                # That worker is gone or unreachable: through the scheduler.
                for k, _ in batch:
                    direct.pop(k, None)
    specs = []
    table = OptionsTable()
    for k in names:
        address = direct.get(k)
        if address is None:
            specs.append(task_spec(k, LITERAL_FUNC, frames_of[k], options=table.index(options)))
        else:
            # The worker holds the value: the key goes there (or, if that
            # worker is gone by then, errs as lost).
            held = Options(workers=(address,), loose=True)
            specs.append(task_spec(k, LITERAL_FUNC, [], options=table.index(held)))
    session.submit([], table, specs)
    return names
