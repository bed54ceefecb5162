"""Types of shoal's Rust engine (``crates/shoal-py``), as Python sees it.

Checked against the built extension in CI (``python -m mypy.stubtest
shoal._engine``). Pickle frames go in as any sequence of bytes-like objects
and come back as a list of ``bytes`` (small ones) and ``Frame`` objects
(large ones, the engine's memory exposed without a copy).
"""

from collections.abc import Callable, Sequence
from typing import Any, Final, final

from typing_extensions import Buffer, TypeAlias, disjoint_base

_FramesIn: TypeAlias = Sequence[Buffer]
_FramesOut: TypeAlias = list[bytes | Frame]
_TlsArg: TypeAlias = tuple[bytes, bytes | None, bytes | None, bool] | None

__all__ = [
    "CallPickler",
    "recent_logs",
    "log_line",
    "hash_bytes",
    "strip_scheme",
    "in_scheme",
    "scheme",
    "token",
    "temporary_certificates",
    "exit_on_stdin_eof",
    "die_with_parent",
    "total_memory",
    "run_scheduler",
    "dashboard_asset",
    "key_prefix",
    "Scheduler",
    "SchedulerConfig",
    "ClientCore",
    "CompletionQueue",
    "WorkerRuntime",
    "WorkerPool",
    "RESTART_EXIT_CODE",
    "FunctionDef",
    "TaskSpec",
    "GraphPart",
    "node_order",
    "TaskOptions",
    "ClosedClientError",
    "ExecutorTask",
    "ControlItem",
    "Outcome",
    "TaskError",
    "Frame",
    "Coord",
    "Answer",
    "RunAnswer",
    "StoryRecord",
    "WorkerInfo",
    "WorkerState",
    "LimitState",
    "Identity",
    "INLINE_LIMIT",
    "MAX_SPEC_BYTES",
    "LITERAL_FUNC",
    "MAX_LIMITS_PER_TASK",
]

INLINE_LIMIT: Final[int]
LITERAL_FUNC: Final[int]
MAX_LIMITS_PER_TASK: Final[int]
MAX_SPEC_BYTES: Final[int]

# ----- values ---------------------------------------------------------------

@final
class Frame:
    """One frame's bytes in the engine's memory (a bytes-like object)."""

    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def __len__(self) -> int: ...
    @property
    def address(self) -> int: ...

