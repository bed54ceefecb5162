"""Which of dask/distributed's own tests exercise only its public API.

A test is selected when, read statically (with the module-level helpers it
calls, transitively):

* every name it takes from a ``distributed`` module is public: exported by
  ``distributed`` (less the server classes ``Scheduler``, ``Worker``,
  ``Nanny`` and the low-level ``rpc``/``connect``/``Status``/``sync``), one of
  the client exceptions, or one of the generic helpers of
  ``distributed.utils_test`` (``gen_cluster``, ``inc``, ``slowinc``, ...);
  ``gen_cluster(Worker=Nanny)`` is allowed, it only asks for worker processes;
* it reads nothing of the scheduler and worker objects ``gen_cluster`` and
  the ``cluster`` fixtures hand it but their ``address`` and ``name``, and
  calls no RPC of Dask's scheduler (``client.scheduler.publish_list()``);
* it touches no private attribute (``x._anything``);
* it asks only for fixtures any client test has (``c``, ``client``, ``s``,
  ``a``, ``b``, ``loop``, ``tmp_path``, ``monkeypatch``, ...);
* it is not marked ``slow`` (skipped by Dask's own default run too).

The rules are deliberately strict: a test that reads an internal is left
out even when most of it is public.
"""

from __future__ import annotations

import ast
import dataclasses

#: The test files the comparison covers.
FILES = [
    "test_client.py",
    "test_as_completed.py",
    "test_client_executor.py",
    "test_actor.py",
    "test_locks.py",
    "test_multi_locks.py",
    "test_queues.py",
    "test_semaphore.py",
    "test_variable.py",
    "test_events.py",
    "test_publish.py",
    "test_worker_client.py",
    "test_dask_collections.py",
    "test_preload.py",
    "test_event_logging.py",
    "test_scheduler.py",
    "test_worker.py",
]

PUBLIC = {
    # distributed's exports that are a user's API (not its server classes)
    "Actor",
    "ActorFuture",
    "Adaptive",
    "BaseActorFuture",
    "CancelledError",
    "Client",
    "CompatibleExecutor",
    "CondaInstall",
    "Environ",
    "Event",
    "Future",
    "InstallPlugin",
    "KilledWorker",
    "LocalCluster",
    "Lock",
    "MultiLock",
    "NannyPlugin",
    "PipInstall",
    "Queue",
    "Reschedule",
    "SSHCluster",
    "SchedulerPlugin",
    "Security",
    "Semaphore",
    "TimeoutError",
    "UploadDirectory",
    "UploadFile",
    "Variable",
    "WorkerPlugin",
    "as_completed",
    "default_client",
    "fire_and_forget",
    "futures_of",
    "get_client",
    "get_task_metadata",
    "get_task_stream",
    "get_worker",
    "local_client",
    "performance_report",
    "print",
    "progress",
    "rejoin",
    "secede",
    "wait",
    "warn",
    "worker_client",
    "Pub",
    "Sub",
    # the client's exceptions
    "ClosedClientError",
    "FutureCancelledError",
    "FuturesCancelledError",
    # generic test helpers of distributed.utils_test
    "gen_cluster",
    "gen_test",
    "cluster",
    "inc",
    "dec",
    "mul",
    "div",
    "throws",
    "double",
    "slowinc",
    "slowdec",
    "slowdouble",
    "randominc",
    "slowadd",
    "slowsum",
    "slowidentity",
    "lock_inc",
    "block_on_event",
    "varying",
    "map_varying",
    "asyncinc",
    "poll_for",
    "async_poll_for",
    "nodebug",
    "raises_with_cause",
    # distributed.metrics.time is time.time; the platform flags
    "time",
    "LINUX",
    "MACOS",
    "WINDOWS",
}

#: Attributes with a leading underscore that are public protocols.
PUBLIC_UNDERSCORE = {"_repr_html_", "_ipython_display_", "_repr_mimebundle_"}

FIXTURES = {
    "c",
    "client",
    "s",
    "a",
    "b",
    "loop",
    "loop_in_thread",
    "client_secondary",
    "cleanup",
    "tmp_path",
    "tmpdir",
    "monkeypatch",
    "capsys",
    "capfd",
    "request",
    "tmp_path_factory",
}

#: What a test may read of the scheduler and workers it is handed.
SERVER_ATTRIBUTES = {"address", "name"}

