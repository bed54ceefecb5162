"""Which results a worker keeps as the objects they are.

As in Dask, a result that is only read by tasks on the worker that made it
(most of a dask collection's intermediates) is never serialized: the worker
keeps the object, its tasks read it as it is, and it is pickled only when it
must leave the process (a peer or a client asks for it, or it is spilled).

Pickling is then no longer where a result that cannot be pickled fails: it
would fail far from its task, when another worker needs it. So only values
whose pickling cannot fail are kept: numpy arrays and pandas objects with
no Python objects inside (no ``object`` dtype, no ``attrs``), and dicts,
lists and tuples of them (a shuffle's split partition, which may be a
plain subclass of dict). Everything else,
and anything small enough to travel inline with its report to the
scheduler, is pickled as soon as the task returns, as before.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import _engine

#: Results estimated at no more than this travel pickled, inline with the
#: report of their task (the scheduler keeps them for quick gathers).
HOLD_ABOVE = _engine.INLINE_LIMIT


def held_size(value: Any) -> int | None:
    """The bytes ``value`` takes in memory if the worker should keep it as
    it is; None if it should be pickled now (also if looking raised: a
    pickling failure, if any, is then reported with its task).
    """
    try:
        return _held_size(value)
    except Exception:
        return None


def _held_size(value: Any) -> int | None:
    t = type(value)
    if t is dict or (isinstance(value, dict) and _plain_subclass(value)):
        if not all(type(k) is int or type(k) is str for k in value):
            return None
        n = _sum(value.values())
    elif t is list or t is tuple:
        n = _sum(value)
    else:
        n = _leaf_size(value)
    return n if n is not None and n > HOLD_ABOVE else None


def _plain_subclass(value: Any) -> bool:
    """A dict subclass that pickles as its items do: importable by name
    (dask's ``ShuffleGroupResult``, a shuffle's split partition), with no
    attributes of its own.
    """
    t = type(value)
    return t.__module__ != "__main__" and "<" not in t.__qualname__ and not vars(value)


def _sum(values: Any) -> int | None:
    total = 0
    for v in values:
        n = _leaf_size(v)
        if n is None:
            return None
        total += n
    return total


def _leaf_size(value: Any) -> int | None:
    """The size of a numpy array or pandas object holding no Python objects
    (None for anything else).
    """
    t = type(value)
    np = sys.modules.get("numpy")
    if np is not None and t is np.ndarray:
        return None if value.dtype.hasobject else int(value.nbytes)
    pd = sys.modules.get("pandas")
    if pd is None or (t is not pd.DataFrame and t is not pd.Series):
        return None
    if value.attrs or _objects(value.index.dtype, np):
        return None
    if t is pd.Series:
        return None if _objects(value.dtype, np) else int(value.memory_usage(index=True))
    if any(_objects(dt, np) for dt in value.dtypes):
        return None
    return int(value.memory_usage(index=True).sum())


def _objects(dtype: Any, np: Any) -> bool:
    """Whether ``dtype`` holds Python objects (numpy's ``object``, also
    inside a structured dtype); pandas' own dtypes (Arrow strings,
    categoricals, nullable numbers) do not.
    """
    return isinstance(dtype, np.dtype) and dtype.hasobject
