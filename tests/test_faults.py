"""Worker processes dying: nothing is lost, poison tasks are stopped."""

from __future__ import annotations

import os
import signal

import pytest

from shoal import KilledWorker, wait

from conftest import wait_for_exit
from tasks import big_bytes, die, die_first, inc, wait_for_file


def _pid_of(client, address):
    return client.scheduler_info()["workers"][address]["pid"]


def test_a_task_whose_worker_dies_runs_again_elsewhere(fresh_client, tmp_path):
    marker = tmp_path / "died-once"
    f = fresh_client.submit(die_first, str(marker))
    assert f.result(timeout=30) == "survived"
    assert marker.exists()
    assert fresh_client.cluster.restarts >= 1


def test_a_task_that_kills_three_workers_errs_with_killed_worker(fresh_client):
    f = fresh_client.submit(die)
    with pytest.raises(KilledWorker, match="die"):
        f.result(timeout=60)
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
