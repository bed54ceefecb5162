"""A default shoal client is dask's default scheduler too: set now if dask is
loaded, or the moment it is imported.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

from ..core import context

_pending: list[weakref.ref[Any]] = []


def set_default_scheduler(client: Any) -> None:
    """Make ``client`` dask's scheduler (now, or when dask is imported)."""
    if "dask" in sys.modules and hasattr(sys.modules["dask"], "config"):
        _configure(client)
    else:
        _pending[:] = [weakref.ref(client)]
        _install_import_hook()


def unset_default_scheduler(client: Any) -> None:
    """When ``client`` closes: if dask uses it, hand dask the current default
    shoal client instead, or dask's own default if there is none.
    """
    _pending[:] = [r for r in _pending if r() is not None and r() is not client]
    dask = sys.modules.get("dask")
    if dask is None or not hasattr(dask, "config"):
        return
    if dask.config.get("scheduler", None) is client:
        dask.config.set(scheduler=context.current_default())


def _configure(client: Any) -> None:
    import dask

    if client.status == "running":
        dask.config.set(scheduler=client)


class _DaskImportHook:
    """Sets the pending default client as dask's scheduler once dask loads.

    A meta path finder, but not an ``importlib.abc.MetaPathFinder`` subclass:
    importing ``importlib.abc`` costs 20 ms at start-up.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        """Find nothing but dask; wrap its loader to configure it."""
        if name != "dask":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("dask")
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original = loader.exec_module  # type: ignore[attr-defined]

        def exec_module(module: Any) -> None:
            original(module)
            for ref in _pending:
                c = ref()
                if c is not None:
                    _configure(c)
            _pending.clear()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_hook = _DaskImportHook()


def _install_import_hook() -> None:
    if _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)
