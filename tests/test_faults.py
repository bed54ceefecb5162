"""Worker processes dying: nothing is lost, poison tasks are stopped."""

from __future__ import annotations

import os
import signal

import pytest

from shoal import KilledWorker, wait

from conftest import until, wait_for_exit
from tasks import append_line, big_bytes, die, die_first, inc, wait_for_file


def _pid_of(client, address):
    return client.scheduler_info()["workers"][address]["pid"]


def test_a_task_whose_worker_dies_runs_again_elsewhere(fresh_client, tmp_path):
    marker = tmp_path / "died-once"
    f = fresh_client.submit(die_first, str(marker))
    assert f.result(timeout=30) == "survived"
    assert marker.exists()
    # The pool hears of the death on its own (its worker's exit is reaped
    # by the template), not before the task ran again.
    until(lambda: fresh_client.cluster.restarts >= 1, what="the pool starting a worker again")


def test_a_task_that_keeps_killing_workers_errs_with_killed_worker(fresh_client):
    f = fresh_client.submit(die)
    # As in Dask: more deaths than allowed-failures (3), so four.
    with pytest.raises(KilledWorker, match="'die-.*' on 4 different workers") as info:
        f.result(timeout=60)
    assert info.value.allowed_failures == 3
    # The cluster is still usable afterwards.
    fresh_client.wait_for_workers(2, timeout=30)
    assert fresh_client.submit(inc, 1).result(timeout=30) == 2


def test_lost_results_still_needed_are_recomputed(fresh_client):
    client = fresh_client
    # Large enough to live only on its worker.
    x = client.submit(big_bytes, 200_000, b"y")
    client.gather(x)
    (holder,) = client.who_has(x)[x.key]
    pid = _pid_of(client, holder)
    os.kill(pid, signal.SIGKILL)
    assert wait_for_exit([pid], 10) == []
    # Both the result itself and a new dependent come back, recomputed.
    dependent = client.submit(len, x)
    assert dependent.result(timeout=30) == 200_000
    assert x.result(timeout=30) == b"y" * 200_000
    assert client.who_has(x)[x.key] != [holder]


def test_small_results_outlive_their_worker_without_running_again(fresh_client, tmp_path):
    client = fresh_client
    log = tmp_path / "runs"
    x = client.submit(append_line, str(log), "ran", pure=False)
    assert x.result() == "ran"
    (holder,) = client.who_has(x)[x.key]
    pid = _pid_of(client, holder)
    os.kill(pid, signal.SIGKILL)
    assert wait_for_exit([pid], 10) == []
    # The scheduler kept the small result: a new dependent gets it, and the
    # task did not run again.
    assert client.submit(len, x).result(timeout=30) == 3
    assert log.read_text().splitlines() == ["ran"]


def test_queued_work_of_a_killed_worker_is_not_lost(fresh_client, tmp_path):
    client = fresh_client
    gate = tmp_path / "gate"
    futures = client.map(wait_for_file, [str(gate)] * 6, range(6), pure=False)
    info = client.scheduler_info()["workers"]
    victim = sorted(info.values(), key=lambda w: w["assigned"])[-1]["pid"]
    os.kill(victim, signal.SIGKILL)
    assert wait_for_exit([victim], 10) == []
    gate.write_text("go")
    assert client.gather(futures) == list(range(6))


def test_a_killed_worker_is_replaced(fresh_client):
    client = fresh_client
    address, info = next(iter(client.scheduler_info()["workers"].items()))
    victim = info["pid"]
    os.kill(victim, signal.SIGKILL)
    assert wait_for_exit([victim], 10) == []
    client.wait_for_workers(2, timeout=30, without=[address])
    assert client.submit(inc, 2).result(timeout=30) == 3
    pids = {w["pid"] for w in client.scheduler_info()["workers"].values()}
    assert victim not in pids and len(pids) == 2


def test_a_large_result_lost_between_wait_and_gather_is_computed_again(fresh_client):
    client = fresh_client
    x = client.submit(big_bytes, 300_000, b"z", pure=False)
    wait([x])
    # Its only copy dies after the wait and before the gather.
    (holder,) = client.who_has(x)[x.key]
    pid = _pid_of(client, holder)
    os.kill(pid, signal.SIGKILL)
    assert wait_for_exit([pid], 10) == []
    assert client.gather(x) == b"z" * 300_000
    assert x.result(timeout=30) == b"z" * 300_000


def test_a_hung_worker_is_declared_dead_its_task_runs_elsewhere_and_it_leaves(tmp_path):
    from shoal import Client

    gate = tmp_path / "gate"
    with Client(
        n_workers=2, threads_per_worker=1, scheduler_kwargs={"worker_ttl": "2 s"}
    ) as client:
        first, second = sorted(client.nthreads())
        f = client.submit(wait_for_file, str(gate), 7, workers=[first], allow_other_workers=True)
        # Submissions travel apart from questions: ask until it is there.
        while f.key not in client.processing()[first]:
            assert f.status == "pending"
        pid = _pid_of(client, first)
        os.kill(pid, signal.SIGSTOP)  # hung: its connection stays open, it says nothing
        try:
            gate.write_text("open")
            # Declared dead after 2 s of silence; the task runs on the other.
            assert f.result(timeout=60) == 7
            assert client.who_has(f)[f.key] == [second]
        finally:
            os.kill(pid, signal.SIGCONT)
        # Back from the dead, it is told to leave, and a new worker replaces it.
        assert wait_for_exit([pid], 30) == []
        client.wait_for_workers(2, timeout=30, without=[first])
        assert client.who_has(f)[f.key] == [second]
        assert f.result() == 7
