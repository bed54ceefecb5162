"""Scaling a cluster: ``scale(n)``, ``retire_workers`` and ``adapt``, with
results moved off retiring workers first and none lost."""

from __future__ import annotations

import time

import pytest

from shoal import Client, Event, LocalCluster

from conftest import until

pytestmark = pytest.mark.timeout(120)


def block(i: int, n: int = 200_000) -> bytes:
    # Larger than what the scheduler keeps a copy of: only workers hold it.
    return bytes([i % 256]) * n


def wait_at_gate(x, gate):
    """Wait at the gate, then work for a tenth of a second (so the tasks'
    durations ask for more than one worker)."""
    assert gate.wait(60)
    time.sleep(0.1)
    return x


@pytest.mark.parametrize("processes", [True, False])
def test_scale_up_then_down_moves_results_and_loses_none(processes):
    with (
        LocalCluster(
            n_workers=1, threads_per_worker=1, processes=processes, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        cluster.scale(3)
        c.wait_for_workers(3, timeout=60)
        workers = sorted(c.scheduler_info()["workers"])
        futures = [c.submit(block, i, workers=[workers[i % 3]]) for i in range(9)]
        c.gather(futures)
        cluster.scale(1)
        assert cluster.n_workers == 1
        until(lambda: len(c.scheduler_info()["workers"]) == 1, what="two workers retired")
        assert c.gather(futures) == [block(i) for i in range(9)]
        (left,) = c.scheduler_info()["workers"]
        assert all(c.who_has(f)[f.key] == [left] for f in futures)
        if processes:
            # Retired workers are not started again.
            assert cluster.restarts == 0
            until(lambda: len(cluster.worker_pids()) == 1, what="two processes exited")


def test_the_client_retires_a_worker_by_address():
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        c.wait_for_workers(2, timeout=60)
        first, second = sorted(c.scheduler_info()["workers"])
        f = c.submit(block, 1, workers=[first])
        f.result()
        retired = c.retire_workers([first])
        assert list(retired) == [first] and retired[first]["pid"] > 0
        until(lambda: list(c.scheduler_info()["workers"]) == [second], what="the retirement")
        assert c.who_has(f)[f.key] == [second]
        assert f.result() == block(1)
        assert cluster.restarts == 0
        with pytest.raises(NotImplementedError, match="close_workers"):
            c.retire_workers([second], close_workers=False)


def test_a_worker_whose_results_have_nowhere_to_go_stays():
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        f = c.submit(block, 3)
        f.result()
        cluster.scale(0)
        assert len(c.scheduler_info()["workers"]) == 1
        assert cluster.n_workers == 1
        assert f.result() == block(3)
        # Once the result is released, the worker can go.
        del f
        until(lambda: not cluster.retire_workers(n=1) == [], what="the worker retired")
        until(lambda: not c.scheduler_info()["workers"], what="the worker to leave")


def test_adapt_grows_with_bursts_of_work_and_shrinks_to_its_minimum():
    with (
        LocalCluster(
            n_workers=0, threads_per_worker=1, max_threads=1, dashboard_address=None
        ) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        adaptive = cluster.adapt(
            minimum=0, maximum=3, interval="50ms", wait_count=2, target_duration="200ms"
        )
        for burst in range(2):
            gate = Event(client=c)
            # The burst waits at the gate until the cluster has grown, so
            # what is checked is workers that connected, not adapt's plans.
            futures = c.map(
                wait_at_gate, [burst * 100 + i for i in range(30)], gate=gate, pure=False
            )
            until(
                lambda: len(c.scheduler_info()["workers"]) >= 2,
                timeout=60,
                what="a second worker to join for the burst",
            )
            gate.set()
            assert c.gather(futures) == [burst * 100 + i for i in range(30)]
            del futures
            until(lambda: not c.scheduler_info()["workers"], timeout=60, what="scaling down to 0")
        assert adaptive.log[-1][0] == 0, adaptive.log
        cluster.scale(1)  # stops adapting
        c.wait_for_workers(1, timeout=60)
        assert cluster._adaptive is None


def test_get_logs_has_the_scheduler_and_every_worker():
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        c.wait_for_workers(2, timeout=60)
        logs = cluster.get_logs()
        workers = set(c.scheduler_info()["workers"])
        assert set(logs) == {"Scheduler", *workers}
        assert logs["Scheduler"].count("connected from") >= 2
        for w in workers:
            assert f"serves data on {w.split('://')[1]}" in logs[w]
        assert set(cluster.get_logs(scheduler=False)) == workers


def test_bad_scale_and_adapt_arguments_are_refused():
    with LocalCluster(n_workers=0, dashboard_address=None) as cluster:
        with pytest.raises(ValueError, match="number of workers"):
            cluster.scale(-1)
        with pytest.raises(NotImplementedError, match="cores"):
            cluster.scale(cores=4)
        with pytest.raises(ValueError, match="minimum <= maximum"):
            cluster.adapt(minimum=3, maximum=1)
        with pytest.raises(NotImplementedError, match="minimum_cores"):
            cluster.adapt(minimum_cores=2)
        assert "LocalCluster(" in repr(cluster) and "'tcp://" in repr(cluster)
        assert cluster.scheduler_address in cluster._repr_html_()
