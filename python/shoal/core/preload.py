"""Preloads: user code a client (or worker) runs as it starts and stops.

As in Dask, a preload is a module name, the path of a ``.py`` file, or
Python source text; it may define ``dask_setup(target)``, called once the
client is connected, and ``dask_teardown(target)``, called as it closes
(either may be ``async def``). A client's come from Dask's
``distributed.client.preload`` configuration.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import types
import uuid
from collections.abc import Sequence
from typing import Any


def load(spec: str) -> types.ModuleType:
    """The module a preload names: imported, read from a file, or made from
    source text.

    Raises
    ------
    ImportError
        If a name or file cannot be loaded (saying which).

    """
    if not isinstance(spec, str):
        raise TypeError(f"a preload is a module name, a .py path or source text, not {spec!r}")
    if spec.endswith(".py") and "\n" not in spec:
        # As Dask: the file's directory joins sys.path and the file is
        # imported by its name, so later `import name` finds the same module.
        path = os.path.abspath(os.path.expanduser(spec))
        if not os.path.exists(path):
            raise ImportError(f"cannot load the preload file {spec}: it does not exist")
        directory, name = os.path.split(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        return importlib.import_module(name[: -len(".py")])
    if spec.isidentifier() or all(part.isidentifier() for part in spec.split(".")):
        return importlib.import_module(spec)
    module = types.ModuleType(f"shoal_preload_{uuid.uuid4().hex}")
    exec(compile(spec, "<preload>", "exec"), module.__dict__)
    return module


class Preloads:
    """The preloads of one client, loaded when it is made."""

    def __init__(self, specs: Sequence[str] | str | None):
        if isinstance(specs, str):
            specs = [specs]
        self.modules = [load(s) for s in specs or []]

    def calls(self, name: str, target: Any) -> list[Any]:
        """The results of calling ``name`` (``dask_setup``/``dask_teardown``)
        of every preload that has it: awaitables for ``async def`` ones.
        """
        out = []
        for module in self.modules:
            fn = getattr(module, name, None)
            if callable(fn):
                out.append(fn(target))
        return [r for r in out if inspect.isawaitable(r)]
