"""The worker process: ``shoal worker tcp://scheduler:port --nthreads N``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from .. import _engine
from ..core import memory as memory_
from ..core import security
from ..core.preload import Preloads
from ..core.settings import setting
from ..dask import config as dask_config
from . import command_line, task_context
from .executor import Executors
from .options import WorkerOptions, extend_sys_path, pre_spawn_environ
from .uploads import private_root, remove_stale

#: This process's ``shoal worker`` arguments (None until it starts as one).
_argv: list[str] | None = None
_executors: Executors | None = None
#: The cluster's token and TLS (kept out of this process's environment,
#: where tasks would see them).
_security: security.Security | None = None


def is_process() -> bool:
    """Whether this process is a worker started by :func:`main`."""
    return _argv is not None


def restart_process() -> None:
    """Replace this worker process by a fresh one with the same arguments:
    its connections close, so the scheduler sees it leave, and the new one
    connects as a new worker. Under a pool (a local cluster, ``--nworkers``)
    the process exits asking for a fresh one, which the pool starts at once
    (a fork of its template, with the client's packages imported); a worker
    started on its own becomes a new interpreter (the same pid).

    Raises
    ------
    RuntimeError
        In a process that is not a worker started by ``shoal worker``.

    """
    if _argv is None:
        raise RuntimeError("this worker is not a worker process of its own")
    if _executors is not None:
        _executors.uploads.remove()  # exec skips atexit
    sys.stdout.flush()
    sys.stderr.flush()
    if "--lifeline" in _argv:
        os._exit(_engine.RESTART_EXIT_CODE)
    # The credentials travel in a pipe of their own now: stdin stays the
    # lifeline and is not read again, and the environment holds no secret.
    argv = [a for a in _argv if a != "--credentials-stdin"]
    argv = command_line.without_option(argv, "--credentials-fd")
    if _security is not None:
        line, _ = security.worker_stdin(_security)
        argv += ["--credentials-fd", str(security.pipe_with(line))]
    os.execve(sys.executable, [sys.executable, "-m", "shoal.worker", *argv], dict(os.environ))


def _task_client() -> Any:
    """The client of the worker running the calling task (made on first
    use, shared by its tasks).
    """
    worker = task_context.current_worker()
    if worker is None:
        raise RuntimeError("no task runs on this thread")
    return worker.client()


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m shoal.worker`` and ``shoal worker``.

    Parameters
    ----------
    argv
        The command line after ``shoal worker`` (``sys.argv[1:]`` if None).

    """
    # Dask's pre-spawn environment (OMP_NUM_THREADS=1, ...) for a worker
    # started on its own: before any task imports a BLAS. A local cluster's
    # workers have it from their start; a variable set already is kept.
    for name, value in pre_spawn_environ().items():
        os.environ.setdefault(name, value)
    parser = argparse.ArgumentParser(prog="shoal worker", description="Start a shoal worker.")
    parser.add_argument(
        "scheduler",
        nargs="?",
        default=None,
        help="scheduler address, e.g. tcp://10.0.0.5:8786 (tls:// with TLS); or --scheduler-file",
    )
    parser.add_argument(
        "--nthreads",
        type=int,
        default=None,
        help="executor threads (default: the cores shared among --nworkers, as Dask)",
    )
    parser.add_argument("--name", default=None, help="worker name (default: its address)")
    parser.add_argument("--listen-host", default=None, help="host to serve data on")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to keep trying to reach the scheduler"
    )
    parser.add_argument(
        "--max-threads",
        type=int,
        default=None,
        help="most tasks run at once while they wait on I/O (default: 16 per core, at most 64; "
        "equal to --nthreads turns the overlap off)",
    )
    parser.add_argument(
        "--resources",
        default="",
        help='abstract resources this worker offers, e.g. "GPU=2,MEM=10e9"; tasks submitted '
        "with resources= run only where theirs are free",
    )
    security.add_token_options(parser, "the cluster's token")
    security.add_tls_options(parser)
    security.add_stdin_option(parser)
    parser.add_argument(
        "--memory-limit",
        default="auto",
        help="memory this worker may use: a size like 4GiB, a fraction of the machine's, "
        "'auto' (the machine's) or 0 for no limit (default auto)",
    )
    for step, what in (
        ("target", "spill results to disk above this fraction of the limit"),
        ("spill", "spill results while the process uses more than this fraction"),
        ("pause", "start no task while the process uses more than this fraction"),
        ("terminate", "restart while the process uses more than this fraction"),
    ):
        parser.add_argument(
            f"--memory-{step}",
            default=None,
            metavar="FRACTION",
            help=f"{what}; 'off' turns it off (default: Dask's "
            f"distributed.worker.memory.{step}, {memory_.DEFAULTS[step]})",
        )
    parser.add_argument(
        "--local-directory",
        default=None,
        help="where this worker spills results and keeps uploaded files "
        "(default: the system's temporary directory)",
    )
    command_line.add_dask_options(parser)
    parser.add_argument("--lifeline", action="store_true", help=argparse.SUPPRESS)
    global _argv, _executors, _security
    _argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(_argv)
    try:
        processes, auto_threads = command_line.nworkers(args.nworkers, os.cpu_count() or 1)
        nthreads = args.nthreads or auto_threads or max(1, (os.cpu_count() or 1) // processes)
        listen_ports = command_line.ports(args.worker_port)
        listen_host = args.listen_host
        if args.interface is not None:
            listen_host = command_line.interface_address(args.interface)
        timeout = args.timeout if args.death_timeout is None else args.death_timeout
        life = command_line.lifetime(args.lifetime, args.lifetime_stagger)
        if life is not None and processes > 1 and not args.lifetime_restart:
            raise ValueError(
                "with --nworkers, a worker whose lifetime ends is started again by the "
                "supervisor: add --lifetime-restart"
            )
        preloads = (
            Preloads(args.preload)
            if args.preload
            else Preloads(
                setting("distributed.worker.preload", []),
                setting("distributed.worker.preload-argv", None),
            )
        )
        if args.scheduler is None:
            if args.scheduler_file is None:
                raise ValueError("give the scheduler's address, or --scheduler-file")
            args.scheduler = command_line.read_scheduler_file(args.scheduler_file, timeout)
        options = WorkerOptions.parse(
            nthreads=nthreads,
            max_threads=args.max_threads,
            memory_limit=_limit_arg(args.memory_limit),
            resources=args.resources,
            local_directory=args.local_directory,
            **{
                step: getattr(args, f"memory_{step}")
                for step in memory_.DEFAULTS
                if getattr(args, f"memory_{step}") is not None
            },
        )
        security.apply_stdin_credentials(args)
        token = security.given_token(args.token, args.token_file)
        credentials = security.given_tls(args, "worker", token)
        tls = credentials.tls_for("worker")
    except (ValueError, TimeoutError, ImportError) as e:
        parser.error(str(e))
    if processes > 1:
        # A supervisor of `processes` workers, each with this command line.
        child = command_line.without_option(_argv, "--nworkers")
        child = command_line.without_option(child, "--nthreads") + ["--nthreads", str(nthreads)]
        child = command_line.without_option(child, "--credentials-fd")
        child = [a for a in child if a != "--credentials-stdin"]
        line, options = security.worker_stdin(credentials)
        command_line.supervise(processes, child + options, line)
        return
    # Tasks and the processes they start need not see them.
    os.environ.pop(security.TOKEN_ENV, None)
    security.pop_tls_environment()
    _security = credentials
    # A client a task makes (get_client, worker_client) presents them.
    security.remember(args.scheduler, credentials)
    if args.lifeline:
        _engine.exit_on_stdin_eof()
        parent = os.environ.get("SHOAL_PARENT_PID")
        _engine.die_with_parent(int(parent) if parent else None)
    # Ctrl-C or SIGTERM end the process at once: the scheduler notices and
    # reruns its tasks elsewhere.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    extend_sys_path()
    # dask collections a task computes run on the cluster, as in Dask.
    dask_config.use_the_cluster_in_tasks(_task_client)
    try:
        root = private_root(options.local_directory)
        # What workers killed earlier left behind.
        remove_stale(root)
        rt = options.start_runtime(
            args.scheduler,
            str(root),
            name=args.name,
            listen_host=listen_host,
            listen_ports=listen_ports,
            timeout=timeout,
            token=token,
            tls=tls,
            whole_process=True,
            kill_on_leave=args.lifeline,
        )
    except (OSError, ValueError) as e:
        print(f"shoal worker: {e}", file=sys.stderr)
        sys.exit(1)
    _executors = Executors(rt, options.nthreads, root, options.memory_limit, preloads)
    lifetime_ended = threading.Event()
    if life is not None:
        timer = threading.Timer(
            life, command_line.end_of_life, (rt, _executors.worker, lifetime_ended)
        )
        timer.daemon = True
        timer.start()
    rt.wait_closed()
    _executors.uploads.remove()
    sys.stdout.flush()
    sys.stderr.flush()
    if lifetime_ended.is_set() and args.lifetime_restart:
        restart_process()  # a fresh process takes its place, as its lifetime ended
    if rt.leaving is not None:
        # Over its memory: a fresh process takes its place. Under a
        # supervisor (`--lifeline`) the engine has already ended this one;
        # started by hand, it starts itself again.
        restart_process()
    # Executor threads may be inside user code; do not wait for them.
    os._exit(0)


def _limit_arg(text: str) -> object:
    """``--memory-limit`` as :func:`parse_memory_limit` takes it: a
    fraction (``0.5``) is a float, a size stays text.
    """
    try:
        value = float(text)
    except ValueError:
        return text
    return value if 0 < value <= 1 and "." in text else text
