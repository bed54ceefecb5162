"""Warm workers: a local cluster's workers are forks of a template that
imported what the client had, so they import nothing while tasks run; what
the client imports later warms the template, so workers that restart or
join start with it. A worker started on its own imports in the background.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time

import pytest

from shoal import Client

from conftest import processes, until, wait_for_exit
from costly_import import COST, importers
from tasks import wait_for_module


@pytest.fixture
def import_log(tmp_path, monkeypatch):
    """The log the costly modules write to, and them unimported after the
    test (later clusters would ship them to their workers)."""
    log = str(tmp_path / "imports")
    monkeypatch.setenv("SHOAL_TEST_IMPORT_LOG", log)
    names = ("warm_before", "warm_after", "warmable", "threaded_import", "hanging_import")
    for name in names:
        sys.modules.pop(name, None)
    yield log
    for name in names:
        sys.modules.pop(name, None)


def _has(name):
    return name in sys.modules


def _cpu_so_far():
    """This process's CPU seconds since it started (a fork starts at zero)."""
    t = os.times()
    return t.user + t.system


def _spin(seconds):
    """Use ``seconds`` of this thread's CPU; return it and what the whole
    process used meanwhile."""
    process = _cpu_so_far()
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass
    return time.thread_time() - start, _cpu_so_far() - process


def test_a_fresh_worker_has_the_clients_packages_without_importing_them(import_log):
    importlib.import_module("warm_before")
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        # The first tasks find the package there and no import running.
        has = c.gather([c.submit(_has, "warm_before", pure=False) for _ in range(4)])
        assert all(has)
        workers = c.run(os.getpid)
        spent = c.run(_cpu_so_far)
    who = importers(import_log, "warm_before") - {os.getpid()}
    assert len(who) == 1, "one process (the template) imported it for every worker"
    assert not who & set(workers.values()), "no worker imported it itself"
    for address, cpu in spent.items():
        assert cpu < COST, f"{address} used {cpu:.2f} s of CPU: less than one import of it"


def test_a_package_imported_later_warms_the_template_not_the_running_workers(import_log):
    with Client(n_workers=1, threads_per_worker=1, dashboard_address=None) as c:
        ((address, pid),) = c.run(os.getpid).items()
        importlib.import_module("warm_after")
        # The next submission tells the worker, which passes it on to the
        # template; a task running meanwhile has the process to itself.
        task_cpu, process_cpu = c.submit(_spin, 2 * COST, pure=False).result()
        until(
            lambda: importers(import_log, "warm_after") - {os.getpid()},
            what="the template imported it",
        )
        assert process_cpu - task_cpu < COST, "nothing imported beside the task"
        assert c.submit(_has, "warm_after", pure=False).result() is False
        assert pid not in importers(import_log, "warm_after")
        # A worker that takes its place starts with it.
        os.kill(pid, signal.SIGKILL)
        assert wait_for_exit([pid], 10) == []
        c.wait_for_workers(1, timeout=30, without=[address])
        assert c.submit(_has, "warm_after", pure=False).result() is True
        (fresh,) = c.run(os.getpid).values()
        assert fresh not in importers(import_log, "warm_after")
        # So do workers the cluster adds, and those of Client.restart.
        c.cluster.scale(2)
        c.wait_for_workers(2, timeout=30)
        assert all(c.run(_has, "warm_after").values())
        c.restart()
        assert all(c.run(_has, "warm_after").values())
    assert len(importers(import_log, "warm_after") - {os.getpid()}) == 1


def _forked():
    from shoal.worker import template

    return template.share([])


def _ppid():
    return os.getppid()


def _random():
    import numpy as np

    return float(np.random.random())


def test_forked_workers_draw_different_random_numbers():
    pytest.importorskip("numpy")
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        assert all(c.run(_forked).values())
        draws = c.run(_random)
    assert len(set(draws.values())) == 2, "each fork reseeded numpy's global generator"


def test_a_package_that_starts_a_thread_makes_workers_new_processes(import_log):
    importlib.import_module("threaded_import")
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        # The template refused to fork; the pool started interpreters.
        assert not any(c.run(_forked).values())
        assert set(c.run(_ppid).values()) == {os.getpid()}
        assert c.gather(c.map(abs, [-1, -2], pure=False)) == [1, 2]


def test_a_template_that_dies_takes_its_workers_and_the_pool_starts_new_ones():
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        assert all(c.run(_forked).values())
        parents = set(c.run(_ppid).values())
        assert len(parents) == 1 and os.getpid() not in parents
        (template,) = parents
        before = list(c.scheduler_info()["workers"])
        os.kill(template, signal.SIGKILL)
        assert wait_for_exit([template], 10) == []
        c.wait_for_workers(2, timeout=30, without=before)
        assert set(c.run(_ppid).values()) == {os.getpid()}, "new processes of the pool's own"
        assert c.gather(c.map(abs, [-1, -2], pure=False)) == [1, 2]
        assert c.cluster.restarts == 2


def _templates_of(pid):
    """Live templates started by process ``pid``."""
    return [p for p, ppid, argv in processes() if ppid == pid and b"shoal.worker.template" in argv]


def test_a_template_stuck_importing_fails_the_start_in_time_and_is_killed(import_log):
    from shoal import LocalCluster

    importlib.import_module("hanging_import")
    with pytest.raises(TimeoutError, match="did not start within"):
        LocalCluster(n_workers=1, dashboard_address=None, start_timeout=3)
    until(lambda: not _templates_of(os.getpid()), what="the stuck template being killed")


def test_a_worker_started_on_its_own_imports_what_the_client_imported(import_log):
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "shoal", "scheduler", "--port", "0", "--no-dashboard"],
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = None
    try:
        address = next(w for w in scheduler.stdout.readline().split() if w.startswith("tcp://"))
        worker = subprocess.Popen([sys.executable, "-m", "shoal", "worker", address])
        with Client(address, set_as_default=False) as c:
            c.wait_for_workers(1, timeout=30)
            # Nothing imported it anywhere yet: the worker cannot have it.
            assert c.submit(wait_for_module, "warmable", 0.0, pure=False).result() is False
            importlib.import_module("warmable")
            # ... and with the next submission the worker imports it too.
            assert c.submit(wait_for_module, "warmable", pure=False).result() is True
    finally:
        for p in (worker, scheduler):
            if p is not None:
                p.kill()
                p.wait()