@final
class FunctionDef:
    def __new__(cls, hash: int, name: str, data: bytes) -> FunctionDef: ...
    @property
    def hash(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def data(self) -> bytes: ...

@final
class TaskSpec:
    def __new__(
        cls,
        key: str,
        func: int,
        frames: _FramesIn,
        deps: Sequence[str] = ...,
        wanted: bool = True,
        options: int = 0,
    ) -> TaskSpec: ...
    @property
    def key(self) -> str: ...
    @property
    def func(self) -> int: ...
    @property
    def frames(self) -> _FramesOut: ...
    @property
    def deps(self) -> list[str]: ...
    @property
    def wanted(self) -> bool: ...
    @property
    def options(self) -> int: ...

def node_order(roots: list[Any], node_type: type) -> list[Any]:
    """Nodes reachable from ``roots`` (``node_type``s holding no result
    yet), each key once, dependencies first.
    """

@final
class GraphPart:
    """Task specs read from a part of a graph's nodes
    (``shoal.core.graph.Node``, dependencies first), for
    :meth:`ClientCore.submit_graph_part`; a node's options are at index
    ``options`` unless it has its own (``_options``), whose index
    ``options_of(node)`` gives. ``nbytes`` counts the pickled arguments;
    the functions' bytes count when they are sent.
    """

    def __new__(
        cls,
        nodes: list[Any],
        wanted: set[str],
        options: int,
        options_of: Callable[[Any], int],
    ) -> GraphPart: ...
    def __len__(self) -> int: ...
    @property
    def wanted_keys(self) -> list[str]: ...
    @property
    def nbytes(self) -> int: ...

@final
class CallPickler:
    """Pickles a call's positional arguments in one pass, to the bytes
    ``shoal.core.serialize.dumps_args`` makes: numbers, texts, bytes,
    None, booleans, and instances of ``input_types`` (each reduced to
    ``reference(i)``, its place among the call's inputs).
    """

    def __new__(cls, reference: Callable[[int], Any], input_types: list[type]) -> CallPickler: ...
    def dumps(self, args: tuple[Any, ...]) -> tuple[bytes, list[Any]] | None:
        """The pickle of ``(args, {})`` and the inputs in it (each once, in
        the order met), or None for arguments of any other form.
        """
    def dumps_value(self, value: Any) -> bytes | None:
        """The pickle of one number, text, bytes value, None or boolean, or
        None for a value of any other kind.
        """

class ClosedClientError(RuntimeError):
    """A call needed a client that is closed (or closing)."""

@final
class TaskOptions:
    """The wire's task options, built from keyword arguments named as its
    fields (``shoal.core.options.Options``'s); an unknown name or a value
    of the wrong type raises ValueError.
    """

    def __new__(cls, **fields: object) -> TaskOptions: ...
    def fields(self) -> dict[str, object]: ...

@final
class ExecutorTask:
    @property
    def id(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def func(self) -> int: ...
    @property
    def function(self) -> bytes | None: ...
    @property
    def args(self) -> _FramesOut: ...
    @property
    def deps(self) -> list[tuple[str, _FramesOut | None]]: ...
    @property
    def held(self) -> list[tuple[str, Any]] | None: ...

@disjoint_base
class TaskError:
    """Why a task failed: ``TaskError.Raised`` (its exception) or
    ``TaskError.Killed`` (the workers running it kept dying).
    """

    @final
    class Raised(TaskError):
        __match_args__ = ("type_name", "message", "traceback", "exception")
        def __new__(
            cls, type_name: str, message: str, traceback: str, exception: _FramesIn
        ) -> TaskError.Raised: ...
        @property
        def type_name(self) -> str: ...
        @property
        def message(self) -> str: ...
        @property
        def traceback(self) -> str: ...
        @property
        def exception(self) -> _FramesOut: ...

    @final
    class Killed(TaskError):
        __match_args__ = ("key", "last_worker", "attempts", "cause")
        def __new__(
            cls, key: str, last_worker: str, attempts: int, cause: str
        ) -> TaskError.Killed: ...
        @property
        def key(self) -> str: ...
        @property
        def last_worker(self) -> str: ...
        @property
        def attempts(self) -> int: ...
        @property
        def cause(self) -> str: ...

@disjoint_base
class Outcome:
    """What a key came to: ``Outcome.Value`` (its pickled ``frames``),
    ``Outcome.Error`` (its ``error``) or ``Outcome.Cancelled``.
    """

    @final
    class Value(Outcome):
        __match_args__ = ("frames",)
        def __new__(cls, frames: _FramesIn) -> Outcome.Value: ...
        @property
        def frames(self) -> _FramesOut: ...

    @final
    class Error(Outcome):
        __match_args__ = ("error",)
        def __new__(cls, error: TaskError) -> Outcome.Error: ...
        @property
        def error(self) -> TaskError: ...

    @final
    class Cancelled(Outcome):
        __match_args__ = ()
        def __new__(cls) -> Outcome.Cancelled: ...

# ----- the cluster as a client sees it --------------------------------------

@final
class WorkerInfo:
    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def nthreads(self) -> int: ...
    @property
    def memory(self) -> int: ...
    @property
    def pid(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def resources(self) -> list[tuple[str, float]]: ...

@final
class WorkerState:
    @property
    def info(self) -> WorkerInfo: ...
    @property
    def stored(self) -> int: ...
    @property
    def assigned(self) -> int: ...
    @property
    def rss(self) -> int: ...
    @property
    def managed(self) -> int: ...
    @property
    def spilled(self) -> int: ...
    @property
    def paused(self) -> bool: ...

@final
class LimitState:
    @property
    def name(self) -> str: ...
    @property
    def concurrency(self) -> int | None: ...
    @property
    def rate(self) -> float | None: ...
    @property
    def burst(self) -> float | None: ...
    @property
    def running(self) -> int: ...
    @property
    def waiting(self) -> int: ...

@final
class Identity:
    @property
    def workers(self) -> list[WorkerState]: ...
    @property
    def tasks(self) -> int: ...
    @property
    def limits(self) -> list[LimitState]: ...

# ----- coordination -----------------------------------------------------------

@disjoint_base
class Coord:
    """A coordination request; build one of the variants."""

    @final
    class QueueCreate(Coord):
        __match_args__ = ("name", "maxsize")
        def __new__(cls, name: str, maxsize: int = 0) -> Coord.QueueCreate: ...
        @property
        def name(self) -> str: ...
        @property
        def maxsize(self) -> int: ...

    @final
    class QueuePut(Coord):
        __match_args__ = ("name", "value", "keys")
        def __new__(
            cls, name: str, value: _FramesIn, keys: Sequence[str] = ...
        ) -> Coord.QueuePut: ...
        @property
        def name(self) -> str: ...
        @property
        def value(self) -> _FramesOut: ...
        @property
        def keys(self) -> list[str]: ...

    @final
    class QueueGet(Coord):
        __match_args__ = ("name", "count")
        def __new__(cls, name: str, count: int = 0) -> Coord.QueueGet: ...
        @property
        def name(self) -> str: ...
        @property
        def count(self) -> int: ...

    @final
    class QueueSize(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.QueueSize: ...
        @property
        def name(self) -> str: ...

    @final
    class VariableSet(Coord):
        __match_args__ = ("name", "value", "keys")
        def __new__(
            cls, name: str, value: _FramesIn, keys: Sequence[str] = ...
        ) -> Coord.VariableSet: ...
        @property
        def name(self) -> str: ...
        @property
        def value(self) -> _FramesOut: ...
        @property
        def keys(self) -> list[str]: ...

    @final
    class VariableGet(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.VariableGet: ...
        @property
        def name(self) -> str: ...

    @final
    class VariableDelete(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.VariableDelete: ...
        @property
        def name(self) -> str: ...

    @final
    class Acquire(Coord):
        __match_args__ = ("name", "max_leases", "lease")
        def __new__(cls, name: str, max_leases: int, lease: int) -> Coord.Acquire: ...
        @property
        def name(self) -> str: ...
        @property
        def max_leases(self) -> int: ...
        @property
        def lease(self) -> int: ...

    @final
    class Release(Coord):
        __match_args__ = ("name", "lease")
        def __new__(cls, name: str, lease: int) -> Coord.Release: ...
        @property
        def name(self) -> str: ...
        @property
        def lease(self) -> int: ...

    @final
    class Leases(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.Leases: ...
        @property
        def name(self) -> str: ...

    @final
    class MultiAcquire(Coord):
        __match_args__ = ("names", "count", "lease")
        def __new__(cls, names: Sequence[str], count: int, lease: int) -> Coord.MultiAcquire: ...
        @property
        def names(self) -> list[str]: ...
        @property
        def count(self) -> int: ...
        @property
        def lease(self) -> int: ...

    @final
    class MultiRelease(Coord):
        __match_args__ = ("lease",)
        def __new__(cls, lease: int) -> Coord.MultiRelease: ...
        @property
        def lease(self) -> int: ...

    @final
    class MultiLocked(Coord):
        __match_args__ = ("names",)
        def __new__(cls, names: Sequence[str]) -> Coord.MultiLocked: ...
        @property
        def names(self) -> list[str]: ...

    @final
    class EventSet(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.EventSet: ...
        @property
        def name(self) -> str: ...

    @final
    class EventClear(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.EventClear: ...
        @property
        def name(self) -> str: ...

    @final
    class EventWait(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.EventWait: ...
        @property
        def name(self) -> str: ...

    @final
    class EventIsSet(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.EventIsSet: ...
        @property
        def name(self) -> str: ...

    @final
    class DatasetPublish(Coord):
        __match_args__ = ("name", "value", "keys", "replace")
        def __new__(
            cls, name: str, value: _FramesIn, keys: Sequence[str] = ..., replace: bool = False
        ) -> Coord.DatasetPublish: ...
        @property
        def name(self) -> str: ...
        @property
        def value(self) -> _FramesOut: ...
        @property
        def keys(self) -> list[str]: ...
        @property
        def replace(self) -> bool: ...

    @final
    class DatasetGet(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.DatasetGet: ...
        @property
        def name(self) -> str: ...

    @final
    class DatasetList(Coord):
        __match_args__ = ()
        def __new__(cls) -> Coord.DatasetList: ...

    @final
    class DatasetDelete(Coord):
        __match_args__ = ("name",)
        def __new__(cls, name: str) -> Coord.DatasetDelete: ...
        @property
        def name(self) -> str: ...

    @final
    class Subscribe(Coord):
        __match_args__ = ("topic", "sub")
        def __new__(cls, topic: str, sub: int) -> Coord.Subscribe: ...
        @property
        def topic(self) -> str: ...
        @property
        def sub(self) -> int: ...

    @final
    class Unsubscribe(Coord):
        __match_args__ = ("sub",)
        def __new__(cls, sub: int) -> Coord.Unsubscribe: ...
        @property
        def sub(self) -> int: ...

    @final
    class Publish(Coord):
        __match_args__ = ("topic", "message")
        def __new__(cls, topic: str, message: _FramesIn) -> Coord.Publish: ...
        @property
        def topic(self) -> str: ...
        @property
        def message(self) -> _FramesOut: ...

    @final
    class LogEvent(Coord):
        __match_args__ = ("topics", "event")
        def __new__(cls, topics: Sequence[str], event: _FramesIn) -> Coord.LogEvent: ...
        @property
        def topics(self) -> list[str]: ...
        @property
        def event(self) -> _FramesOut: ...

    @final
    class GetEvents(Coord):
        __match_args__ = ("topic",)
        def __new__(cls, topic: str) -> Coord.GetEvents: ...
        @property
        def topic(self) -> str: ...

    @final
    class EventTopics(Coord):
        __match_args__ = ()
        def __new__(cls) -> Coord.EventTopics: ...

    @final
    class SubscribeEvents(Coord):
        __match_args__ = ("topic", "sub")
        def __new__(cls, topic: str, sub: int) -> Coord.SubscribeEvents: ...
        @property
        def topic(self) -> str: ...
        @property
        def sub(self) -> int: ...

    @final
    class SetMetadata(Coord):
        __match_args__ = ("path", "entries")
        def __new__(
            cls, path: Sequence[str], entries: Sequence[tuple[Sequence[str], _FramesIn | None]]
        ) -> Coord.SetMetadata: ...
        @property
        def path(self) -> list[str]: ...
        @property
        def entries(self) -> list[tuple[list[str], _FramesOut | None]]: ...

    @final
    class GetMetadata(Coord):
        __match_args__ = ("path",)
        def __new__(cls, path: Sequence[str]) -> Coord.GetMetadata: ...
        @property
        def path(self) -> list[str]: ...

    @final
    class FireAndForget(Coord):
        __match_args__ = ("keys",)
        def __new__(cls, keys: Sequence[str]) -> Coord.FireAndForget: ...
        @property
        def keys(self) -> list[str]: ...

    @final
    class WhoHas(Coord):
        __match_args__ = ("keys",)
        def __new__(cls, keys: Sequence[str]) -> Coord.WhoHas: ...
        @property
        def keys(self) -> list[str]: ...

    @final
    class HasWhat(Coord):
        __match_args__ = ()
        def __new__(cls) -> Coord.HasWhat: ...

    @final
    class Processing(Coord):
        __match_args__ = ()
        def __new__(cls) -> Coord.Processing: ...

    @final
    class TaskCall(Coord):
        __match_args__ = ("key",)
        def __new__(cls, key: str) -> Coord.TaskCall: ...
        @property
        def key(self) -> str: ...

    @final
    class Replicate(Coord):
        __match_args__ = ("keys", "n", "workers", "branching")
        def __new__(
            cls, keys: Sequence[str], n: int = 0, workers: Sequence[str] = ..., branching: int = 2
        ) -> Coord.Replicate: ...
        @property
        def keys(self) -> list[str]: ...
        @property
        def n(self) -> int: ...
        @property
        def workers(self) -> list[str]: ...
        @property
        def branching(self) -> int: ...

    @final
    class Story(Coord):
        __match_args__ = ("keys",)
        def __new__(cls, keys: Sequence[str]) -> Coord.Story: ...
        @property
        def keys(self) -> list[str]: ...

    @final
    class Rebalance(Coord):
        __match_args__ = ("keys", "workers")
        def __new__(
            cls, keys: Sequence[str] = ..., workers: Sequence[str] = ...
        ) -> Coord.Rebalance: ...
        @property
        def keys(self) -> list[str]: ...
        @property
        def workers(self) -> list[str]: ...

    @final
    class RetireWorkers(Coord):
        __match_args__ = ("workers", "n")
        def __new__(cls, workers: Sequence[str] = ..., n: int = 0) -> Coord.RetireWorkers: ...
        @property
        def workers(self) -> list[str]: ...
        @property
        def n(self) -> int: ...

    @final
    class AdaptiveTarget(Coord):
        __match_args__ = ("target_ms",)
        def __new__(cls, target_ms: int) -> Coord.AdaptiveTarget: ...
        @property
        def target_ms(self) -> int: ...

@disjoint_base
class Answer:
    """The scheduler's answer to a :class:`Coord` request."""

    @final
    class Done(Answer):
        __match_args__ = ()
        def __new__(cls) -> Answer.Done: ...

    @final
    class Items(Answer):
        __match_args__ = ("items",)
        def __new__(cls, items: Sequence[_FramesIn]) -> Answer.Items: ...
        @property
        def items(self) -> list[_FramesOut]: ...

    @final
    class Count(Answer):
        __match_args__ = ("n",)
        def __new__(cls, n: int) -> Answer.Count: ...
        @property
        def n(self) -> int: ...

    @final
    class Flag(Answer):
        __match_args__ = ("value",)
        def __new__(cls, value: bool) -> Answer.Flag: ...
        @property
        def value(self) -> bool: ...

    @final
    class Names(Answer):
        __match_args__ = ("names",)
        def __new__(cls, names: Sequence[str]) -> Answer.Names: ...
        @property
        def names(self) -> list[str]: ...

    @final
    class Map(Answer):
        __match_args__ = ("entries",)
        def __new__(cls, entries: Sequence[tuple[str, Sequence[str]]]) -> Answer.Map: ...
        @property
        def entries(self) -> list[tuple[str, list[str]]]: ...

    @final
    class Metadata(Answer):
        __match_args__ = ("entries",)
        def __new__(
            cls, entries: Sequence[tuple[Sequence[str], _FramesIn | None]]
        ) -> Answer.Metadata: ...
        @property
        def entries(self) -> list[tuple[list[str], _FramesOut | None]]: ...

    @final
    class TimedOut(Answer):
        __match_args__ = ()
        def __new__(cls) -> Answer.TimedOut: ...

    @final
    class Missing(Answer):
        __match_args__ = ()
        def __new__(cls) -> Answer.Missing: ...

    @final
    class Exists(Answer):
        __match_args__ = ()
        def __new__(cls) -> Answer.Exists: ...

    @final
    class Invalid(Answer):
        __match_args__ = ("message",)
        def __new__(cls, message: str) -> Answer.Invalid: ...
        @property
        def message(self) -> str: ...

    @final
    class UnknownKeys(Answer):
        __match_args__ = ("keys",)
        def __new__(cls, keys: Sequence[str]) -> Answer.UnknownKeys: ...
        @property
        def keys(self) -> list[str]: ...

    @final
    class Story(Answer):
        __match_args__ = ("now", "entries")
        def __new__(cls, now: float, entries: Sequence[StoryRecord]) -> Answer.Story: ...
        @property
        def now(self) -> float: ...
        @property
        def entries(self) -> list[StoryRecord]: ...

@final
class StoryRecord:
    """One transition of a task on the scheduler (see ``Client.story``)."""

    @property
    def key(self) -> str: ...
    @property
    def start(self) -> str: ...
    @property
    def finish(self) -> str: ...
    @property
    def stimulus(self) -> str: ...
    @property
    def time(self) -> float: ...

@disjoint_base
class RunAnswer:
    """One worker's answer to a ``Client.run`` call."""

    @final
    class Value(RunAnswer):
        __match_args__ = ("frames",)
        def __new__(cls, frames: _FramesIn) -> RunAnswer.Value: ...
        @property
        def frames(self) -> _FramesOut: ...

    @final
    class Raised(RunAnswer):
        __match_args__ = ("error",)
        def __new__(cls, error: TaskError) -> RunAnswer.Raised: ...
        @property
        def error(self) -> TaskError: ...

    @final
    class Unreachable(RunAnswer):
        __match_args__ = ("message",)
        def __new__(cls, message: str) -> RunAnswer.Unreachable: ...
        @property
        def message(self) -> str: ...

@disjoint_base
class ControlItem:
    """Work for a worker's Python side that is not a task."""

    @final
    class Run(ControlItem):
        __match_args__ = ("id", "call")
        def __new__(cls, id: int, call: _FramesIn) -> ControlItem.Run: ...
        @property
        def id(self) -> int: ...
        @property
        def call(self) -> _FramesOut: ...

    @final
    class Freed(ControlItem):
        __match_args__ = ("keys",)
        def __new__(cls, keys: Sequence[str]) -> ControlItem.Freed: ...
        @property
        def keys(self) -> list[str]: ...

    @final
    class Upload(ControlItem):
        __match_args__ = ("name", "data")
        def __new__(cls, name: str, data: bytes) -> ControlItem.Upload: ...
        @property
        def name(self) -> str: ...
        @property
        def data(self) -> bytes: ...

    @final
    class Plugin(ControlItem):
        __match_args__ = ("name", "plugin")
        def __new__(cls, name: str, plugin: _FramesIn) -> ControlItem.Plugin: ...
        @property
        def name(self) -> str: ...
        @property
        def plugin(self) -> _FramesOut: ...

    @final
    class Joined(ControlItem):
        __match_args__ = ()
        def __new__(cls) -> ControlItem.Joined: ...

    @final
    class Closed(ControlItem):
        __match_args__ = ()
        def __new__(cls) -> ControlItem.Closed: ...

# ----- the client core --------------------------------------------------------

@final
class CompletionQueue:
    def __new__(cls) -> CompletionQueue: ...
    def __len__(self) -> int: ...
    def pop(self, timeout: float | None = None) -> str | None: ...
    def drain(self) -> list[str]: ...
    def push(self, key: str) -> None: ...

@final
class ClientCore:
    def __new__(
        cls,
        address: str,
        timeout: float = 10.0,
        name: str = ...,
        token: str | None = None,
        tls: _TlsArg = None,
    ) -> ClientCore: ...
    @property
    def address(self) -> str: ...
    @property
    def dashboard(self) -> str | None: ...
    def task_stream(
        self, since: int = 0, limit: int = 100000, timeout: float = 10.0
    ) -> tuple[list[dict[str, object]], int]: ...
    def submit(
        self,
        functions: Sequence[FunctionDef],
        options: Sequence[TaskOptions],
        tasks: Sequence[TaskSpec],
        last: bool | None = None,
    ) -> int: ...
    def submit_graph_part(
        self, part: GraphPart, options: Sequence[TaskOptions], last: bool
    ) -> int: ...
    def preload(self, modules: Sequence[str]) -> None: ...
    def has_function(self, hash: int) -> bool: ...
    def add_ref(self, key: str) -> None: ...
    def drop_ref(self, key: str) -> None: ...
    def cancel(self, keys: Sequence[str]) -> None: ...
    def upload(self, name: str, data: Buffer) -> None: ...
    def register_plugin(self, name: str, plugin: _FramesIn | None) -> None: ...
    def broken(self) -> str | None: ...
    def keys(self) -> list[str]: ...
    def refcount(self, key: str) -> int: ...
    def retry(self, keys: Sequence[str]) -> None: ...
    def status(self, key: str) -> str | None: ...
    def result_info(self, key: str) -> tuple[str, int] | None: ...
    def error(self, key: str) -> TaskError | None: ...
    def watch(self, keys: Sequence[str], queue: CompletionQueue) -> None: ...
    def wait(self, keys: Sequence[str], timeout: float | None = None) -> bool: ...
    def first_error(self, keys: Sequence[str]) -> str | None: ...
    def gather(
        self, keys: Sequence[str], timeout: float | None = None, direct: bool = True
    ) -> list[Outcome] | None: ...
    def identify(self, timeout: float = 10.0) -> Identity: ...
    def set_limit(
        self,
        name: str,
        concurrency: int | None = None,
        rate: float | None = None,
        burst: float | None = None,
    ) -> None: ...
    def who_has(self, key: str) -> list[str]: ...
    def workers(self) -> list[WorkerInfo]: ...
    def wait_for_workers(
        self, n: int, timeout: float | None = None, without: Sequence[str] = ...
    ) -> bool: ...
    def request(self, op: Coord, timeout: float | None = None) -> Answer: ...
    def next_published(self, sub: int, timeout: float | None = None) -> _FramesOut | None: ...
    def buffered(self, sub: int) -> int: ...
    def scheduler_identity(self) -> tuple[str, float]: ...
    def put_on_workers(
        self,
        puts: Sequence[tuple[str, Sequence[tuple[str, _FramesIn]]]],
        timeout: float,
        direct: bool = True,
    ) -> list[str | None]: ...
    def run_on_workers(
        self,
        workers: Sequence[str],
        call: _FramesIn,
        timeout: float | None = None,
        direct: bool = True,
    ) -> list[tuple[str, RunAnswer]]: ...
    def shutdown_cluster(self) -> None: ...
    def close(self) -> None: ...

# ----- the scheduler ----------------------------------------------------------

@final
class SchedulerConfig:
    def __new__(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        dashboard: str | None = None,
        worker_ttl: float | None = ...,
        allowed_failures: int = 3,
        token: str | None = None,
        tls: _TlsArg = None,
        lease_timeout: float | None = ...,
        client_timeout: float | None = ...,
    ) -> SchedulerConfig: ...

@final
class Scheduler:
    def __new__(cls, config: SchedulerConfig) -> Scheduler: ...
    @property
    def address(self) -> str: ...
    @property
    def dashboard(self) -> str | None: ...
    def stop(self) -> None: ...

def run_scheduler(
    config: SchedulerConfig, on_ready: Callable[[str, str | None], object]
) -> None: ...
def dashboard_asset(name: str) -> str | None: ...
def key_prefix(key: str) -> str: ...

# ----- the worker runtime -----------------------------------------------------

@final
class WorkerRuntime:
    def __new__(
        cls,
        scheduler: str,
        nthreads: int = 1,
        name: str | None = None,
        listen_host: str | None = None,
        listen_ports: tuple[int, int] = ...,
        timeout: float = 30.0,
        memory_limit: int = 0,
        max_threads: int = 0,
        resources: Sequence[tuple[str, float]] = ...,
        token: str | None = None,
        tls: _TlsArg = None,
        fractions: tuple[float | None, float | None, float | None, float | None] = ...,
        spill_root: str | None = None,
        whole_process: bool = False,
        kill_on_leave: bool = False,
    ) -> WorkerRuntime: ...
    @property
    def address(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def scheduler(self) -> str: ...
    @property
    def leaving(self) -> str | None: ...
    @property
    def nthreads(self) -> int: ...
    def begin(self, id: int) -> None: ...
    def set_importing(self, on: bool) -> None: ...
    def stored_bytes(self) -> tuple[int, int]: ...
    def next_task(self) -> ExecutorTask | None: ...
    def finish(
        self,
        id: int,
        key: str,
        frames: _FramesIn,
        type_name: str,
        duration: float,
        holds_futures: bool = False,
    ) -> None: ...
    def finish_held(
        self,
        id: int,
        key: str,
        value: Any,
        nbytes: int,
        type_name: str,
        duration: float,
    ) -> None: ...
    def secede(self, id: int) -> None: ...
    def rejoin(self, id: int) -> None: ...
    def watch(self, key: str) -> bool: ...
    def next_control(self, timeout: float) -> ControlItem | None: ...
    def reply_value(self, id: int, frames: _FramesIn) -> None: ...
    def reply_error(self, id: int, error: TaskError) -> None: ...
    def fail(self, id: int, error: TaskError, retryable: bool = True) -> None: ...
    def reschedule(self, id: int) -> None: ...
    def hand_off(self, id: int) -> None: ...
    def start_pacer(
        self,
        spawn: Callable[[], object],
        cancel: Callable[[list[int]], object],
        preload: Callable[[list[str]], object],
    ) -> None: ...
    def busy(self) -> bool: ...
    def function(self, hash: int) -> bytes | None: ...
    def close(self) -> None: ...
    def wait_closed(self) -> None: ...

@final
class WorkerPool:
    def __new__(
        cls,
        n: int,
        program: str,
        args: Sequence[str],
        env: Sequence[tuple[str, str]],
        stdin_line: str | None = None,
        template: Sequence[str] | None = None,
    ) -> WorkerPool: ...
    @property
    def restarts(self) -> int: ...
    def add(self, n: int) -> None: ...
    def retire(self, pids: Sequence[int]) -> list[int]: ...
    def unretire(self, pids: Sequence[int]) -> list[int]: ...
    def pids(self) -> list[int]: ...
    def stop_restarting(self) -> None: ...
    def close(self, timeout: float = 2.0) -> None: ...

RESTART_EXIT_CODE: int

def total_memory() -> int: ...
def exit_on_stdin_eof() -> None: ...
def die_with_parent(expected_parent: int | None = None) -> None: ...

# ----- helpers ----------------------------------------------------------------

def hash_bytes(data: Buffer) -> int: ...
def strip_scheme(address: str) -> str: ...
def in_scheme(scheme: str, address: str) -> str: ...
def scheme(tls: bool) -> str: ...
def token(func: int, frames: _FramesIn, deps: Sequence[str] = ...) -> str: ...
def temporary_certificates() -> tuple[str, str, str]: ...
def recent_logs(n: int | None = None) -> list[tuple[str, str]]: ...
def log_line(level: str, message: str) -> None: ...
