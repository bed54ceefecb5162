"""Shared fixtures: real local clusters, and helpers to watch processes."""

from __future__ import annotations

import os
import select
import time

import pytest

from shoal import Client

# Dask's test fixtures by shoal (c, s, a, b, loop, ...), as a Dask user's
# conftest would take them; this file's own ``client`` stays the shared one.
pytest_plugins = ["shoal.utils_test"]

# Skips a CI run may take: what no CI machine can be expected to offer. Any
# other skip under CI=true fails the run (a test that did not run proved
# nothing); the skips taken are listed at the end either way.
ALLOWED_SKIPS = ("needs 16 GiB of memory",)

_skips: list[tuple[str, str]] = []


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def pytest_collectreport(report):
    if report.skipped:
        _skips.append((report.nodeid, _skip_reason(report)))


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.append((report.nodeid, _skip_reason(report)))


def _disallowed() -> list[tuple[str, str]]:
    return [(n, r) for n, r in _skips if not any(a in r for a in ALLOWED_SKIPS)]


def pytest_terminal_summary(terminalreporter):
    if not _skips:
        return
    strict = os.environ.get("CI") == "true"
    terminalreporter.section("skipped tests")
    for nodeid, reason in _skips:
        allowed = any(a in reason for a in ALLOWED_SKIPS)
        mark = "allowed" if allowed else ("NOT ALLOWED under CI" if strict else "skipped")
        terminalreporter.write_line(f"{mark}: {nodeid}: {reason}")
    if strict and _disallowed():
        terminalreporter.write_line(
            f"{len(_disallowed())} test(s) skipped for a reason not in ALLOWED_SKIPS "
            "(tests/conftest.py): this run fails"
        )


def pytest_sessionfinish(session, exitstatus):
    passing = (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    if os.environ.get("CI") == "true" and _disallowed() and session.exitstatus in passing:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module")
def client():
    """A two-worker, one-thread-each local cluster shared by a test module."""
    with Client(n_workers=2, threads_per_worker=1) as c:
        yield c


@pytest.fixture
def fresh_client():
    """A cluster of its own, for tests that kill workers."""
    with Client(n_workers=2, threads_per_worker=1) as c:
        yield c


def processes():
    """Every live process as ``(pid, parent pid, argv)``, argv as bytes (a
    process that ends while it is read is left out)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        yield int(entry), ppid, argv


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its entry is left for its parent to reap.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def wait_for_exit(pids: list[int], timeout: float) -> list[int]:
    """Block until every pid has exited or ``timeout`` passes; return the
    pids still alive. Uses pidfds, so it wakes on the exit itself."""
    fds = {}
    for pid in pids:
        try:
            fds[os.pidfd_open(pid)] = pid
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + timeout
    try:
        while fds:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(list(fds), [], [], left)
            for fd in ready:
                os.close(fd)
                del fds[fd]
    finally:
        for fd in fds:
            os.close(fd)
    # By the pidfds, not by number: a pid that exited may already belong to
    # a new process (pids wrap around on a busy machine).
    return [p for p in pids if p in fds.values()]


def run_async(coro, timeout: float = 60.0):
    """Run a test's coroutine on a fresh event loop, failing it after
    ``timeout`` seconds instead of hanging."""
    import asyncio

    return asyncio.run(asyncio.wait_for(coro, timeout))


def until(predicate, timeout: float = 20.0, what: str = "the condition"):
    """Poll ``predicate`` until it returns something true (returned) or
    ``timeout`` passes (the test fails naming ``what``). For state another
    process reports on its own clock, such as a worker's memory."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout} s")
        time.sleep(0.02)
