"""The parts of ``shoal worker``'s command line that Dask's ``dask worker``
has too, so HPC job scripts and Helm charts can swap the command: the
scheduler from ``--scheduler-file``, ``--nworkers`` (several worker
processes under one supervisor), ``--worker-port`` and ``--interface``, and
``--preload``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any


def add_dask_options(parser: argparse.ArgumentParser) -> None:
    """Add Dask's ``dask worker`` options that shoal has."""
    parser.add_argument(
        "--scheduler-file",
        default=None,
        help="read the scheduler's address from this JSON file (as written by "
        "`shoal scheduler --scheduler-file`), waiting for it up to --timeout",
    )
    parser.add_argument(
        "--nworkers",
        default="1",
        help="worker processes to run, each started again if it dies (a number, or "
        "'auto': as LocalCluster splits the cores; default 1)",
    )
    parser.add_argument(
        "--worker-port",
        default=None,
        help="port (or range, 9000:9010) to serve data on (default: any free port)",
    )
    parser.add_argument(
        "--interface",
        default=None,
        help="network interface (like eth0) whose address to serve data on",
    )
    parser.add_argument(
        "--preload",
        action="append",
        default=[],
        help="a module, .py file or source text to run at start: its dask_setup(worker) "
        "is called once the worker is connected, dask_teardown(worker) as it closes "
        "(may be given more than once)",
    )
    parser.add_argument(
        "--lifetime",
        default=None,
        help="retire gracefully after this long (seconds or '1 hour'): its results "
        "move to other workers, then it exits (as Dask's)",
    )
    parser.add_argument(
        "--lifetime-stagger",
        default="0",
        help="spread --lifetime by up to this much either way, so workers started "
        "together do not all leave together",
    )
    parser.add_argument(
        "--lifetime-restart",
        action="store_true",
        help="start afresh (a new process) when the lifetime ends, instead of exiting",
    )
    parser.add_argument(
        "--death-timeout",
        type=float,
        default=None,
        help="Dask's name for --timeout: seconds to keep trying to reach the scheduler",
    )


def lifetime(text: str | None, stagger: str) -> float | None:
    """Seconds until this worker retires (``--lifetime``, spread at random by
    ``--lifetime-stagger``), or None.

    Raises
    ------
    ValueError
        For a duration that cannot be read.

    """
    import random

    from ..core.times import parse_timedelta

    if text is None:
        return None
    seconds = parse_timedelta(text)
    spread = parse_timedelta(stagger) or 0.0
    if seconds is None or seconds <= 0:
        raise ValueError(f"--lifetime must be a positive duration, not {text!r}")
    return max(0.0, seconds + random.uniform(-spread, spread))


def end_of_life(rt: Any, worker: Any, ended: Any) -> None:
    """Retire this worker through the scheduler (its results move to
    workers that stay); if it cannot be (it is the last one), close it.
    Sets the event ``ended`` first.
    """
    ended.set()
    try:
        worker.client().retire_workers([worker.address])
    except Exception:  # the scheduler is gone, or the client cannot connect
        pass
    rt.close()


def nworkers(text: str, cpus: int) -> tuple[int, int | None]:
    """``--nworkers`` as (processes, threads each if 'auto' chose them).

    Raises
    ------
    ValueError
        For anything but a whole number of 1 or more, or ``auto``.

    """
    from .options import processes_and_threads

    if text == "auto":
        processes, threads = processes_and_threads(cpus)
        return processes, threads
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"--nworkers must be a number or 'auto', not {text!r}") from None
    if n < 1:
        raise ValueError(f"--nworkers must be 1 or more, not {n}")
    return n, None


def ports(text: str | None) -> tuple[int, int]:
    """``--worker-port``: one port, or a range ``low:high`` (``(0, 0)``: any).

    Raises
    ------
    ValueError
        For anything else.

    """
    if text is None:
        return (0, 0)
    low, sep, high = text.partition(":")
    try:
        first = int(low)
        last = int(high) if sep else first
    except ValueError:
        raise ValueError(
            f"--worker-port must be a port or a range like 9000:9010, not {text!r}"
        ) from None
    if not (0 < first <= last <= 65535):
        raise ValueError(f"--worker-port {text!r} is not a port range within 1-65535")
    return (first, last)


def interface_address(name: str) -> str:
    """The IPv4 address of network interface ``name`` (Linux).

    Raises
    ------
    ValueError
        If there is no such interface, or it has no IPv4 address.

    """
    import fcntl
    import socket
    import struct

    known = [n for _, n in socket.if_nameindex()]
    if name not in known:
        raise ValueError(f"no network interface {name!r}; this machine has {known}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # SIOCGIFADDR: the interface's address
        packed = fcntl.ioctl(sock.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))
    except OSError:
        raise ValueError(f"network interface {name!r} has no IPv4 address") from None
    finally:
        sock.close()
    return socket.inet_ntoa(packed[20:24])


def read_scheduler_file(path: str, timeout: float) -> str:
    """The address in a scheduler file, waiting up to ``timeout`` seconds for
    it to appear (the scheduler may start after the worker's job).

    Raises
    ------
    TimeoutError
        If it did not appear in time.

    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                return str(json.load(f)["address"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no scheduler address in {path} within {timeout} s") from None
        time.sleep(0.1)


def supervise(n: int, argv: list[str], stdin_line: str) -> None:
    """Run ``n`` worker processes with ``argv`` (this command line without
    ``--nworkers``), each reading ``stdin_line`` (the credentials) first
    from its standard input and started again if it dies, until this
    process is told to stop (SIGTERM, Ctrl-C).
    """
    from .. import _engine

    stop = {"now": False}

    def ask_stop(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, ask_stop)
    signal.signal(signal.SIGINT, ask_stop)
    from . import template

    argv = [*argv, "--lifeline"]
    # The workers are forks of one template: what one learns the client
    # imported, the template imports for the workers started later.
    pool = _engine.WorkerPool(
        n,
        sys.executable,
        ["-m", "shoal.worker", *argv],
        [],
        stdin_line=stdin_line,
        template=template.arguments(argv, []),
    )
    try:
        while not stop["now"]:
            signal.pause()
    finally:
        pool.stop_restarting()
        pool.close(5.0)


def without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name`` and its value (``--name v`` or ``--name=v``)."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == name:
            skip = True
            continue
        if a.startswith(name + "="):
            continue
        out.append(a)
    return out
