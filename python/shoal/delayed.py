"""``delayed``, ``compute`` and ``persist``: lazy task graphs built from
ordinary Python calls.

A :class:`Delayed` is a node of a task graph (see :mod:`shoal.core.graph`):
its key, its pickled call, and the futures and delayed objects its
arguments refer to. Nothing runs until ``compute``, which ships the whole
graph to the scheduler at once.
"""

from __future__ import annotations

import operator
import threading
import types
from collections.abc import Iterator
from typing import Any, Callable

from .core import arguments, context, keys, nested, serialize
from .core.errors import ClosedClientError
from .core.graph import Node, call_node, held_node, is_dask_collection, submit_graph, value_node
from .core.options import DEFAULT, Options
from .dask.graphs import collection_node, persist_collections
from .dask.protocol import node_graph
from .futures import Future

_NO_OBJECT = object()


class Delayed(Node):
    """A lazily evaluated value: the result of a graph of tasks.

    Build one with :func:`delayed`; combine them with calls, operators,
    attribute access and indexing; get the value with ``.compute()``.

    Examples
    --------
    >>> total = delayed(sum)([delayed(inc)(i) for i in range(3)])  # doctest: +SKIP
    >>> total.compute()  # doctest: +SKIP
    6

    """

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._key)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | {"key", "compute", "persist"})

    # ----- running -------------------------------------------------------------

    def compute(self, scheduler: Any = None, **kwargs: Any) -> Any:
        """Run the graph and return the value.

        Parameters
        ----------
        scheduler
            A shoal Client, or a scheduler name (None: the default client).
        **kwargs
            As for :func:`compute`.

        Returns
        -------
        The value.

        """
        (result,) = compute(self, scheduler=scheduler, **kwargs)
        return result

    def persist(self, scheduler: Any = None, **kwargs: Any) -> Delayed:
        """Start computing in the cluster; return a Delayed backed by the result."""
        (result,) = persist(self, scheduler=scheduler, **kwargs)
        return result

    @property
    def dask(self) -> dict[str, Any]:
        """This value's task graph as a dict of dask task nodes."""
        return node_graph([self])

    # ----- the dask collection protocol ----------------------------------

    def __dask_graph__(self) -> Any:
        return node_graph([self])

    def __dask_keys__(self) -> list[str]:
        return [self._key]

    def __dask_layers__(self) -> tuple[str, ...]:
        return (self._key,)

    def __dask_tokenize__(self) -> str:
        return self._key

    def __dask_postcompute__(self) -> tuple[Callable[..., Any], tuple]:
        return _first, ()

    def __dask_postpersist__(self) -> tuple[Callable[..., Any], tuple]:
        return _rebuild_after_persist, (self._key, self._length)

    @staticmethod
    def __dask_scheduler__(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return context.resolve(kwargs.pop("scheduler", None)).get(dsk, keys, **kwargs)

    def __dask_optimize__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return dsk

    # ----- building more graph ------------------------------------------

    def __reduce__(self) -> Any:
        return serialize.reduce_dependency(self, self._key)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(f"Attribute {attr} not found")
        return DelayedAttr(self, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise TypeError("Delayed objects are immutable")

    def __setitem__(self, index: Any, value: Any) -> None:
        raise TypeError("Delayed objects are immutable")

    def __getitem__(self, index: Any) -> Delayed:
        return _call(operator.getitem, (self, index), {}, pure=True, name="getitem")

    def __iter__(self) -> Iterator[Delayed]:
        if self._length is None:
            raise TypeError("Delayed objects of unspecified length are not iterable")
        return iter([self[i] for i in range(self._length)])

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("Delayed objects of unspecified length have no len()")
        return self._length

    def __bool__(self) -> bool:
        raise TypeError("Truth of Delayed objects is not supported")

    def __call__(
        self, *args: Any, pure: bool | None = None, dask_key_name: str | None = None, **kwargs: Any
    ) -> Delayed:
        """Record a call (a new task) instead of making it."""
        return _call(
            operator.call if hasattr(operator, "call") else _apply,
            (self, *args),
            kwargs,
            pure=bool(pure),
            key=dask_key_name,
            name="call",
        )


def _call(func: Callable[..., Any], args: tuple, kwargs: dict, **options: Any) -> Delayed:
    return call_node(func, args, kwargs, cls=Delayed, **options)


def _apply(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _first(results: Any) -> Any:
    return results[0]


def _rebuild_after_persist(dsk: Any, key: str, length: int | None, rename: Any = None) -> Delayed:
    """Rebuild after dask persisted this value: ``dsk[key]`` holds it."""
    from dask._task_spec import DataNode

    key = (rename or {}).get(key, key)
    value = dsk[key]
    if isinstance(value, DataNode):
        value = value.value
    return Delayed(key, None, serialize.dumps(value), (), length)


def _methodcall(obj: Any, attr: str, *args: Any, **kwargs: Any) -> Any:
    return getattr(obj, attr)(*args, **kwargs)


class DelayedLeaf(Delayed):
    """A function (or other callable) wrapped by :func:`delayed`.

    Calling it records a task instead of running the function.
    """

    __slots__ = ("_obj", "_pure", "_nout", "_pickled")

    def __init__(
        self,
        obj: Callable[..., Any],
        key: str,
        pure: bool,
        nout: int | None,
        pickled: tuple[int, str, bytes],
    ):
        super().__init__(key, None, None)
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_pure", pure)
        object.__setattr__(self, "_nout", nout)
        # ``obj`` as serialize.dumps_function gives it, for every call.
        object.__setattr__(self, "_pickled", pickled)

    def _spec_frames(self) -> list[bytes]:
        if self._frames is None:
            object.__setattr__(self, "_frames", serialize.dumps(self._obj))
        return self._frames  # type: ignore[return-value]

    def __call__(
        self, *args: Any, pure: bool | None = None, dask_key_name: str | None = None, **kwargs: Any
    ) -> Delayed:
        """Record a call (a new task) instead of making it."""
        return call_node(
            self._obj,
            args,
            kwargs,
            pure=self._pure if pure is None else pure,
            key=dask_key_name,
            length=self._nout,
            cls=Delayed,
            pickled=self._pickled,
        )

    @property
    def __name__(self) -> str:  # type: ignore[override]
        return serialize.funcname(self._obj)

    @property
    def __doc__(self) -> str | None:  # type: ignore[override]
        return getattr(self._obj, "__doc__", None)

    @property
    def __wrapped__(self) -> Any:
        return self._obj


class DelayedAttr(Delayed):
    """``x.attr`` of a Delayed ``x``; calling it calls the method."""

    __slots__ = ("_obj", "_attr")

    def __init__(self, obj: Delayed, attr: str):
        node = _call(getattr, (obj, attr), {}, pure=True, name="getattr")
        super().__init__(node._key, node._func, node._frames, node._deps)
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_attr", attr)

    def __call__(
        self, *args: Any, pure: bool | None = None, dask_key_name: str | None = None, **kwargs: Any
    ) -> Delayed:
        """Record a call (a new task) instead of making it."""
        return _call(
            _methodcall,
            (self._obj, self._attr, *args),
            kwargs,
            pure=bool(pure),
            key=dask_key_name,
            name=self._attr,
        )


def _as_delayed(node: Node) -> Delayed:
    """A plain node (from a dask collection) as a Delayed."""
    if isinstance(node, Delayed):
        return node
    return Delayed(node._key, node._func, node._frames, node._deps, node._length)


def delayed(
    obj: Any = _NO_OBJECT,
    name: str | None = None,
    pure: bool | None = None,
    nout: int | None = None,
    traverse: bool = True,
) -> Any:
    """Wrap a function or value so that calls on it build a task graph.

    Parameters
    ----------
    obj
        A function (``delayed(fn)(x)``) or a value (``delayed(value)``).
        Without it, returns a decorator (``@delayed(pure=True)``).
    name
        The key of the wrapped object's node.
    pure
        Name tasks by their inputs, so equal calls share a key and run once.
    nout
        Make the result iterable: the function returns a tuple of this length.
    traverse
        Delayed objects and futures inside lists, tuples and dicts of a value
        become dependencies; ``traverse=False`` is not supported yet.

    Returns
    -------
    Delayed

    Examples
    --------
    >>> @delayed
    ... def inc(x):
    ...     return x + 1
    >>> inc(1).compute()  # doctest: +SKIP
    2

    """
    if traverse is not True:
        arguments.reject("traverse", traverse, unused=(True,))
    if type(obj) in _PLAIN_FUNCTIONS:
        return _leaf(obj, name, pure, nout)  # the common case, kept cheap
    if obj is _NO_OBJECT:
        return lambda o: delayed(o, name=name, pure=pure, nout=nout, traverse=traverse)
    if isinstance(obj, Delayed):
        return obj
    if is_dask_collection(obj):
        return _as_delayed(collection_node(obj))
    if callable(obj):
        return _leaf(obj, name, pure, nout)
    # Dask collections inside lists, tuples, sets and dicts are computed,
    # as dask's delayed does: each becomes the node computing it.
    inner = {
        id(x): _as_delayed(collection_node(x))
        for x in nested.leaves((obj,))
        if is_dask_collection(x) and not isinstance(x, Delayed)
    }
    if inner:
        obj = _substitute(obj, inner, True)
    return value_node(obj, name, nout, cls=Delayed)


for _cls in (Delayed, DelayedLeaf, DelayedAttr):
    serialize.register_input_type(_cls)

#: Types of callables that are neither Delayed nor dask collections.
_PLAIN_FUNCTIONS = frozenset({types.FunctionType, types.BuiltinFunctionType})

#: The latest DelayedLeaf of each function and options (``delayed(fn)(x)``
#: in a loop makes one), at most :data:`_LEAVES_KEPT` of them.
_leaves: dict[tuple[int, Any, Any, Any], DelayedLeaf] = {}
_leaves_lock = threading.Lock()
_LEAVES_KEPT = 1024


def _leaf(obj: Callable[..., Any], name: str | None, pure: bool | None, nout: int | None) -> Any:
    """``delayed(obj)`` for a callable: its leaf, made once (it is immutable)."""
    cache_key = (id(obj), name, pure, nout)
    leaf = _leaves.get(cache_key)
    if leaf is not None and leaf._obj is obj:
        return leaf
    pickled = serialize.dumps_function(obj)
    leaf = DelayedLeaf(
        obj, name or keys.leaf_key(pickled[1], pickled[0]), bool(pure), nout, pickled
    )
    with _leaves_lock:
        if len(_leaves) >= _LEAVES_KEPT:
            del _leaves[next(iter(_leaves))]
        _leaves[cache_key] = leaf
    return leaf


def _binary(
    op: Callable[[Any, Any], Any], reflected: bool = False
) -> Callable[[Delayed, Any], Delayed]:
    name = op.__name__.strip("_")

    def method(self: Delayed, other: Any) -> Delayed:
        args = (other, self) if reflected else (self, other)
        return _call(op, args, {}, pure=True, name=name)

    return method


def _unary(op: Callable[[Any], Any]) -> Callable[[Delayed], Delayed]:
    name = op.__name__.strip("_")

    def method(self: Delayed) -> Delayed:
        return _call(op, (self,), {}, pure=True, name=name)

    return method


for _op in (
    operator.add,
    operator.sub,
    operator.mul,
    operator.matmul,
    operator.truediv,
    operator.floordiv,
    operator.mod,
    operator.pow,
    operator.lshift,
    operator.rshift,
    operator.and_,
    operator.or_,
    operator.xor,
):
    _n = _op.__name__.strip("_")
    setattr(Delayed, f"__{_n}__", _binary(_op))
    setattr(Delayed, f"__r{_n}__", _binary(_op, reflected=True))
for _op in (operator.lt, operator.le, operator.eq, operator.ne, operator.gt, operator.ge):
    setattr(Delayed, f"__{_op.__name__}__", _binary(_op))
for _op in (operator.neg, operator.pos, operator.invert, operator.abs):
    setattr(Delayed, f"__{_op.__name__.strip('_')}__", _unary(_op))
Delayed.__hash__ = lambda self: hash(self._key)  # type: ignore[method-assign]


# ----- compute and persist ---------------------------------------------------


def collect(args: tuple, traverse: bool) -> list[Any]:
    """Every Delayed (or dask collection) in ``args``, looking inside lists,
    tuples, sets and dicts when ``traverse``.
    """
    items = nested.leaves(args) if traverse else args
    return [x for x in items if isinstance(x, Delayed) or is_dask_collection(x)]


def _substitute(obj: Any, values: dict[int, Any], traverse: bool) -> Any:
    """``obj`` with the objects ``values`` names (by id) replaced."""
    if not traverse:
        return values.get(id(obj), obj)
    return nested.rebuild(obj, lambda x: values.get(id(x), x))


def as_node(x: Any, optimize_graph: bool = True) -> Node:
    """A Delayed as it is; a dask collection as the node computing it."""
    return x if isinstance(x, Node) else collection_node(x, optimize_graph)


def submit_nodes(client: Any, nodes: list[Node], opts: Options = DEFAULT) -> list[Future]:
    """Submit the graph behind ``nodes`` on ``client``; one Future each.

    ``opts`` apply to every task (under its own annotations).
    """
    if client.status != "running":
        raise ClosedClientError(f"this client is {client.status}")
    client._session.share_imports()
    submitted = submit_graph(client._session, nodes, opts)
    return [Future._adopt(k, client) for k in submitted]


def _check_options(get: Any, kwargs: dict[str, Any], what: str) -> None:
    arguments.reject("get", get)
    if kwargs:
        raise TypeError(f"{what}() got unexpected keyword arguments {sorted(kwargs)}")


def compute(
    *args: Any,
    traverse: bool = True,
    optimize_graph: bool = True,
    scheduler: Any = None,
    get: Any = None,
    **kwargs: Any,
) -> tuple:
    """Compute Delayed objects (and dask collections) and return their values.

    Parameters
    ----------
    *args
        Delayed objects, dask collections, or anything else (returned as is).
    traverse
        Look for lazy objects inside lists, tuples, sets and dicts.
    optimize_graph
        Optimize dask collections' graphs as dask would (shoal's own graphs
        need no optimizing).
    scheduler
        A shoal Client, or a scheduler name (None: the default client, else
        an in-process cluster).
    get
        Not supported (pass ``scheduler=`` instead).
    **kwargs
        None are accepted: an unknown option raises ``TypeError``.

    Returns
    -------
    tuple
        One entry per argument, with lazy objects replaced by their values.

    Examples
    --------
    >>> compute(delayed(inc)(1), 10)  # doctest: +SKIP
    (2, 10)

    """
    _check_options(get, kwargs, "compute")
    collections = collect(args, traverse)
    if not collections:
        return args
    client = context.resolve(scheduler)
    futures = submit_nodes(client, [as_node(c, optimize_graph) for c in collections])
    results = client.gather(futures)
    values = {id(c): r for c, r in zip(collections, results)}
    return tuple(_substitute(a, values, traverse) for a in args)


def persist(
    *args: Any,
    traverse: bool = True,
    optimize_graph: bool = True,
    scheduler: Any = None,
    **kwargs: Any,
) -> tuple:
    """Start computing in the cluster; return Delayed objects backed by the
    results (one per argument, like :func:`compute`).

    Dask collections come back as collections whose graphs hold futures
    of their partitions, as in Dask: the data stays on the workers.

    Parameters
    ----------
    *args, traverse, optimize_graph, scheduler
        As for :func:`compute`.
    **kwargs
        None are accepted: an unknown option raises ``TypeError``.

    Returns
    -------
    tuple
        One entry per argument, with lazy objects replaced by persisted ones.

    """
    _check_options(None, kwargs, "persist")
    found = collect(args, traverse)
    if not found:
        return args
    client = context.resolve(scheduler)
    done = persist_on(client, found, optimize_graph=optimize_graph)
    values = {id(c): p for c, p in zip(found, done)}
    return tuple(_substitute(a, values, traverse) for a in args)


def persist_on(
    client: Any, items: list[Any], optimize_graph: bool = True, opts: Options = DEFAULT
) -> list[Any]:
    """Persist Delayed objects and dask collections on ``client``; each
    comes back backed by futures of its results, which stay in the
    cluster. ``opts`` apply to every task, under any ``dask.annotate``
    annotations.
    """
    lazy = [c for c in items if isinstance(c, Delayed)]
    values = {id(c): persisted(c, f) for c, f in zip(lazy, submit_nodes(client, lazy, opts))}
    others = [c for c in items if not isinstance(c, Delayed)]
    if others:
        if client.status != "running":
            raise ClosedClientError(f"this client is {client.status}")
        client._session.share_imports()
        done = persist_collections(client, others, opts, optimize_graph=optimize_graph)
        values.update((id(c), p) for c, p in zip(others, done))
    return [values[id(c)] for c in items]


def persisted(d: Delayed, future: Future) -> Delayed:
    """A Delayed whose value is the result ``future`` points at."""
    return held_node(future, d._length, cls=Delayed)
