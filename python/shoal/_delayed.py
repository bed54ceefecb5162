"""``delayed``: lazy task graphs built from ordinary Python calls.

A :class:`Delayed` is a node of a task graph: its key, its pickled call (the
function's hash and the pickled ``(args, kwargs)``), and the futures and
delayed objects its arguments refer to. Nothing runs until ``compute``,
which ships the whole graph to the scheduler in one message.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator
from typing import Any, Callable

from . import _engine, _serialize

_NO_OBJECT = object()


def _funcname(fn: Any) -> str:
    return _serialize.funcname(fn)


class Delayed:
    """A lazily evaluated value: the result of a graph of tasks.

    Build one with :func:`delayed`; combine them with calls, operators,
    attribute access and indexing; get the value with ``.compute()``.
    """

    __slots__ = ("_key", "_func", "_frames", "_deps", "_length", "_future", "__weakref__")

    def __init__(
        self,
        key: str,
        func: tuple[int, str, bytes] | None,
        frames: list[bytes] | None,
        deps: tuple = (),
        length: int | None = None,
    ):
        object.__setattr__(self, "_key", key)
        object.__setattr__(self, "_func", func)
        object.__setattr__(self, "_frames", frames)
        object.__setattr__(self, "_deps", deps)
        object.__setattr__(self, "_length", length)
        object.__setattr__(self, "_future", None)

    # ----- identity ----------------------------------------------------------

    @property
    def key(self) -> str:
        """The key of the task that produces this value."""
        return self._key

    def _spec_frames(self) -> list[bytes]:
        """The pickled arguments (or the pickled value, for a literal)."""
        return self._frames  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"Delayed({self._key!r})"

    def __hash__(self) -> int:
        return hash(self._key)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(type(self))) | {"key", "compute", "persist"})

    # ----- running -------------------------------------------------------------

    def compute(self, scheduler: Any = None, **kwargs: Any) -> Any:
        """Run the graph and return the value."""
        from ._graph import compute

        (result,) = compute(self, scheduler=scheduler, **kwargs)
        return result

    def persist(self, scheduler: Any = None, **kwargs: Any) -> Delayed:
        """Start computing in the cluster; return a Delayed backed by the result."""
        from ._graph import persist

        (result,) = persist(self, scheduler=scheduler, **kwargs)
        return result

    @property
    def dask(self) -> dict[str, Any]:
        """This value's task graph as a dict of dask task nodes."""
        from ._dask_interop import delayed_graph

        return delayed_graph([self])

    # ----- the dask collection protocol ----------------------------------

    def __dask_graph__(self) -> Any:
        from ._dask_interop import delayed_graph

        return delayed_graph([self])

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
        from ._graph import dask_get

        return dask_get(dsk, keys, **kwargs)

    def __dask_optimize__(self, dsk: Any, keys: Any, **kwargs: Any) -> Any:
        return dsk

    # ----- building more graph ------------------------------------------

    def __reduce__(self) -> Any:
        _serialize.record_dependency(self)
        return (_serialize.resolve_dependency, (self._key,))

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):
            raise AttributeError(f"Attribute {attr} not found")
        return DelayedAttr(self, attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        raise TypeError("Delayed objects are immutable")

    def __setitem__(self, index: Any, value: Any) -> None:
        raise TypeError("Delayed objects are immutable")

    def __getitem__(self, index: Any) -> Delayed:
        return call(operator.getitem, (self, index), {}, pure=True, name="getitem")

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
        return call(
            operator.call if hasattr(operator, "call") else _apply,
            (self, *args),
            kwargs,
            pure=bool(pure),
            key=dask_key_name,
            name="call",
        )


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
    return Delayed(key, None, _serialize.dumps(value), (), length)


def _methodcall(obj: Any, attr: str, *args: Any, **kwargs: Any) -> Any:
    return getattr(obj, attr)(*args, **kwargs)


class DelayedLeaf(Delayed):
    """A function (or other callable) wrapped by :func:`delayed`.

    Calling it records a task instead of running the function.
    """

    __slots__ = ("_obj", "_pure", "_nout")

    def __init__(self, obj: Callable[..., Any], key: str, pure: bool, nout: int | None):
        super().__init__(key, None, None)
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_pure", pure)
        object.__setattr__(self, "_nout", nout)

    def _spec_frames(self) -> list[bytes]:
        if self._frames is None:
            object.__setattr__(self, "_frames", _serialize.dumps(self._obj))
        return self._frames  # type: ignore[return-value]

    def __call__(
        self, *args: Any, pure: bool | None = None, dask_key_name: str | None = None, **kwargs: Any
    ) -> Delayed:
        return call(
            self._obj,
            args,
            kwargs,
            pure=self._pure if pure is None else pure,
            key=dask_key_name,
            length=self._nout,
        )

    @property
    def __name__(self) -> str:  # type: ignore[override]
        return _funcname(self._obj)

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
        node = call(getattr, (obj, attr), {}, pure=True, name="getattr")
        super().__init__(node._key, node._func, node._frames, node._deps)
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_attr", attr)

    def __call__(
        self, *args: Any, pure: bool | None = None, dask_key_name: str | None = None, **kwargs: Any
    ) -> Delayed:
        return call(
            _methodcall,
            (self._obj, self._attr, *args),
            kwargs,
            pure=bool(pure),
            key=dask_key_name,
            name=self._attr,
        )


def call(
    func: Callable[..., Any],
    args: tuple,
    kwargs: dict,
    pure: bool = False,
    key: str | None = None,
    name: str | None = None,
    length: int | None = None,
) -> Delayed:
    """A Delayed for ``func(*args, **kwargs)``; Delayed and Future arguments
    (anywhere inside) become dependencies.
    """
    fn = _serialize.dumps_function(func)
    label = name or fn[1]
    frames, deps = _serialize.dumps_args(args, kwargs, label)
    if key is None:
        token = _engine.token(fn[0], frames) if pure else _serialize.unique_token()
        key = f"{label}-{token}"
    elif not isinstance(key, str):
        raise TypeError(f"dask_key_name must be a string, not {type(key).__name__}")
    return Delayed(key, fn, frames, tuple(deps), length)


def _identity(x: Any) -> Any:
    return x


def value_node(value: Any, key: str | None = None, length: int | None = None) -> Delayed:
    """A Delayed whose value is ``value``.

    Futures and Delayed objects anywhere inside become dependencies (the
    node rebuilds the value on a worker); plain data is shipped as it is.
    """
    frames, deps = _serialize.dumps_args((value,), {}, f"the value {key or type(value).__name__}")
    if deps:
        fn = _serialize.dumps_function(_identity)
        key = key or f"{type(value).__name__}-{_serialize.unique_token()}"
        return Delayed(key, fn, frames, tuple(deps), length)
    data = _serialize.dumps(value)
    key = key or f"{type(value).__name__}-{_engine.token(0, data)}"
    return Delayed(key, None, data, (), length)


def delayed(
    obj: Any = _NO_OBJECT,
    name: str | None = None,
    pure: bool | None = None,
    nout: int | None = None,
    traverse: bool = True,
) -> Any:
    """Wrap a function or value so that calls on it build a task graph.

    As a decorator (``@delayed`` or ``@delayed(pure=True)``) or a wrapper
    (``delayed(fn)(x)``, ``delayed(value)``). ``pure=True`` names tasks by
    their inputs, so equal calls share a key; ``nout`` makes the result
    iterable (a function returning a tuple of that length); ``name`` sets the
    key. Delayed values and futures inside the arguments (lists, tuples,
    dicts) become dependencies.
    """
    if obj is _NO_OBJECT:
        return lambda o: delayed(o, name=name, pure=pure, nout=nout, traverse=traverse)
    if isinstance(obj, Delayed):
        return obj
    if not isinstance(obj, type) and callable(getattr(type(obj), "__dask_graph__", None)):
        from ._dask_interop import wrap_collection

        return wrap_collection(obj)
    if callable(obj):
        h, fname, _ = _serialize.dumps_function(obj)
        key = name or f"{fname}-{h:016x}"
        return DelayedLeaf(obj, key, bool(pure), nout)
    return value_node(obj, name, nout)


def _binary(
    op: Callable[[Any, Any], Any], reflected: bool = False
) -> Callable[[Delayed, Any], Delayed]:
    name = op.__name__.strip("_")

    def method(self: Delayed, other: Any) -> Delayed:
        args = (other, self) if reflected else (self, other)
        return call(op, args, {}, pure=True, name=name)

    return method


def _unary(op: Callable[[Any], Any]) -> Callable[[Delayed], Delayed]:
    name = op.__name__.strip("_")

    def method(self: Delayed) -> Delayed:
        return call(op, (self,), {}, pure=True, name=name)

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