#: Attributes of Dask's public objects that are not in their documented API
#: (what they hold is how Dask implements them).
INTERNAL_ATTRIBUTES = {
    "refresh_callback": "a Semaphore's lease refresher",
    "scheduler_comm": "the client's connection to the scheduler",
    "queue": "as_completed's internal queue",
}

#: What a task may use of the worker ``get_worker()`` returns.
WORKER_API = {
    "address",
    "name",
    "id",
    "nthreads",
    "log_event",
    "get_current_task",
    "local_directory",
    "plugins",
}


@dataclasses.dataclass
class Test:
    """One test function and why it is (or is not) selected."""

    file: str
    name: str
    is_async: bool
    reasons: list[str]

    @property
    def selected(self) -> bool:
        """Whether the test uses only the public API."""
        return not self.reasons


def is_distributed(module: str | None) -> str:
    """The ``distributed`` module an import names (``dask.distributed`` is
    ``distributed`` re-exported), or "" for any other module.
    """
    if module == "dask.distributed":
        return "distributed"
    if module is not None and (module == "distributed" or module.startswith("distributed.")):
        return module
    return ""


def _imported(tree: ast.Module) -> dict[str, str]:
    """Names a module takes from ``distributed`` modules: name -> module."""
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and is_distributed(node.module):
            for alias in node.names:
                names[alias.asname or alias.name] = is_distributed(node.module)
    return names


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    parts = []
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if isinstance(target, ast.Name):
        parts.append(target.id)
    return ".".join(reversed(parts))


def _gen_cluster(func: ast.AST) -> ast.Call | None:
    for dec in getattr(func, "decorator_list", []):
        if _decorator_name(dec) == "gen_cluster":
            return dec if isinstance(dec, ast.Call) else ast.Call(dec, [], [])
    return None


def _parametrized(func: ast.AST) -> set[str]:
    names: set[str] = set()
    for dec in getattr(func, "decorator_list", []):
        if _decorator_name(dec).endswith("mark.parametrize") and isinstance(dec, ast.Call):
            first = dec.args[0] if dec.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names |= {n.strip() for n in first.value.split(",")}
            elif isinstance(first, (ast.Tuple, ast.List)):
                names |= {e.value for e in first.elts if isinstance(e, ast.Constant)}
    return names


