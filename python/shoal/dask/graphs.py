"""dask graphs and collections run on shoal.

* ``client.get(dsk, keys)`` — what ``dask.compute(..., scheduler=client)``
  calls — accepts a dict graph (old-style tuples or task-spec nodes) or a
  graph expression, converts it the way ``dask/local.py`` does, and runs
  every node as a shoal task. Keys of any form become strings.
* ``client.compute(collection)`` and ``shoal.compute(collection)`` build
  the same expression ``dask.compute`` would (optimized, with its finalize
  step) and run it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core import serialize
from ..core.graph import Node, post_order, submit_graph, value_node
from ..futures import Future


def is_dask_collection(x: Any) -> bool:
    """Whether ``x`` is a dask collection (shoal's own nodes excluded)."""
    if isinstance(x, (type, Node)):
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
        return (serialize.resolve_dependency, (self.key,))


class _External:
    """A dependency on a key the cluster already holds."""

    __slots__ = ("key",)

    def __init__(self, key: str):
        self.key = key


def _run_node(node: Any, values: dict) -> Any:
    """On a worker: run one dask task-spec node with its inputs."""
    return node(values)


def graph_to_nodes(dsk: Any, outputs: list[Any]) -> dict[Any, Node]:
    """Shoal nodes for the part of a dask graph the ``outputs`` need.

    Dependencies that are not in the graph must be keys the cluster already
    holds (futures passed into dask).
    """
    from dask._task_spec import DataNode, convert_legacy_graph

    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    dsk = convert_legacy_graph(dsk)
    run_node = serialize.dumps_function(_run_node)
    nodes: dict[Any, Node] = {}
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
        frames, found = serialize.dumps_args((node, refs), {}, f"dask task {name}")
        deps = [nodes[d] if d in nodes else _External(stringify(d)) for d in node.dependencies]
        deps.extend(found)
        nodes[key] = Node(name, run_node, frames, tuple(deps))
    missing = [k for k in outputs if k not in nodes]
    if missing:
        raise KeyError(f"keys not in the graph: {missing[:5]}")
    return nodes


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


def run_dask_graph(client: Any, dsk: Any, keys: Any, **options: Any) -> Any:
    """Run a dask graph (or graph expression) on ``client``; return the
    values of ``keys``, nested like ``keys``. ``options`` (``priority``,
    ``retries``, ``where``) apply to every task.
    """
    flat = _flatten(keys)
    nodes = graph_to_nodes(dsk, flat)
    unique = list(dict.fromkeys(flat))
    submitted = submit_graph(client._session, [nodes[k] for k in unique], **options)
    futures = [Future._adopt(k, client) for k in submitted]
    results = client.gather(futures)
    return _repack(keys, dict(zip(unique, results)))


def collection_node(collection: Any, optimize_graph: bool = True) -> Node:
    """A shoal node computing a dask collection's final value (the same
    finalized expression ``dask.compute`` would run, its graph optimized
    unless ``optimize_graph`` is False).
    """
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    expr = FinalizeCompute(collections_to_expr([collection], optimize_graph)).optimize()
    keys = _flatten(expr.__dask_keys__())
    if len(keys) != 1:
        raise ValueError(f"expected one output key from the finalized graph, got {len(keys)}")
    return graph_to_nodes(expr, keys)[keys[0]]
