"""Naming task keys: the one place a key is made.

Pure calls are named by a hash of the function and the pickled arguments,
so equal calls share a key and run once; impure calls get a token no other
call in any process gets.
"""

from __future__ import annotations

import ast
import functools
import itertools
import os
from collections.abc import Sequence
from typing import Any

from .. import _engine

# Unique tokens without a system call each: a random per-process prefix and a
# counter (itertools.count is atomic under the GIL).
_UNIQUE_PREFIX = os.urandom(8).hex()
_unique_counter = itertools.count()


def unique_token() -> str:
    """A token no other call, in any process, returns."""
    return f"{_UNIQUE_PREFIX}-{next(_unique_counter):x}"


def task_key(
    name: str, func_hash: int, frames: list[bytes], pure: bool, deps: Sequence[str] = ()
) -> str:
    """The key of a task calling a function (by hash) on pickled arguments.

    Parameters
    ----------
    name
        The key's prefix, usually the function's name.
    func_hash
        The function's hash (0 for data).
    frames
        The pickled arguments (or value).
    pure
        Name by content (equal calls share the key) or uniquely.
    deps
        The keys of the task's inputs, in order: the arguments name them by
        position only, so they are part of the content.

    """
    token = _engine.token(func_hash, frames, deps) if pure else unique_token()
    return f"{name}-{token}"


def leaf_key(name: str, func_hash: int) -> str:
    """The key of a function wrapped by ``delayed`` (the function itself)."""
    return f"{name}-{func_hash:016x}"


def check_key(key: object, what: str = "key") -> str:
    """The text the cluster knows a Dask key by: a string as it is; bytes,
    a number or a tuple of them as its ``repr`` (so ``key=("x", 0)`` and a
    dask graph's ``("x", 0)`` name the same task). Raise ``TypeError``
    naming ``what`` for anything else.
    """
    if isinstance(key, str):
        return key
    if isinstance(key, (tuple, bytes, int, float)) and not isinstance(key, bool):
        check_dask_key(key, what)
        return repr(key)
    raise TypeError(
        f"{what} must be a string, or bytes, a number or a tuple of them, not {type(key).__name__}"
    )


def check_dask_key(key: object, what: str = "key") -> None:
    """Raise ``TypeError`` unless ``key`` is a Dask key: a string, bytes, a
    number, or a tuple of them (nested).
    """
    if isinstance(key, tuple):
        for part in key:
            check_dask_key(part, what)
    elif isinstance(key, bool) or not isinstance(key, (str, bytes, int, float)):
        raise TypeError(
            f"{what} parts must be strings, bytes, numbers or tuples of them, "
            f"not {type(key).__name__} ({key!r})"
        )


#: Starts the text of a name (of a dataset, a lock) that is not a string.
_NAME_MARK = "\x1fname:"


def name_text(name: Any) -> str:
    """The string the scheduler knows a dataset or coordination object
    named ``name`` by: a string as it is, anything else (a number, bytes, a
    tuple, as Dask allows) as its ``repr`` behind a marker no string name
    starts with.
    """
    if isinstance(name, str) and not name.startswith(_NAME_MARK):
        return name
    return _NAME_MARK + repr(name)


def name_from_text(text: str) -> Any:
    """The name :func:`name_text` made ``text`` from (read back with
    :func:`ast.literal_eval`).
    """
    if text.startswith(_NAME_MARK):
        return ast.literal_eval(text[len(_NAME_MARK) :])
    return text


@functools.lru_cache(maxsize=1 << 16)
def dask_key(text: str) -> Any:
    """The Dask key the cluster knows by ``text``: the tuple whose ``repr``
    it is (a dask collection's ``("x", 0)``, ``submit(key=("x", 1))``), else
    ``text`` itself. The inverse of :func:`check_key` for tuples; bytes and
    number keys stay text.
    """
    if not (text.startswith("(") and text.endswith(")")):
        return text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text
    if not isinstance(value, tuple) or repr(value) != text:
        return text
    try:
        check_dask_key(value)
    except TypeError:
        return text
    return value
