"""Cluster-wide limits: concurrency and rate, enforced by the scheduler."""

from __future__ import annotations

import time

import pytest

from shoal import Client

from tasks import inc, max_overlap, nap_span, start_time


@pytest.fixture(scope="module")
def cluster():
    with Client(n_workers=2, threads_per_worker=1, set_as_default=False) as c:
        yield c


def test_concurrency_is_never_exceeded_across_the_cluster(cluster):
    cluster.set_limit("db", concurrency=3)
    spans = cluster.gather(cluster.map(nap_span, [0.1] * 12, limits="db", pure=False))
    assert max_overlap(spans) <= 3
    assert cluster.scheduler_info()["limits"]["db"]["running"] == 0


def test_a_rate_is_never_exceeded(cluster):
    rate, burst = 10.0, 2
    cluster.set_limit("api", rate=rate, burst=burst)
    submitted = time.time()
    starts = sorted(cluster.gather(cluster.map(start_time, range(12), limits="api", pure=False)))
    # The k-th start (from 0) cannot come before the bucket allowed it:
    # `burst` at once, then one every 1/rate s. (Delays on the way to a
    # worker only make starts later.) Without the limit all 12 would start
    # within a few milliseconds.
    for k, t in enumerate(starts):
        earliest = submitted + max(0, k - burst + 1) / rate
        assert t >= earliest - 0.01, (k, t - submitted)


def test_a_limited_task_waits_without_blocking_others_and_limits_change_live(cluster):
    cluster.set_limit("paused", concurrency=0)
    held = cluster.submit(inc, 1, limits="paused", pure=False)
    # Unlimited work flows around it on the same workers.
    assert cluster.gather(cluster.map(inc, range(20), pure=False)) == list(range(1, 21))
    assert held.status == "pending"
    info = cluster.scheduler_info()["limits"]["paused"]
    assert (info["concurrency"], info["waiting"]) == (0, 1)
    cluster.set_limit("paused", concurrency=1)
    assert held.result(timeout=30) == 2


def test_limits_apply_to_graphs(cluster):
    from shoal import delayed

    cluster.set_limit("graph", concurrency=1)
    parts = [delayed(nap_span, pure=False)(0.05) for _ in range(6)]
    spans = cluster.compute(parts, limits="graph", sync=True)
    assert max_overlap(spans) == 1


def test_persist_holds_its_tasks_to_a_limit_too(cluster):
    from shoal import delayed, futures_of, wait

    cluster.set_limit("persisted", concurrency=0)
    part = delayed(inc, pure=False)(1)
    held = cluster.persist(part, limits="persisted")
    (future,) = futures_of(held)
    # Other work finishes while the persisted task waits on its limit.
    assert cluster.submit(inc, 2, pure=False).result(timeout=30) == 3
    assert future.status == "pending"
    cluster.set_limit("persisted", concurrency=1)
    wait(held, timeout=30)
    assert cluster.compute(held, sync=True) == 2


def test_bad_limits_are_clear_errors(cluster):
    with pytest.raises(ValueError, match="concurrency, a rate"):
        cluster.set_limit("x")
    with pytest.raises(ValueError, match="concurrency"):
        cluster.set_limit("x", concurrency=-1)
    with pytest.raises(ValueError, match="rate"):
        cluster.set_limit("x", rate=0)
    with pytest.raises(ValueError, match="burst"):
        cluster.set_limit("x", concurrency=2, burst=3)
    with pytest.raises(TypeError, match="limits"):
        cluster.submit(inc, 1, limits=[1])
