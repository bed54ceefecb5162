"""Every Dask argument either works or says it is not supported."""

from __future__ import annotations

import pytest

from shoal import Client, LocalCluster, as_completed, compute, delayed

from tasks import add, inc


def test_fifo_timeout_is_checked_as_a_duration(client):
    # Calls closer than fifo_timeout count as the same priority; shoal runs
    # those in submission order, which any window allows.
    assert client.submit(inc, 1, fifo_timeout="100 ms").result() == 2
    assert client.gather(client.map(inc, [1, 2], fifo_timeout=0.01)) == [2, 3]
    assert client.compute(delayed(inc)(1), fifo_timeout="60s").result() == 2
    with pytest.raises(ValueError, match="fifo_timeout"):
        client.submit(inc, 1, fifo_timeout="soon")
    with pytest.raises(ValueError, match="fifo_timeout"):
        client.map(inc, [1], fifo_timeout=True)


def test_options_the_client_does_not_support_are_refused(client):
    with pytest.raises(NotImplementedError, match="actors"):
        client.compute(delayed(inc)(1), actors=True)
    with pytest.raises(NotImplementedError, match="force"):
        client.cancel([], force=True)
    with pytest.raises(TypeError, match="direct"):
        client.gather([], direct="no")
    with pytest.raises(TypeError, match="security"):
        Client(client.scheduler_address, security=object())
    with pytest.raises(NotImplementedError, match="traverse"):
        delayed([1], traverse=False)
    with pytest.raises(NotImplementedError, match="optimization"):
        client.compute(delayed(inc)(1), some_optimizer_option=True)
    with pytest.raises(TypeError, match="unexpected"):
        compute(delayed(inc)(1), num_workers=4)


@pytest.mark.parametrize(
    "option",
    [
        {"silence_logs": 10},
    ],
)
def test_local_cluster_refuses_what_it_does_not_do(option):
    (name,) = option
    with pytest.raises(NotImplementedError, match=name):
        LocalCluster(n_workers=0, **option)
    with pytest.raises(NotImplementedError, match=name):
        Client(n_workers=0, **option)


@pytest.mark.parametrize(
    "option, message",
    [
        ({"memory_limit": "lots"}, "cannot read 'lots' as a size"),
        ({"memory_limit": -1}, "must not be negative"),
        ({"memory_target_fraction": 1.5}, "target fraction must be above 0 and at most 1"),
        ({"memory_pause_fraction": "soon"}, "pause fraction must be a number or False"),
    ],
)
def test_bad_memory_options_are_refused_clearly(option, message):
    with pytest.raises(ValueError, match=message):
        LocalCluster(n_workers=0, dashboard_address=None, **option)


def test_unset_and_neutral_values_are_fine():
    with LocalCluster(
        n_workers=1, memory_limit="auto", dashboard_address=None, silence_logs=False
    ) as cluster:
        with Client(cluster, set_as_default=False) as c:
            assert c.submit(inc, 1, resources=None, allow_other_workers=False).result() == 2


def test_compute_options_apply_to_every_task(client):
    (first, *_) = client.nthreads()
    x = delayed(add)(delayed(inc)(1), 2)
    f = client.compute(x, workers=[first], retries=1, priority=5)
    assert f.result(timeout=30) == 4
    assert client.who_has(f)[f.key] == [first]
    # And through dask's get protocol.
    dsk = {"a": (inc, 1), "b": (add, "a", 10)}
    assert client.get(dsk, "b", workers=[first], retries=2) == 12


def test_as_completed_refuses_an_event_loop(client):
    with pytest.raises(NotImplementedError, match="loop"):
        as_completed([client.submit(inc, 1)], loop=object())


def test_optimize_graph_false_runs_the_graph_as_built(client):
    da = pytest.importorskip("dask.array")
    x = da.ones((10,), chunks=5) + 1
    assert client.compute(x.sum(), optimize_graph=False).result() == 20
    assert compute(x.sum(), optimize_graph=False) == (20,)
    (p,) = client.persist([x], optimize_graph=False)
    assert int(p.sum().compute()) == 20


def test_direct_to_workers_reads_from_workers_or_through_the_scheduler(client):
    # A task's client reads from the workers, as Dask's worker clients do.
    assert client.direct_to_workers is None
    assert client.submit(_direct_to_workers_here).result() is True
    with Client(client.scheduler_address, direct_to_workers=True, set_as_default=False) as c:
        assert c.direct_to_workers is True
        assert c.submit(inc, 1).result() == 2
    # False: the scheduler carries each data connection (the multi-host
    # tests show it from a host that cannot reach the workers).
    with Client(client.scheduler_address, direct_to_workers=False, set_as_default=False) as c:
        assert c.direct_to_workers is False
        big = c.submit(bytes, 300_000, pure=False)
        assert c.gather(big) == bytes(300_000)
        assert c.gather([big], direct=True) == [bytes(300_000)]
        assert sorted(c.run(lambda: 1).values()) == [1] * len(c.scheduler_info()["workers"])
    with pytest.raises(TypeError, match="direct_to_workers"):
        Client(client.scheduler_address, direct_to_workers="yes")


def _direct_to_workers_here():
    from shoal import get_client

    return get_client().direct_to_workers