def _server_params(func: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[set[str], list[str]]:
    """The parameters bound to the scheduler and workers, and the rest."""
    params = [a.arg for a in func.args.args]
    call = _gen_cluster(func)
    if call is not None and func.args.vararg is not None:
        # (c, s, *workers)
        start = 1 if "client=True" in ast.unparse(call) else 0
        return set(params[start:]) | {func.args.vararg.arg}, params[:start]
    if call is None:
        servers = {p for p in params if p in {"s", "a", "b"}}
        return servers, params
    client = any(
        k.arg == "client" and isinstance(k.value, ast.Constant) and k.value.value
        for k in call.keywords
    )
    nthreads = next((k.value for k in call.keywords if k.arg == "nthreads"), None)
    if nthreads is None:
        count = 2
    elif isinstance(nthreads, (ast.List, ast.Tuple)):
        count = len(nthreads.elts)
    elif (
        isinstance(nthreads, ast.BinOp)
        and isinstance(nthreads.right, ast.Constant)
        and isinstance(nthreads.left, (ast.List, ast.Tuple))
    ):
        count = len(nthreads.left.elts) * int(nthreads.right.value)
    else:
        count = -1  # computed: every remaining positional parameter
    start = 1 if client else 0
    end = len(params) if count < 0 else start + 1 + count
    rest = params[:start] + params[end:]
    return set(params[start:end]), rest


class _Reader(ast.NodeVisitor):
    """Collects what a piece of code uses."""

    def __init__(self, servers: set[str]):
        self.servers = servers
        self.names: set[str] = set()
        self.problems: list[str] = []
        self.workers: set[str] = set()  # names bound to get_worker()

    def _parameters(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        names = {a.arg for a in node.args.args + node.args.kwonlyargs}
        if "dask_scheduler" in names:
            # run_on_scheduler hands it Dask's Scheduler object.
            self.problems.append("reads the scheduler object (dask_scheduler)")
        if "dask_worker" in names:
            # Client.run hands it the Worker: only its public part counts.
            self.workers.add("dask_worker")

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._parameters(node)
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._parameters(node)
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._parameters(node)
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = is_distributed(node.module)
        if module:
            for alias in node.names:
                if alias.name not in PUBLIC:
                    self.problems.append(f"uses {module}.{alias.name}")

    def visit_Assign(self, node: ast.Assign) -> None:
        if isinstance(node.value, ast.Call) and _decorator_name(node.value) == "get_worker":
            self.workers |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        value = node.value
        is_worker = (isinstance(value, ast.Call) and _decorator_name(value) == "get_worker") or (
            isinstance(value, ast.Name) and value.id in self.workers
        )
        if is_worker and node.attr not in WORKER_API:
            self.problems.append(f"reads the worker object's .{node.attr}")
        if node.attr in INTERNAL_ATTRIBUTES:
            self.problems.append(f"reads {INTERNAL_ATTRIBUTES[node.attr]} (.{node.attr})")
        if isinstance(value, ast.Subscript) and _decorator_name(value.value).endswith(".futures"):
            self.problems.append("reads the client's record of a future (client.futures[key])")
        private = node.attr.startswith("_") and not node.attr.startswith("__")
        if private and node.attr not in PUBLIC_UNDERSCORE:
            self.problems.append(f"private attribute .{node.attr}")
        if (
            isinstance(node.value, ast.Attribute)
            and node.value.attr == "scheduler"
            and node.attr not in SERVER_ATTRIBUTES
        ):
            self.problems.append(f"calls the scheduler's RPC .scheduler.{node.attr}")
        if isinstance(node.value, ast.Name) and node.value.id in self.servers:
            if node.attr not in SERVER_ATTRIBUTES:
                self.problems.append(f"reads {node.value.id}.{node.attr}")
            return
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.value, ast.Name) and node.value.id in self.servers:
            key = node.slice
            if not (isinstance(key, ast.Constant) and key.value == "address"):
                self.problems.append(f"reads {node.value.id}[...]")
            return
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.servers and isinstance(node.ctx, ast.Load):
            self.problems.append(f"hands {node.id} on")
        self.names.add(node.id)

    def visit_keyword(self, node: ast.keyword) -> None:
        # gen_cluster(Worker=Nanny) only asks for worker processes
        if node.arg == "Worker" and isinstance(node.value, ast.Name):
            return
        self.generic_visit(node)


def _cluster_targets(func: ast.AST) -> set[str]:
    """Names bound by ``with cluster() as (s, [a, b])``."""
    names: set[str] = set()
    for node in ast.walk(func):
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if _decorator_name(item.context_expr) == "cluster" and item.optional_vars:
                    for sub in ast.walk(item.optional_vars):
                        if isinstance(sub, ast.Name):
                            names.add(sub.id)
    return names


def analyse(file: str, source: str) -> list[Test]:
    """Every test function of one file, with the reasons it is left out."""
    tree = ast.parse(source)
    imported = _imported(tree)
    helpers: dict[str, ast.AST] = {
        node.name: node
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and not node.name.startswith("test_")
    }
    # module-level constants a test reads (their values may use Dask's
    # internals: NO_AMM in a config dict)
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    helpers.setdefault(target.id, node)
    tests: list[Test] = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if not node.name.startswith("test_"):
            continue
        reasons: list[str] = []
        servers, rest = _server_params(node)
        servers |= _cluster_targets(node)
        # a gen_cluster test defined inside the test (and called by it)
        for inner in ast.walk(node):
            if inner is not node and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _gen_cluster(inner) is not None:
                    servers |= _server_params(inner)[0]
        allowed = FIXTURES | _parametrized(node)
        for param in rest:
            if param not in allowed and param not in servers:
                reasons.append(f"fixture {param}")
        for dec in node.decorator_list:
            if _decorator_name(dec).endswith("mark.slow"):
                reasons.append("marked slow")
        # the test and the module's helpers it reaches
        seen: set[str] = set()
        todo: list[ast.AST] = [node]
        while todo:
            code = todo.pop()
            reader = _Reader(servers if code is node else set())
            reader.visit(code)
            reasons += reader.problems
            for name in reader.names:
                module = imported.get(name)
                if module is not None and name not in PUBLIC:
                    reasons.append(f"uses {module}.{name}")
                if name in helpers and name not in seen:
                    seen.add(name)
                    todo.append(helpers[name])
        tests.append(
            Test(file, node.name, isinstance(node, ast.AsyncFunctionDef), sorted(set(reasons)))
        )
    return tests
