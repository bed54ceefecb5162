"""Building task specs: the one place a :class:`shoal._engine.TaskSpec` is made."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import _engine

#: ``func`` of a task whose value is its own pickled payload (scattered data,
#: literals in a graph).
LITERAL_FUNC: int = _engine.LITERAL_FUNC


def task_spec(
    key: str,
    func: int,
    frames: list[bytes],
    deps: Iterable[str] = (),
    *,
    wanted: bool = True,
    priority: int = 0,
    retries: int = 0,
    workers: list[str] | None = None,
    retry_delay: float = 0.0,
    retry_max_delay: float = 0.0,
    limits: list[str] | None = None,
) -> Any:
    """A task for the scheduler.

    Parameters
    ----------
    key
        The task's key.
    func
        The hash of its function, or ``LITERAL_FUNC`` for data.
    frames
        The pickled ``(args, kwargs)`` (or the pickled value, for data).
    deps
        Keys of the tasks whose results it needs.
    wanted
        Whether the client will hold a future for the key.
    priority, retries
        As in Dask: higher priority runs first; a failed task runs again
        ``retries`` times.
    workers
        Worker names or addresses it may run on (None: any).
    retry_delay, retry_max_delay
        Seconds before the first retry (0: at once), doubling with jitter
        up to ``retry_max_delay`` (0: no cap).
    limits
        Names of cluster-wide limits the task counts against.

    Returns
    -------
    shoal._engine.TaskSpec

    """
    return _engine.TaskSpec(
        key,
        func,
        frames,
        deps if type(deps) is list else list(deps),
        wanted,
        priority if type(priority) is int else int(priority),
        retries if type(retries) is int else int(retries),
        workers or [],
        retry_delay,
        retry_max_delay,
        limits or [],
    )


def function_def(func_hash: int, name: str, data: bytes) -> Any:
    """A pickled function for the scheduler (see :func:`.serialize.dumps_function`)."""
    return _engine.FunctionDef(func_hash, name, data)


def worker_restrictions(workers: Any) -> list[str]:
    """Dask's ``workers=`` (an address, a name, or a list of them) as a list."""
    if workers is None:
        return []
    if isinstance(workers, str):
        workers = [workers]
    return [str(w) for w in workers]


def limit_names(limits: Any) -> list[str]:
    """``limits=`` (a limit's name, or a list of names) as a list.

    Raises
    ------
    TypeError
        If it is not a name or names.

    """
    if limits is None:
        return []
    if isinstance(limits, str):
        return [limits]
    names = list(limits)
    if not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"limits must be a limit's name or a list of names, not {limits!r}")
    return names
