"""A shoal worker: the process (or threads) that run users' functions.

The Rust runtime holds the scheduler connection, the data store and the data
server; the executor threads here pull tasks from it, call the user's
function, and hand back the pickled result. Run as
``python -m shoal.worker tcp://scheduler:port --nthreads N``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from typing import Any

from . import _engine, _serialize


def _format_traceback(exc: BaseException) -> str:
    tb = exc.__traceback__
    # Drop the executor's own frame: the user's code starts below it.
    if tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return "Traceback (most recent call last):\n" + "".join(traceback.format_tb(tb))


def _pickle_exception(exc: BaseException) -> list[bytes]:
    try:
        frames = _serialize.dumps(exc)
        pickle.loads(frames[0], buffers=frames[1:])  # must round-trip on the client
        return frames
    except Exception:
        return []


def _report_failure(rt: Any, tid: int, exc: BaseException) -> None:
    rt.fail(tid, _pickle_exception(exc), type(exc).__name__, str(exc), _format_traceback(exc))


def _executor(rt: Any, functions: dict[int, Any]) -> None:
    """Run tasks until the runtime shuts down."""
    loads = _serialize.loads
    dumps = _serialize.dumps
    perf_counter = time.perf_counter
    set_deps = _serialize.set_dependency_values
    while True:
        task = rt.next_task()
        if task is None:
            return
        tid, key, fh, fbytes, arg_frames, deps = task
        try:
            fn = functions.get(fh)
            if fn is None:
                data = fbytes if fbytes is not None else rt.function(fh)
                if data is None:
                    raise RuntimeError(f"the function of task {key} never reached this worker")
                fn = functions[fh] = pickle.loads(data)
            if deps:
                set_deps({k: loads(f) for k, f in deps})
            try:
                args, kwargs = loads(arg_frames)
            finally:
                if deps:
                    set_deps(None)
            start = perf_counter()
            result = fn(*args, **kwargs)
            duration = perf_counter() - start
        except BaseException as e:  # the task's failure, whatever it is, goes back
            _report_failure(rt, tid, e)
            continue
        try:
            frames = dumps(result)
        except Exception as e:
            err = TypeError(
                f"Could not serialize the result of task {key} "
                f"(type {type(result).__module__}.{type(result).__qualname__}): {e}"
            )
            _report_failure(rt, tid, err)
            continue
        rt.finish(tid, key, frames, type(result).__name__, duration)


def start_executors(rt: Any, nthreads: int) -> list[threading.Thread]:
    """Start ``nthreads`` daemon executor threads pulling from ``rt``."""
    functions: dict[int, Any] = {}
    threads = []
    for i in range(nthreads):
        t = threading.Thread(
            target=_executor, args=(rt, functions), name=f"shoal-executor-{i}", daemon=True
        )
        t.start()
        threads.append(t)
    return threads


def start_in_process(
    address: str, nthreads: int, name: str | None = None, memory_limit: int = 0
) -> Any:
    """Start a worker on threads of this process; returns its runtime."""
    rt = _engine.WorkerRuntime(address, nthreads, name, None, 10.0, memory_limit)
    start_executors(rt, nthreads)
    return rt


_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(text: str | int) -> int:
    """``"4GiB"`` -> 4294967296; plain numbers are bytes."""
    if isinstance(text, int):
        return text
    s = text.strip().lower().replace(" ", "")
    number = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(number) :]
    if unit not in _UNITS or not number:
        raise ValueError(f"cannot read {text!r} as a size (examples: 1000000, 500MB, 4GiB)")
    return int(float(number) * _UNITS[unit])


def _extend_sys_path() -> None:
    """Make the modules the client could import importable here too."""
    extra = os.environ.get("SHOAL_SYS_PATH")
    if not extra:
        return
    for p in extra.split(os.pathsep):
        if p and p not in sys.path:
            sys.path.append(p)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m shoal.worker`` and ``shoal worker``."""
    parser = argparse.ArgumentParser(prog="shoal worker", description="Start a shoal worker.")
    parser.add_argument("scheduler", help="scheduler address, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--nthreads", type=int, default=1, help="executor threads (default 1)")
    parser.add_argument("--name", default=None, help="worker name (default: its address)")
    parser.add_argument("--listen-host", default=None, help="host to serve data on")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to keep trying to reach the scheduler"
    )
    parser.add_argument(
        "--memory-limit",
        default="0",
        help="memory this worker may use: bytes, or e.g. 4GiB, 500MB (default: the machine's)",
    )
    parser.add_argument("--lifeline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nthreads < 1:
        parser.error("--nthreads must be at least 1")
    try:
        memory_limit = parse_bytes(args.memory_limit)
    except ValueError as e:
        parser.error(str(e))
    if args.lifeline:
        _engine.exit_on_stdin_eof()
        parent = os.environ.get("SHOAL_PARENT_PID")
        _engine.die_with_parent(int(parent) if parent else None)
    # Ctrl-C or SIGTERM end the process at once: the scheduler notices and
    # reruns its tasks elsewhere.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _extend_sys_path()
    if os.environ.get("SHOAL_LOG"):
        _engine.init_logging(os.environ["SHOAL_LOG"])
    try:
        rt = _engine.WorkerRuntime(
            args.scheduler, args.nthreads, args.name, args.listen_host, args.timeout, memory_limit
        )
    except OSError as e:
        print(f"shoal worker: {e}", file=sys.stderr)
        sys.exit(1)
    start_executors(rt, args.nthreads)
    rt.wait_closed()
    sys.stdout.flush()
    sys.stderr.flush()
    # Executor threads may be inside user code; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
