"""dask graphs and collections run on shoal.

* ``client.get(dsk, keys)`` — what ``dask.compute(..., scheduler=client)``
  calls — accepts a dict graph (old-style tuples or task-spec nodes) or a
  graph expression, converts it the way ``dask/local.py`` does, and runs
  every node as a shoal task. Keys of any form become strings.
* ``client.compute(collection)`` and ``shoal.compute(collection)`` build
  the same expression ``dask.compute`` would (optimized, with its finalize
  step) and run it the same way.
* ``persist`` computes every output key of a collection as a future and
  rebuilds the collection over those futures (``__dask_postpersist__``), so
  its partitions stay on the workers; a later graph that uses it refers to
  the futures' keys and reads the data where it lies.
* ``dask.annotate`` works: ``priority``, ``retries``, ``workers``,
  ``allow_other_workers``, ``resources``, ``limits``, ``retry_delay`` and
  ``retry_max_delay`` become the options of the tasks they annotate, over
  the options of the call (as in Dask, other annotations are kept by dask
  and mean nothing to the scheduler).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..core import keys, options, serialize
from ..core.graph import (
    Node,
    held_node,
    post_order,
    submit_graph,
    value_node,
)
from ..futures import Future
from .config import cluster_shuffle

#: The annotations that are task options.
_OPTIONS = options.NAMES


def stringify(key: Any) -> str:
    """A dask key as a shoal key: strings stay, tuples become their repr.

    Raises
    ------
    TypeError
        For anything that is not a Dask key (a string, bytes, a number, or
        a tuple of them).

    """
    return keys.check_key(key, "a task's key")


class _Ref:
    """In a task's arguments, pickles as the task's input ``target`` (a
    node of the graph, or an :class:`_External` key), which it records as
    a dependency.
    """

    __slots__ = ("target",)

    def __init__(self, target: Any):
        self.target = target

    def __reduce__(self) -> Any:
        return serialize.reduce_dependency(self.target, self.target._key)


class _External:
    """A dependency on a key the cluster already holds (``_key``: its
    text, as a future's and a node's).
    """

    __slots__ = ("_key",)

    def __init__(self, key: str):
        self._key = key


def _run_node(node: Any, values: dict) -> Any:
    """On a worker: run one dask task-spec node with its inputs."""
    return node(values)


def _annotations(dsk: Any) -> tuple[dict[str, Any], dict[str, dict[Any, Any]]]:
    """The annotations in force now (``with dask.annotate(...)`` around the
    call) and those of the graph's own keys, as dask records them.
    """
    import dask

    active = {k: v for k, v in dask.get_annotations().items() if k in _OPTIONS}
    per_key = getattr(dsk, "__dask_annotations__", None)
    by_key = per_key() if callable(per_key) else {}
    for executor in (by_key.get("executor") or {}).values():
        options.check_executor(executor)
    return active, {k: v for k, v in by_key.items() if k in _OPTIONS and v}


def annotation_options(annotations: dict[str, Any], what: str) -> dict[str, Any]:
    """The task options among dask annotations, checked (they become
    :func:`shoal.core.options.parse` arguments when the graph is sent).

    Raises
    ------
    TypeError, ValueError
        For an annotation shoal cannot use as that option, naming it.

    """
    found = {name: value for name, value in annotations.items() if name in options.NAMES}
    try:
        options.parse(**found)
    except (TypeError, ValueError) as e:
        raise type(e)(f"the dask annotations of {what}: {e}") from None
    return found


def _node_options(
    key: Any, active: dict[str, Any], by_key: dict[str, dict[Any, Any]]
) -> dict[str, Any] | None:
    """The options ``dask.annotate`` gives the task of ``key``: the graph's
    own annotations over those in force at the call (a callable annotation
    is called with the key, as in Dask).
    """
    found = {name: value(key) if callable(value) else value for name, value in active.items()}
    for name, values in by_key.items():
        value = values.get(key)
        if value is not None:
            found[name] = value
    return annotation_options(found, f"task {stringify(key)}") if found else None


def _held_future(value: Any, name: str) -> Future | None:
    """The future a data node stands for, when it is one future under its
    own key (a persisted partition).
    """
    if isinstance(value, Future) and value._key == name:
        return value
    return None


def graph_to_nodes(dsk: Any, outputs: list[Any]) -> dict[Any, Node]:
    """Shoal nodes for the part of a dask graph the ``outputs`` need.

    Dependencies that are not in the graph must be keys the cluster already
    holds (futures passed into dask). A key whose value is a future of that
    key (a persisted collection's partition) is that future: later tasks
    read its data where it lies.
    """
    from dask._task_spec import DataNode, convert_legacy_graph

    active, by_key = _annotations(dsk)
    if not isinstance(dsk, Mapping):
        dsk = dsk.__dask_graph__()
    # A key whose value is the future of that key (a persisted partition,
    # a persisted Delayed) is that future; dask's conversion would drop it
    # as an alias of itself.
    persisted = {k: v for k, v in dsk.items() if _held_future(v, stringify(k)) is not None}
    dsk = convert_legacy_graph({k: v for k, v in dsk.items() if k not in persisted})
    run_node = serialize.dumps_function(_run_node)
    nodes: dict[Any, Node] = {}

    def dependencies(k: Any) -> Any:
        if k in persisted:
            return ()
        return dsk[k].dependencies if k in dsk else None

    needed = post_order(outputs, lambda k: k, dependencies)
    for key in needed:
        if key in persisted:
            nodes[key] = held_node(persisted[key])
            continue
        node = dsk[key]
        name = stringify(key)
        if isinstance(node, DataNode):
            held = _held_future(node.value, name)
            if held is not None:
                nodes[key] = held_node(held)
                continue
            # Data may hold futures (dask wraps them this way): value_node
            # makes those dependencies.
            nodes[key] = value_node(node.value, name)
        else:
            refs = {
                d: _Ref(nodes[d] if d in nodes else _External(stringify(d)))
                for d in node.dependencies
            }
            # The inputs, in the order the arguments name them: the
            # dependencies and any future inside the task.
            frames, deps = serialize.dumps_args((node, refs), {}, f"dask task {name}")
            nodes[key] = Node(name, run_node, frames, tuple(deps))
        if active or by_key:
            object.__setattr__(nodes[key], "_options", _node_options(key, active, by_key))
    missing = [k for k in outputs if k not in nodes]
    if missing:
        raise KeyError(f"keys not in the graph: {missing[:5]}")
    _rank(nodes, {k: dsk[k] for k in needed if k in dsk})
    return nodes


def _rank(nodes: dict[Any, Node], dsk: dict[Any, Any]) -> None:
    """Gives every task node its place in ``dask.order``'s order of the
    graph, the order shoal's scheduler then runs them in (as Dask's does):
    the two blocks a step reads made one after the other and freed soon
    after, not a whole side of a matrix made first and held.
    """
    from dask.order import order

    if len(dsk) < 2:
        return
    for key, rank in order(dsk).items():
        node = nodes.get(key)
        if node is not None and node._future is None:
            object.__setattr__(node, "_rank", rank)


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


def run_dask_graph(
    client: Any, dsk: Any, keys: Any, opts: options.Options = options.DEFAULT
) -> Any:
    """Run a dask graph (or graph expression) on ``client``; return
    Futures of ``keys``, nested like ``keys``. ``opts`` apply to every task
    (under its own annotations).
    """
    flat = _flatten(keys)
    with cluster_shuffle():
        nodes = graph_to_nodes(dsk, flat)
    unique = list(dict.fromkeys(flat))
    submitted = submit_graph(client._session, [nodes[k] for k in unique], opts)
    futures = [Future._adopt(k, client) for k in submitted]
    return _repack(keys, dict(zip(unique, futures)))


def persist_collections(
    client: Any,
    collections: list[Any],
    opts: options.Options = options.DEFAULT,
    optimize_graph: bool = True,
) -> list[Any]:
    """Persist dask collections on ``client``: every output key becomes a
    future, and each collection is rebuilt over its futures, so the data
    stays on the workers. ``opts`` as for :func:`run_dask_graph`.
    """
    from dask.base import collections_to_expr

    with cluster_shuffle():
        expr = collections_to_expr(collections, optimize_graph).optimize()
        keys = expr.__dask_keys__()
    if len(keys) != len(collections):
        raise RuntimeError(
            f"dask made {len(keys)} outputs for {len(collections)} collections to persist"
        )
    flat = [k for ks in keys for k in _flatten(ks)]
    with cluster_shuffle():
        nodes = graph_to_nodes(expr, flat)
    unique = list(dict.fromkeys(flat))
    submitted = submit_graph(client._session, [nodes[k] for k in unique], opts)
    futures = {k: Future._adopt(name, client) for k, name in zip(unique, submitted)}
    out = []
    for collection, ks in zip(collections, keys):
        rebuild, args = collection.__dask_postpersist__()
        out.append(rebuild({k: futures[k] for k in _flatten(ks)}, *args))
    return out


def collection_node(collection: Any, optimize_graph: bool = True) -> Node:
    """A shoal node computing a dask collection's final value (the same
    finalized expression ``dask.compute`` would run, its graph optimized
    unless ``optimize_graph`` is False).
    """
    from dask._expr import FinalizeCompute
    from dask.base import collections_to_expr

    with cluster_shuffle():
        expr = FinalizeCompute(collections_to_expr([collection], optimize_graph)).optimize()
        keys = _flatten(expr.__dask_keys__())
        if len(keys) != 1:
            raise ValueError(f"expected one output key from the finalized graph, got {len(keys)}")
        return graph_to_nodes(expr, keys)[keys[0]]
