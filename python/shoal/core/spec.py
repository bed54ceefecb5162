"""Building task specs: the one place a :class:`shoal._engine.TaskSpec` is made."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

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
    where: Placement | None = None,
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
    where
        Where it may run (see :func:`placement`; None: anywhere).
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
        where.workers if where else [],
        retry_delay,
        retry_max_delay,
        limits or [],
        where.resources if where else [],
        where.loose if where else False,
    )


def function_def(func_hash: int, name: str, data: bytes) -> Any:
    """A pickled function for the scheduler (see :func:`.serialize.dumps_function`)."""
    return _engine.FunctionDef(func_hash, name, data)


class Placement(NamedTuple):
    """Where a task may run: worker restrictions, the resources it needs
    there, and whether the restrictions are only a preference.
    """

    workers: list[str]
    resources: list[tuple[str, float]]
    loose: bool


def placement(
    workers: Any = None, resources: Any = None, allow_other_workers: bool = False
) -> Placement | None:
    """Dask's ``workers=``, ``resources=`` and ``allow_other_workers=``
    checked, as one :class:`Placement` (None when they are all unset).

    Raises
    ------
    TypeError
        If ``resources`` is not a mapping of names to numbers.
    ValueError
        If a resource amount is negative or not finite, or
        ``allow_other_workers`` is set without ``workers``.

    """
    if workers is None and resources is None and not allow_other_workers:
        return None
    if isinstance(workers, str):
        workers = [workers]
    names = [str(w) for w in workers or ()]
    if allow_other_workers and not names:
        raise ValueError("Only use allow_other_workers= if using workers=")
    return Placement(names, resource_amounts(resources), bool(allow_other_workers))


def resource_amounts(resources: Any) -> list[tuple[str, float]]:
    """``{"GPU": 1}`` as ``[("GPU", 1.0)]``, checked.

    Raises
    ------
    TypeError
        If it is not a mapping of names to numbers.
    ValueError
        If an amount is negative or not finite.

    """
    if resources is None:
        return []
    if not isinstance(resources, Mapping):
        raise TypeError(f"resources must be a dict like {{'GPU': 1}}, not {resources!r}")
    out = []
    for name, amount in resources.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"resource names must be non-empty strings, not {name!r}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"resource {name!r} must be a number, not {amount!r}")
        if not amount >= 0 or amount == float("inf"):
            raise ValueError(f"resource {name!r} must be a finite number >= 0, not {amount!r}")
        out.append((name, float(amount)))
    return out


def parse_resources(text: str) -> list[tuple[str, float]]:
    """``"GPU=2,MEM=10e9"`` (commas or spaces between pairs) as pairs.

    Raises
    ------
    ValueError
        If a pair is not ``NAME=NUMBER``.

    """
    out: dict[str, float] = {}
    for pair in text.replace(",", " ").split():
        name, sep, amount = pair.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = float("nan")
        if not sep or not name or not value >= 0 or value == float("inf"):
            raise ValueError(f"resources must look like 'GPU=2,MEM=10e9', not {text!r}")
        out[name] = value
    return list(out.items())


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
