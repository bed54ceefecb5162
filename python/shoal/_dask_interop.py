"""Running dask graphs and collections on shoal, and shoal objects in dask.

* ``client.get(dsk, keys)`` — what ``dask.compute(..., scheduler=client)``
  calls — accepts a dict graph (old-style tuples or task-spec nodes) or a
  graph expression, converts it the way ``dask/local.py`` does, and runs
  every node as a shoal task. Keys of any form become strings.
* ``client.compute(collection)`` and ``shoal.compute(collection)`` build
  the same expression ``dask.compute`` would (optimized, with its finalize
  step) and run it the same way.
* A shoal ``Delayed`` implements dask's collection protocol, and a shoal
  ``Future`` dask's third-party future protocol, so dask functions such as
  ``dd.from_delayed`` accept them.

dask stays optional: nothing here imports it until a dask object shows up.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import pickle
import sys
import weakref
from collections.abc import Mapping
from typing import Any

from . import _serialize
from ._delayed import Delayed, value_node


def is_dask_collection(x: Any) -> bool:
    """Whether ``x`` is a dask collection (shoal's own Delayed excluded)."""
    if isinstance(x, (type, Delayed)):
        return False
    return callable(getattr(type(x), "__dask_graph__", None))


def stringify(key: Any) -> str:
    """A dask key as a shoal key: strings stay, tuples become their repr."""
    return key if isinstance(key, str) else repr(key)


class _Ref:
    """Pickles as a reference to the value of ``key`` on the worker."""

    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = key

    def __reduce__(self) -> Any:
        return (_serialize.resolve_dependency, (self.key,))


def _run_node(node: Any, values: dict) -> Any:
    """On a worker: run one dask task-spec node with its inputs."""
    return node(values)


def graph_to_delayed(dsk: Any, outputs: list[Any]) -> dict[Any, Delayed]:
    """Shoal nodes for the part of a dask graph the ``outputs`` need.

    Dependencies that are not in the graph must be keys the cluster already
    holds (futures passed into dask).
    """
    from dask._task_spec import DataNode, convert_legacy_graph

    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    dsk = convert_legacy_graph(dsk)
    run_node = _serialize.dumps_function(_run_node)
    nodes: dict[Any, Delayed] = {}
    from ._graph import post_order

    needed = post_order(outputs, lambda k: k, lambda k: dsk[k].dependencies if k in dsk else None)
    for key in needed:
        node = dsk[key]
        name = stringify(key)
        if isinstance(node, DataNode):
            # Data may hold futures (dask wraps them this way): value_node
            # makes those dependencies.
            nodes[key] = value_node(node.value, name)
            continue
        refs = {d: _Ref(stringify(d)) for d in node.dependencies}
        frames, found = _serialize.dumps_args((node, refs), {}, f"dask task {name}")
        deps = [nodes[d] if d in nodes else _External(stringify(d)) for d in node.dependencies]
        deps.extend(found)
        nodes[key] = Delayed(name, run_node, frames, tuple(deps))
    missing = [k for k in outputs if k not in nodes]
    if missing:
        raise KeyError(f"keys not in the graph: {missing[:5]}")
    return nodes


class _External:
    """A dependency on a key the cluster already holds."""

    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = key


def _flatten(keys: Any) -> list[Any]:
    out: list[Any] = []
    stack = [keys]
    while stack:
        k = stack.pop()
        if isinstance(k, list):
            stack.extend(reversed(k))
        else:
            out.append(k)
    return out


def _repack(keys: Any, values: dict[Any, Any]) -> Any:
    if isinstance(keys, list):
        return [_repack(k, values) for k in keys]
    return values[keys]


def run_dask_graph(client: Any, dsk: Any, keys: Any) -> Any:
    """Run a dask graph (or graph expression) on ``client``; return the
    values of ``keys``, nested like ``keys``.
    """
    from ._graph import submit_graph

    flat = _flatten(keys)
    nodes = graph_to_delayed(dsk, flat)
    unique = list(dict.fromkeys(flat))
    futures = submit_graph(client, [nodes[k] for k in unique])
    results = client.gather(futures)
    return _repack(keys, dict(zip(unique, results)))


def wrap_collection(collection: Any) -> Delayed:
    """A shoal node computing a dask collection's final value (the same
    optimized, finalized expression ``dask.compute`` would run).
    """
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    expr = FinalizeCompute(collections_to_expr([collection], True)).optimize()
    keys = _flatten(expr.__dask_keys__())
    if len(keys) != 1:
        raise ValueError(f"expected one output key from the finalized graph, got {len(keys)}")
    return graph_to_delayed(expr, keys)[keys[0]]


# ----- shoal objects seen by dask ------------------------------------------


def _run_shoal_call(function: bytes, frames: list[bytes], values: dict) -> Any:
    """Run a shoal Delayed node under a dask scheduler."""
    fn = pickle.loads(function)
    _serialize.set_dependency_values(values)
    try:
        args, kwargs = _serialize.loads(frames)
    finally:
        _serialize.set_dependency_values(None)
    return fn(*args, **kwargs)


def _result_of(x: Any) -> Any:
    from ._future import Future

    return x.result() if isinstance(x, Future) else x


def delayed_graph(roots: list[Delayed]) -> dict[str, Any]:
    """The graph behind shoal Delayed objects as dask task-spec nodes."""
    from dask._task_spec import DataNode, Dict, Task, TaskRef

    graph: dict[str, Any] = {}
    stack = list(roots)
    while stack:
        d = stack.pop()
        if d._key in graph:
            continue
        if d._future is not None:
            graph[d._key] = Task(d._key, _result_of, d._future)
        elif d._func is None:
            graph[d._key] = DataNode(d._key, _serialize.loads(d._spec_frames()))
        else:
            refs = Dict({dep.key: TaskRef(dep.key) for dep in d._deps})
            graph[d._key] = Task(d._key, _run_shoal_call, d._func[2], d._frames, refs)
        stack.extend(x for x in d._deps if isinstance(x, Delayed))
    return graph


# ----- the default scheduler for dask -----------------------------------------

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
        from .client import _current_default

        dask.config.set(scheduler=_current_default())


def _configure(client: Any) -> None:
    import dask

    if client.status == "running":
        dask.config.set(scheduler=client)


class _DaskImportHook(importlib.abc.MetaPathFinder):
    """Sets the pending default client as dask's scheduler once dask loads."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "dask":
            return None
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
