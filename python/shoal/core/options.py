"""Task options: parsed and checked here, for every way tasks are made.

``submit``, ``map``, ``compute``, ``persist``, ``get``, ``scatter`` and
``dask.annotate`` annotations all pass the user's option arguments to
:func:`parse`, which returns one :class:`Options` (arguments over the
options of any ``dask.annotate`` block in force, as in Dask). A submission sends each
distinct ``Options`` once (an :class:`OptionsTable`); its tasks refer to
them by index. Adding an option means a field of :class:`Options` and a
line in :func:`parse` here, the field of the same name on the wire's
``TaskOptions`` (``shoal-proto``), and the scheduler code that honours it:
nothing between them names the options one by one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import sys
from collections.abc import Mapping
from typing import Any

from .. import _engine
from .times import parse_timedelta

#: The most cluster-wide limits one task may count against.
MAX_LIMITS_PER_TASK: int = _engine.MAX_LIMITS_PER_TASK

_I32 = 2**31


@dataclasses.dataclass(frozen=True)
class Options:
    """The checked options of a task (hashable: equal options are sent once).

    ``workers`` and ``loose`` are Dask's ``workers=`` and
    ``allow_other_workers=``; the delays are seconds (0: retry at once; no
    cap).
    """

    priority: int = 0
    retries: int = 0
    retry_delay: float = 0.0
    retry_max_delay: float = 0.0
    workers: tuple[str, ...] = ()
    loose: bool = False
    resources: tuple[tuple[str, float], ...] = ()
    limits: tuple[str, ...] = ()

    @functools.cached_property
    def engine(self) -> _engine.TaskOptions:
        """These options as the engine sends them (made once): the wire's
        ``TaskOptions``, whose fields have these names.
        """
        return _engine.TaskOptions(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        )


DEFAULT = Options()

#: The option arguments :func:`parse` takes (also the dask annotations that
#: are task options).
NAMES = (
    "priority",
    "retries",
    "retry_delay",
    "retry_max_delay",
    "workers",
    "resources",
    "allow_other_workers",
    "limits",
)


def parse(base: Options = DEFAULT, **given: Any) -> Options:
    """Dask's task option arguments, checked, over ``base``.

    Arguments left out or None keep ``base``'s value; they are named as in
    ``Client.submit``: ``priority``, ``retries``, ``retry_delay``,
    ``retry_max_delay`` (seconds or ``"200 ms"``), ``workers``,
    ``resources``, ``allow_other_workers`` and ``limits``.

    Returns
    -------
    Options

    Raises
    ------
    TypeError, ValueError
        For a value that cannot be that option, saying which and why.

    Examples
    --------
    >>> parse(retries=2, workers="tcp://10.0.0.1:8786").retries
    2

    """
    if base is DEFAULT:
        base = annotated()
    # Submit and map are called in tight loops, mostly with no options at
    # all, or with the same few: those cost next to nothing.
    for v in given.values():
        if not (v is None or v is False or (v.__class__ is int and v == 0)):
            break
    else:
        return base
    try:
        memo = (base, *((k, type(v), v) for k, v in given.items()))
        found = _parsed.get(memo)
    except TypeError:  # an unhashable value (a list of workers): no memo
        memo = found = None
    if found is not None:
        return found
    opts = _parse(base, given)
    if memo is not None:
        if len(_parsed) >= 256:
            _parsed.clear()
        _parsed[memo] = opts
    return opts


_parsed: dict[tuple[Any, ...], Options] = {}

#: The executors a task may be annotated with (``dask.annotate(executor=)``):
#: shoal runs every task on its worker's executor threads.
EXECUTORS = ("default",)


def annotated() -> Options:
    """The task options of the ``dask.annotate`` blocks in force (Dask's
    ``get_annotations()``), over the defaults: every submission path
    starts from these, as Dask merges them under a call's own arguments.

    Raises
    ------
    ValueError
        For an ``executor`` annotation other than ``"default"``.

    """
    dask = sys.modules.get("dask")  # no dask imported: none in force
    get = getattr(dask, "get_annotations", None)
    active = get() if get is not None else None
    if not active:
        return DEFAULT
    check_executor(active.get("executor"))
    found = {n: v for n, v in active.items() if n in NAMES and not callable(v)}
    if not found:
        return DEFAULT
    try:
        memo = tuple((k, type(v), v) for k, v in sorted(found.items()))
        cached = _annotated.get(memo)
    except TypeError:
        memo = cached = None
    if cached is not None:
        return cached
    try:
        opts = _parse(DEFAULT, found)
    except (TypeError, ValueError) as e:
        raise type(e)(f"the dask annotations in force: {e}") from None
    if memo is not None:
        if len(_annotated) >= 64:
            _annotated.clear()
        _annotated[memo] = opts
    return opts


_annotated: dict[tuple[Any, ...], Options] = {}


def check_executor(executor: Any) -> None:
    """Refuse an ``executor`` annotation shoal has no executor for."""
    if executor is not None and executor not in EXECUTORS:
        raise ValueError(f"Invalid executor {executor!r}; expected one of: {list(EXECUTORS)}")


def parse_arguments(arguments: Mapping[str, Any]) -> Options:
    """The task options among a public call's arguments (its ``locals()``
    on entry): every parameter named as an option goes to :func:`parse`,
    so a call cannot take an option and forget to pass it on.

    Examples
    --------
    >>> def persist(collections, workers=None, retries=None, limits=None):
    ...     return parse_arguments(locals())
    >>> persist([], retries=3).retries
    3

    """
    return parse(**{n: arguments[n] for n in NAMES if n in arguments})


def _parse(base: Options, given: dict[str, Any]) -> Options:
    unknown = set(given) - set(NAMES)
    if unknown:
        raise TypeError(f"unknown task options {sorted(unknown)}")
    out: dict[str, Any] = {}
    if given.get("priority") is not None:
        out["priority"] = _priority(given["priority"])
    if given.get("retries") is not None:
        out["retries"] = _retries(given["retries"])
    for name in ("retry_delay", "retry_max_delay"):
        if given.get(name) is not None:
            out[name] = _seconds(name, given[name])
    if given.get("workers") is not None:
        out["workers"] = _workers(given["workers"])
    if given.get("allow_other_workers") is not None:
        out["loose"] = bool(given["allow_other_workers"])
    if given.get("resources") is not None:
        # An amount of 0 asks for nothing.
        out["resources"] = tuple((n, a) for n, a in resource_amounts(given["resources"]) if a > 0)
    if given.get("limits") is not None:
        out["limits"] = tuple(limit_names(given["limits"]))
    opts = dataclasses.replace(base, **out) if out else base
    if opts.loose and not opts.workers:
        raise ValueError("Only use allow_other_workers= if using workers=")
    if opts.retry_max_delay and opts.retry_delay > opts.retry_max_delay:
        raise ValueError("retry_delay must not be above retry_max_delay")
    return opts


class OptionsTable:
    """The options of one submission, each distinct one once; tasks refer
    to them by :meth:`index`.
    """

    def __init__(self) -> None:
        self._index: dict[Options, int] = {}

    def index(self, opts: Options) -> int:
        """The index of ``opts`` in this submission (added if new)."""
        i = self._index.get(opts)
        if i is None:
            i = self._index[opts] = len(self._index)
        return i

    def to_engine(self) -> list[_engine.TaskOptions]:
        """The options, in index order, as the engine sends them."""
        return [o.engine for o in self._index]


def _priority(value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(value)
        or value != int(value)
    ):
        raise TypeError(f"priority must be a whole number, not {value!r}")
    if not -_I32 <= int(value) < _I32:
        raise ValueError(f"priority must be between {-_I32} and {_I32 - 1}, not {value!r}")
    return int(value)


def _retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"retries must be a whole number, not {value!r}")
    if not 0 <= value < 2**32:
        raise ValueError(f"retries must be 0 or more, not {value!r}")
    return int(value)


def _seconds(name: str, value: Any) -> float:
    seconds = parse_timedelta(value)
    if seconds is None or not (seconds >= 0 and math.isfinite(seconds)):
        raise ValueError(f"{name} must be zero or more seconds, not {value!r}")
    return float(seconds)


def _workers(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise TypeError(
            f"workers must be a worker's name or address, or a list of them, not {value!r}"
        ) from None
    return tuple(str(w) for w in names)


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


def limit_names(limits: Any) -> list[str]:
    """``limits=`` (a limit's name, or a list of names) as a list.

    Raises
    ------
    TypeError
        If it is not a name or names.
    ValueError
        If it names more than :data:`MAX_LIMITS_PER_TASK` limits.

    """
    if limits is None:
        return []
    if isinstance(limits, str):
        return [limits]
    names = list(limits)
    if not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"limits must be a limit's name or a list of names, not {limits!r}")
    if len(names) > MAX_LIMITS_PER_TASK:
        raise ValueError(
            f"a task may count against at most {MAX_LIMITS_PER_TASK} limits, not {len(names)}"
        )
    return names
