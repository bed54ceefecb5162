"""Serialization of functions, arguments and results.

Everything is pickled with protocol 5 so that large buffers (numpy arrays,
pandas blocks) travel as separate frames instead of being copied into the
pickle stream. Plain ``pickle`` is tried first because it is fast; cloudpickle
takes over for what plain pickle cannot ship by reference (lambdas, closures,
anything defined in ``__main__`` or a notebook).

Futures and Delayed objects inside a task's arguments are recorded as its
dependencies while pickling (:func:`reduce_dependency`) and pickle as the
task's i-th input (:mod:`shoal.core.refs`); the worker puts its inputs' values
in their place. Anywhere else (a result, a queue item) they pickle by key
and unpickle as futures.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import pickle
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Callable

from .. import _engine
from . import families, refs

_local = threading.local()
_FUNC_CACHE_SIZE = 256
_func_cache: OrderedDict[int, tuple[Any, int, str, bytes]] = OrderedDict()
_func_lock = threading.Lock()


def _cloudpickle() -> Any:
    import cloudpickle  # imported lazily: it costs ~10 ms at start-up

    return cloudpickle


def _by_value_needed(fn: Any) -> bool:
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", "")
    return module == "__main__" or module is None or "<" in qualname


#: ``bytes`` at least this large travel as frames of their own, uncopied.
BIG_BYTES = 64 * 1024


def _frame(buffer: pickle.PickleBuffer) -> bytes | memoryview:
    """A buffer as a frame, uncopied: a ``bytes`` object it spans as it is,
    else a view of the producer's memory (a numpy array's, a pandas
    block's), which the engine reads in place and keeps alive while it
    needs it. A buffer that is not contiguous is copied.
    """
    try:
        raw = buffer.raw()
    except BufferError:
        return memoryview(buffer).tobytes(order="A")
    if type(raw.obj) is bytes and raw.nbytes == len(raw.obj):
        return raw.obj
    return raw


def _pickle(obj: Any, buffers: list[pickle.PickleBuffer]) -> bytes:
    if type(obj) is bytes and len(obj) >= BIG_BYTES:
        # A large bytes value (a downloaded page, a file) travels as a frame
        # of its own, uncopied: the stream only refers to it, and loading
        # gives back the frame itself. (Plain pickle copies bytes into the
        # stream, and pickle calls no hook for them.)
        obj = pickle.PickleBuffer(obj)
    return pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)


#: Pickle's FRAME opcode and the size of the header it starts.
_FRAME, _FRAME_HEADER = 0x95, 9


def _unframed(data: bytes) -> bytes:
    """A small pickle without its frame header, which the unpickler does not
    need: 9 bytes of the 20 that a task's arguments ``((1,), {})`` take
    (the scheduler holds every waiting task's arguments and every small
    result).
    """
    if len(data) < 4096 and data[2] == _FRAME:
        return data[:2] + data[2 + _FRAME_HEADER :]
    return data


def _dumps(obj: Any, force_cloudpickle: bool = False) -> list[Any]:
    buffers: list[pickle.PickleBuffer] = []
    data = None
    if not force_cloudpickle:
        try:
            data = _pickle(obj, buffers)
        except Exception:
            data = None
        # Objects of classes from __main__ pickle by a reference the worker
        # cannot resolve; ship those by value.
        if data is not None and b"__main__" in data:
            data = None
    if data is None:
        buffers.clear()
        data = _cloudpickle().dumps(obj, protocol=5, buffer_callback=buffers.append)
    return [_unframed(data), *(_frame(b) for b in buffers)]


def _loads(frames: Sequence[Any], allowed: frozenset[str] | None = None) -> Any:
    if families.limits(allowed):
        assert allowed is not None
        value = families.load(frames, allowed, "the value")
    else:
        value = pickle.loads(frames[0], buffers=frames[1:])
    if type(value) is _engine.Frame:
        # A large ``bytes`` value that travelled as a frame of its own (see
        # :func:`_pickle`): a ``bytes`` object owns its memory, so this is
        # the one case where a received buffer is copied.
        return bytes(value)
    return value


def loads(frames: Sequence[Any]) -> Any:
    """Rebuild a value from the frames made by :func:`dumps` (``bytes``, or
    the engine's frames over the memory they arrived in).
    """
    return _loads(frames)


def nbytes(frames: list[Any]) -> int:
    """Bytes in pickled ``frames``."""
    if len(frames) == 1 and type(frames[0]) is bytes:
        return len(frames[0])  # the common case (no out-of-band buffer), kept cheap
    return sum(memoryview(f).nbytes for f in frames)


def dumps(obj: Any) -> list[Any]:
    """Pickle a value (a result or a scattered value) into frames: ``bytes``
    and views of the value's own buffers (see :func:`_frame`).
    """
    return _dumps(obj)


def funcname(fn: Any) -> str:
    """A short name for a callable, used as the prefix of its task keys."""
    name = getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__name__
    if name == "<lambda>":
        name = "lambda"
    return name


def dumps_function(fn: Callable[..., Any]) -> tuple[int, str, bytes]:
    """Pickle a function once; returns ``(hash, name, bytes)``.

    The result is cached by identity (as Dask does), so a ``submit`` loop
    pickles its function only once.
    """
    with _func_lock:
        hit = _func_cache.get(id(fn))
        if hit is not None and hit[0] is fn:
            _func_cache.move_to_end(id(fn))
            return hit[1], hit[2], hit[3]
    try:
        frames = _dumps(fn, force_cloudpickle=_by_value_needed(fn))
    except Exception as e:
        raise TypeError(f"Could not serialize the function {fn!r}: {e}") from e
    if len(frames) > 1:
        frames = [_cloudpickle().dumps(fn, protocol=4)]
    data = frames[0]
    h = _engine.hash_bytes(data) or 1  # 0 is reserved for scattered data
    name = funcname(fn)
    with _func_lock:
        _func_cache[id(fn)] = (fn, h, name, data)
        if len(_func_cache) > _FUNC_CACHE_SIZE:
            _func_cache.popitem(last=False)
    return h, name, data


#: Types whose values hold nothing else (no future, no buffer, no class of
#: ``__main__``): a result of these is pickled without the general path's
#: bookkeeping, to the same bytes (see :func:`dumps_plain`).
PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None)})


#: The classes whose instances are task inputs (see register_input_type).
_input_types: list[type] = []
_call_pickler = _engine.CallPickler(refs.ref, [])


def register_input_type(cls: type) -> None:
    """Make instances of ``cls`` (exactly that class) task inputs that the
    engine's one-pass pickler of calls writes itself. Their ``__reduce__``
    must be ``reduce_dependency(self, self._key)``, which it reproduces.
    """
    global _call_pickler
    _input_types.append(cls)
    _call_pickler = _engine.CallPickler(refs.ref, _input_types)


def dumps_plain(value: Any) -> list[bytes] | None:
    """The frames of ``value`` if it is a value of :data:`PLAIN_TYPES`
    (the same frames :func:`dumps` makes), else None; None too where the
    general path would use cloudpickle (a text naming ``__main__`` looks
    like a reference to it).
    """
    if type(value) not in PLAIN_TYPES or (type(value) is bytes and len(value) >= BIG_BYTES):
        return None
    data = _call_pickler.dumps_value(value)
    if data is not None:  # the engine wrote the same bytes
        return [data]
    data = pickle.dumps(value, protocol=5)  # a long text, a wide integer
    return None if b"__main__" in data else [_unframed(data)]


def dumps_args(args: tuple, kwargs: dict, what: str) -> tuple[list[bytes], list[Any]]:
    """Pickle ``(args, kwargs)``; returns the frames and the futures and
    delayed objects found inside (each once).

    Raises ``TypeError`` naming ``what`` if the arguments cannot be pickled.
    """
    if not kwargs:
        done = _call_pickler.dumps(args)
        if done is not None:  # numbers, texts and inputs: the common call
            return [done[0]], done[1]
    return dumps_args_like((args, kwargs), f"the arguments of {what}", positional=True)


def loads_args(frames: Sequence[Any], inputs: Sequence[Any]) -> tuple[tuple, dict]:
    """A task's ``(args, kwargs)`` from the frames :func:`dumps_args` made,
    with ``inputs``, the values of its dependencies in their order, in
    their places.
    """
    if not inputs:
        return _loads(frames)
    refs.set_inputs(inputs)
    try:
        return _loads(frames)
    finally:
        refs.set_inputs(None)


def dumps_held(value: Any, what: str) -> tuple[list[bytes], list[str]]:
    """Pickle a value the scheduler will hold (a queue item, a variable, a
    dataset); returns the frames and the keys of the futures inside, which
    the scheduler keeps while it holds the value. Futures inside stay
    futures when the value is unpickled (see :func:`resolve_dependency`).
    """
    frames, deps = dumps_args_like(value, what)
    for d in deps:
        if not getattr(d, "_is_future", False):
            raise TypeError(
                f"{what} holds a lazy {type(d).__name__}: compute or persist it first, "
                "and pass the futures"
            )
    return frames, [d._key for d in deps]


def dumps_args_like(
    value: Any, what: str, positional: bool = False
) -> tuple[list[bytes], list[Any]]:
    """Pickle one value, recording the futures and delayed objects inside
    (each once, in the order met). With ``positional`` (a task's
    arguments) they pickle as the task's inputs by position, else by key.
    """
    deps: list[Any] = []
    previous = getattr(_local, "deps", None), getattr(_local, "positional", False)
    _local.deps, _local.positional = deps, positional
    try:
        frames = _dumps(value)
    except Exception as e:
        raise TypeError(f"Could not serialize {what}: {e}") from e
    finally:
        _local.deps, _local.positional = previous
    return frames, deps


def reduce_dependency(obj: Any, key: str) -> tuple[Callable[..., Any], tuple]:
    """What a Future or a Delayed (``obj``, standing for ``key``) pickles
    as: in a task's arguments, the task's input at its position among the
    dependencies recorded so far (recording it if new); anywhere else, a
    reference by key (see :func:`resolve_dependency`).
    """
    deps = getattr(_local, "deps", None)
    if deps is None:
        return (resolve_dependency, (key,))
    i = 0
    for d in deps:  # a loop, not index(): identity, not equality
        if d is obj:
            break
        i += 1
    else:
        deps.append(obj)
    if _local.positional:
        return (refs.ref, (i,))
    return (resolve_dependency, (key,))


_future_factory: Callable[[str, Any], Any] | None = None


def set_future_factory(factory: Callable[[str, Any], Any]) -> None:
    """How to make a Future for a key and a client (registered by
    ``shoal.futures``, above this layer).
    """
    global _future_factory
    _future_factory = factory


def loads_for(frames: list[bytes], client: Any) -> Any:
    """Unpickle a value that may hold futures (a result, a queue item):
    they become futures of ``client``. A client made with Dask's
    ``deserializers=`` loads only values of those families
    (:mod:`shoal.core.families`).
    """
    return loads_many_for([frames], client)[0]


def loads_many_for(frames: list[Sequence[Any]], client: Any) -> list[Any]:
    """:func:`loads_for` on each of ``frames`` (a gather's results), with
    the client set once for all.
    """
    previous = getattr(_local, "client", None)
    _local.client = client
    allowed = getattr(client, "_deserializers", None)
    try:
        return [_loads(f, allowed) for f in frames]
    finally:
        _local.client = previous


def unpickling_client() -> Any:
    """The client :func:`loads_for` is unpickling a value for, or None."""
    return getattr(_local, "client", None)


def resolve_dependency(key: str) -> Any:
    """Unpickling side of a future outside a task's arguments (a result, a
    queue item, a variable): a future for the key, of the client unpickling
    it (or the default client).
    """
    if _future_factory is None:
        raise RuntimeError("import shoal to unpickle futures")
    return _future_factory(key, getattr(_local, "client", None))


def type_name(cls: type) -> str:
    """``cls`` as :func:`type_named` finds it again: ``module.QualName``
    (just the name for built-in types).
    """
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


@functools.lru_cache(maxsize=256)
def type_named(name: str) -> type | None:
    """The class :func:`type_name` named, importing its module if need be
    (as unpickling the class would); None if it cannot be found here.
    """
    if not name:
        return None
    parts = name.split(".")
    if len(parts) == 1:
        found = getattr(builtins, name, None)
        return found if isinstance(found, type) else None
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj if isinstance(obj, type) else None
    return None
