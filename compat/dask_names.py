"""What a ``from distributed... import name`` becomes in a test run on shoal.

The test files are rewritten so that each import from a ``distributed``
module takes its names from here: the same name from ``shoal`` (or
``shoal.utils_test`` for Dask's test helpers); ``time`` from
``distributed.metrics`` is :func:`time.time`; the platform flags of
``distributed.compatibility`` are read from :data:`sys.platform`. A name
shoal does not have becomes a placeholder class that fails the test using
it, so one missing name never stops the rest of a file from running.
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

FACTS = {
    ("distributed.metrics", "time"): time.time,
    ("distributed.compatibility", "LINUX"): sys.platform.startswith("linux"),
    ("distributed.compatibility", "MACOS"): sys.platform == "darwin",
    ("distributed.compatibility", "WINDOWS"): sys.platform.startswith("win"),
}


class _MissingMeta(type):
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"shoal has no {cls.__qualname__}")

    def __getattr__(cls, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        raise NotImplementedError(f"shoal has no {cls.__qualname__}.{attr}")


def missing(module: str, name: str) -> Any:
    """A stand-in for ``module.name`` that fails whatever uses it (and can be
    subclassed, so a module defining a subclass still imports).
    """
    return _MissingMeta(name, (), {"__qualname__": f"{module}.{name}", "__module__": module})


def _shoal_module(module: str) -> Any:
    if module == "distributed.utils_test":
        return importlib.import_module("shoal.utils_test")
    return importlib.import_module("shoal")


def take(module: str, names: list[str]) -> Any:
    """The values of ``names`` imported from ``module``, as a tuple (or the
    one value).
    """
    values = []
    for name in names:
        if (module, name) in FACTS:
            values.append(FACTS[(module, name)])
            continue
        value = getattr(_shoal_module(module), name, None)
        values.append(missing(module, name) if value is None else value)
    return values[0] if len(values) == 1 else tuple(values)


def module(name: str) -> Any:
    """``import distributed`` (or a submodule): shoal's package."""
    return _shoal_module(name)


def failed(namespace: dict[str, Any], names: list[str], error: Exception) -> None:
    """A top-level statement of a test file failed (a decorator using a
    name shoal lacks, say): bind each name it defines to something that
    fails with that error, a test that fails for test names.
    """
    for name in names:
        if name.startswith("test_"):

            def test() -> None:
                raise error

            test.__name__ = name
            namespace[name] = test
        else:
            namespace[name] = missing("(failed at import)", f"{name}: {error}")
