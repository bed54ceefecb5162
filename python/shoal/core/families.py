"""Dask's serialization families, as limits on what a client sends and loads.

shoal pickles every value. A client made with Dask's ``serializers=`` or
``deserializers=`` that leaves out ``pickle`` (and ``cloudpickle``) sends
and loads only values of the families it names, judged by what their
pickles may import and call:

* ``msgpack``: plain data — None, booleans, numbers, strings, bytes, and
  lists, tuples, dicts and sets of them (their pickles import nothing);
* ``dask``: plain data and numpy, pandas and pyarrow objects (Dask's own
  serializers cover these);
* ``error``: plain data and the built-in exceptions;
* ``pickle``/``cloudpickle``: anything.

Loading checks each name a pickle imports before anything is built, so a
client that does not accept ``pickle`` never runs code a peer chose. A
task's function and arguments are always pickled, as in Dask.
"""

from __future__ import annotations

import builtins
import io
import pickle
from collections.abc import Sequence
from typing import Any

#: The families Dask names that shoal knows.
FAMILIES = ("dask", "pickle", "cloudpickle", "msgpack", "error")

#: Top-level modules whose objects the ``dask`` family carries.
_DASK_MODULES = frozenset({"numpy", "pandas", "pyarrow"})

#: Names outside those modules that numpy and pandas pickles refer to.
_DASK_HELPERS = frozenset(
    {
        ("copyreg", "_reconstructor"),
        ("copyreg", "__newobj__"),
        ("builtins", "object"),
        ("builtins", "slice"),
        ("builtins", "range"),
        ("builtins", "complex"),
        ("builtins", "frozenset"),
        ("builtins", "set"),
        ("builtins", "bytearray"),
    }
)


def parse(names: Any, what: str) -> frozenset[str] | None:
    """The families in ``names`` (None: no limit).

    Raises
    ------
    TypeError, ValueError
        For something other than a list of family names.

    """
    if names is None:
        return None
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"{what} must be a list of family names such as ['msgpack'], not {names!r}")
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}: shoal knows {list(FAMILIES)}")
    return frozenset(names)


def limits(allowed: frozenset[str] | None) -> bool:
    """Whether ``allowed`` leaves anything out (no pickle among them)."""
    return allowed is not None and not ({"pickle", "cloudpickle"} & allowed)


def _module_of(obj: Any) -> tuple[str, str]:
    """Where ``obj`` (a class, a function, or an instance of a class) is
    defined, and its name.
    """
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        return getattr(obj, "__module__", None) or "", getattr(obj, "__qualname__", "")
    cls = type(obj)
    return cls.__module__, cls.__qualname__


def _admits(allowed: frozenset[str], module: str, name: str) -> bool:
    """Whether a value of these families may refer to ``module.name``."""
    top = module.partition(".")[0]
    if "dask" in allowed and (top in _DASK_MODULES or (module, name) in _DASK_HELPERS):
        return True
    if "error" in allowed and module == "builtins":
        found = getattr(builtins, name, None)
        return isinstance(found, type) and issubclass(found, BaseException)
    return False


class _Checker(pickle.Pickler):
    """Pickles to nowhere, refusing any object outside the families."""

    def __init__(self, allowed: frozenset[str], what: str):
        super().__init__(io.BytesIO(), protocol=5, buffer_callback=lambda _: None)
        self.allowed, self.what = allowed, what

    def reducer_override(self, obj: Any) -> Any:
        module, name = _module_of(obj)
        if not _admits(self.allowed, module, name):
            raise TypeError(
                f"{self.what} holds a {module}.{name}, which the serializers "
                f"{sorted(self.allowed)} cannot send (add 'pickle' to send it)"
            )
        return NotImplemented


def check_sendable(value: Any, allowed: frozenset[str] | None, what: str) -> None:
    """Refuse ``value`` if a client limited to ``allowed`` cannot send it.

    Raises
    ------
    TypeError
        Naming the first object outside the families.

    """
    if limits(allowed):
        assert allowed is not None
        _Checker(allowed, what).dump(value)


class _Loader(pickle.Unpickler):
    """Unpickles only what the families admit."""

    def __init__(self, data: Any, buffers: Sequence[Any], allowed: frozenset[str], what: str):
        super().__init__(io.BytesIO(data), buffers=buffers)
        self.allowed, self.what = allowed, what

    def find_class(self, module: str, name: str) -> Any:
        if not _admits(self.allowed, module, name):
            raise TypeError(
                f"{self.what} holds a {module}.{name}, which the deserializers "
                f"{sorted(self.allowed)} do not load (add 'pickle' to load it)"
            )
        return super().find_class(module, name)


def load(frames: Sequence[Any], allowed: frozenset[str], what: str) -> Any:
    """Unpickle ``frames`` admitting only the families in ``allowed``.

    Raises
    ------
    TypeError
        Before building anything a family leaves out.

    """
    return _Loader(frames[0], frames[1:], allowed, what).load()
