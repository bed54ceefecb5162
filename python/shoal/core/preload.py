"""Preloads: user code a client (or worker) runs as it starts and stops.

As in Dask, a preload is a module name, the path of a ``.py`` file, or
Python source text; it may define ``dask_setup(target)``, called once the
client is connected, and ``dask_teardown(target)``, called as it closes
(either may be ``async def``). ``dask_setup`` may be a ``click``
command: it is then called with the preload's arguments parsed by it
(Dask's ``preload-argv``). A client's come from Dask's
``distributed.client.preload`` and ``preload-argv`` configuration.
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


def _argvs(argv: Sequence[Any] | None, count: int) -> list[list[str]]:
    """Each preload's arguments, from Dask's ``preload-argv``: one list per
    preload, or one flat list for them all.
    """
    if not argv:
        return [[] for _ in range(count)]
    if all(isinstance(a, str) for a in argv):
        return [[str(a) for a in argv] for _ in range(count)]
    if len(argv) != count or not all(isinstance(a, (list, tuple)) for a in argv):
        raise ValueError(
            f"preload-argv must be a list of strings or one list per preload ({count}), "
            f"not {argv!r}"
        )
    return [[str(x) for x in a] for a in argv]


def _is_command(fn: Any) -> bool:
    """Whether ``fn`` is a ``click`` command (without importing click)."""
    return callable(getattr(fn, "make_context", None)) and callable(getattr(fn, "callback", None))


class Preloads:
    """The preloads of one client (or worker), loaded when it is made.

    Parameters
    ----------
    specs
        Module names, ``.py`` paths or source texts.
    argv
        Dask's ``preload-argv``: arguments for ``click`` commands named
        ``dask_setup``, one list per preload or one for all.

    Raises
    ------
    ValueError
        For a preload given arguments whose ``dask_setup`` takes none.

    """

    def __init__(self, specs: Sequence[str] | str | None, argv: Sequence[Any] | None = None):
        if isinstance(specs, str):
            specs = [specs]
        self.modules = [load(s) for s in specs or []]
        self.argvs = _argvs(argv, len(self.modules))
        for module, args in zip(self.modules, self.argvs):
            setup = getattr(module, "dask_setup", None)
            if args and not _is_command(setup):
                raise ValueError(
                    f"preload {module.__name__} was given arguments {args} but its dask_setup "
                    "is not a click command that takes them"
                )

    def calls(self, name: str, target: Any) -> list[Any]:
        """The results of calling ``name`` (``dask_setup``/``dask_teardown``)
        of every preload that has it: awaitables for ``async def`` ones.
        """
        out = []
        for module, args in zip(self.modules, self.argvs):
            fn = getattr(module, name, None)
            if name == "dask_setup" and _is_command(fn):
                context = fn.make_context("dask_setup", list(args), allow_extra_args=False)
                out.append(fn.callback(target, *context.args, **context.params))
            elif callable(fn):
                out.append(fn(target))
        return [r for r in out if inspect.isawaitable(r)]
