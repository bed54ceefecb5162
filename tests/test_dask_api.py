"""Dask's semantics for calls Dask users rely on, on both clients, and
``shoal.utils_test`` (Dask's ``gen_cluster``, fixtures and task helpers),
which these tests use as a Dask user's own tests would (its fixtures ``c``,
``s``, ``a``, ``b`` and ``loop`` come through ``conftest.py``).
"""

from __future__ import annotations

import asyncio
import pickle
import traceback
from concurrent.futures import CancelledError

import pytest

from shoal import Client, Future, Queue, Semaphore, Variable, as_completed, wait
from shoal.utils_test import (
    cluster,
    div,
    gen_cluster,
    gen_test,
    inc,
    map_varying,
    raises_with_cause,
    slowinc,
    varying,
)

from conftest import until

# ----- shoal.utils_test itself ---------------------------------------------


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1), ("127.0.0.1", 3)])
async def test_gen_cluster_hands_a_client_and_its_workers(c, s, a, b):
    assert c.asynchronous
    assert c.scheduler.address == s.address
    threads = await c.nthreads()
    assert threads == {a.address: 1, b.address: 3}
    assert await c.submit(inc, 1, workers=[b.address]) == 2


@gen_cluster(nthreads=[("127.0.0.1", 1)])
async def test_gen_cluster_without_a_client(s, a):
    async with Client(s.address, asynchronous=True, set_as_default=False) as c:
        assert list(await c.nthreads()) == [a.address]


@pytest.mark.parametrize("x", [1, 5])
@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_gen_cluster_passes_parameters(c, s, a, x):
    assert await c.submit(inc, x) == x + 1


def test_gen_cluster_fails_a_test_past_its_timeout():
    @gen_cluster(client=True, timeout=0.5, nthreads=[("127.0.0.1", 1)])
    async def never_ends(c, s, a):
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        never_ends()


def test_cluster_starts_worker_processes():
    with cluster(nworkers=2) as (s, [a, b]):
        with Client(s["address"], set_as_default=False) as c:
            assert set(c.nthreads()) == {a["address"], b["address"]}
            pids = c.run(__import__("os").getpid)
            assert len(set(pids.values())) == 2


def test_sync_fixtures(c, s, a, b):
    assert c.scheduler.address == s["address"]
    assert set(c.nthreads()) == {a["address"], b["address"]}


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_varying_tasks_see_their_calls_counted(c, s, a):
    f = varying([1, ZeroDivisionError("second"), 3])
    assert await c.submit(f, pure=False) == 1
    with pytest.raises(ZeroDivisionError):
        await c.submit(f, pure=False)
    assert await c.submit(f, pure=False) == 3
    apply, funcs = map_varying([[10, 20]])
    assert await c.submit(apply, funcs[0], pure=False) == 10


# ----- results and errors -------------------------------------------------


@pytest.mark.parametrize("how", ["result", "gather"])
def test_a_task_error_shows_the_users_frames(c, how):
    future = c.submit(div, 1, 0)
    with pytest.raises(ZeroDivisionError) as info:
        future.result() if how == "result" else c.gather(future)
    frames = [f.f_code.co_name for f, _ in traceback.walk_tb(info.value.__traceback__)]
    # the test, the call it made, and the task's function: nothing between
    assert frames[-1] == "div"
    assert len(frames) == 3, frames


@pytest.mark.parametrize("how", ["await", "result", "gather"])
@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_a_task_error_shows_the_users_frames_async(c, s, a, how):
    future = c.submit(div, 1, 0)
    with pytest.raises(ZeroDivisionError) as info:
        if how == "await":
            await future
        elif how == "result":
            await future.result()
        else:
            await c.gather(future)
    frames = [f.f_code.co_name for f, _ in traceback.walk_tb(info.value.__traceback__)]
    assert frames[-1] == "div"
    assert len(frames) <= 3, frames


def _raise_chained():
    try:
        raise KeyError("inner")
    except KeyError as e:
        raise ValueError("outer") from e


def _raise_long():
    raise ValueError("a" * 100_000)


def test_a_task_error_keeps_its_cause(c):
    with raises_with_cause(ValueError, "outer", KeyError, "inner"):
        c.submit(_raise_chained).result()


def test_a_long_error_message_is_cut(c):
    # at Dask's distributed.admin.max-error-length, 10,000 characters
    with pytest.raises(ValueError) as info:
        c.submit(_raise_long).result()
    assert str(info.value) == "a" * 10_000 + "..."


# ----- get, scatter, as_completed, futures ---------------------------------


def test_get_returns_futures_when_not_sync(c):
    dsk = {"x": (inc, 1), ("y", 0): (inc, "x")}
    future = c.get(dsk, ("y", 0), sync=False)
    assert isinstance(future, Future)
    assert future.result() == 3
    [x] = c.get(dsk, ["x"], sync=False)
    assert x.result() == 2
    assert c.get(dsk, ["x", ("y", 0)]) == [2, 3]


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_get_on_the_asynchronous_client(c, s, a):
    assert await c.get({"x": (inc, 1)}, "x") == 2
    future = c.get({"x": (inc, 1)}, "x", sync=False)
    assert await future == 2


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 3)
async def test_direct_scatter_puts_every_value_on_a_worker(c, s, a, b, w3):
    futures = await c.scatter([1, 2, 3], direct=True)
    await wait(futures)
    held = await c.who_has(futures)
    assert all(held[f.key] for f in futures)
    assert len({tuple(held[f.key]) for f in futures}) == 3  # spread over the workers
    through_scheduler = await c.scatter(b"x" * 200_000, direct=False)
    assert await through_scheduler == b"x" * 200_000


@gen_cluster(client=True, nthreads=[])
async def test_direct_scatter_with_no_worker_times_out(c, s):
    with pytest.raises(TimeoutError):
        await c.scatter(1, direct=True, timeout=0.2)


def test_as_completed_with_results_gives_errors_as_dask_does(c):
    bad = c.submit(div, 1, 0)
    good = c.submit(inc, 1)
    results = dict(as_completed([bad, good], with_results=True, raise_errors=False))
    kind, error, tb = results[bad]
    assert kind is ZeroDivisionError and isinstance(error, ZeroDivisionError)
    assert results[good] == 2


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_as_completed_repr_counts(c, s, a):
    futures = c.map(inc, range(3))
    ac = as_completed(futures)
    assert "waiting=3" in repr(ac) or "done=" in repr(ac)
    await wait(futures)
    assert "waiting=0 done=3" in repr(ac)
    async for _ in ac:
        pass
    assert "waiting=0 done=0" in str(ac)


def test_client_futures_and_refcount(c):
    x = c.submit(inc, 100)
    y = x  # noqa: F841 (one Future object: still one reference)
    z = c.submit(inc, 100)
    assert x.key in c.futures
    assert c.refcount[x.key] == 2
    del z
    assert c.refcount[x.key] == 1
    x.result()
    assert c.futures[x.key].status == "finished"
    assert "nothing" not in c.futures and c.refcount["nothing"] == 0


def test_client_futures_show_an_error(c):
    f = c.submit(div, 1, 0)
    wait(f)
    state = c.futures[f.key]
    assert state.status == "error"
    assert isinstance(state.exception, ZeroDivisionError)


# ----- datasets -------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain", 8, ("a", 1), b"raw", 2.5])
def test_datasets_take_any_dask_key_as_name(c, name):
    c.publish_dataset(c.submit(inc, 1), name=name)
    assert name in c.list_datasets()
    assert c.get_dataset(name).result() == 2
    assert c.datasets[name].result() == 2
    c.unpublish_dataset(name)
    assert name not in c.list_datasets()


def test_publish_dataset_arguments_as_dask(c):
    c.publish_dataset({("a", "b"): 1, 8: 2}, n3=3)
    assert c.get_dataset([("a", "b"), 8, "n3"]) == [1, 2, 3]
    c.publish_dataset(1, 2, name="pair")
    assert c.get_dataset("pair") == (1, 2)
    c.unpublish_dataset([("a", "b"), 8, "n3", "pair"])
    c.unpublish_dataset("never-published")  # passed over, as in Dask
    with pytest.raises(ValueError, match="expecting call signature"):
        c.publish_dataset(name="x")
    with pytest.raises(ValueError, match="must be a"):
        c.publish_dataset(1, 2)
    with pytest.raises(TypeError, match="dataset name"):
        c.publish_dataset(1, name=object())


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_datasets_on_the_asynchronous_client(c, s, a):
    await c.publish_dataset(foo=1, bar=2)
    assert await c.datasets["foo"] == 1
    assert {k async for k in c.datasets} == {"foo", "bar"}
    with pytest.raises(TypeError):
        c.datasets["baz"] = 3
    with pytest.raises(TypeError):
        len(c.datasets)


# ----- coordination objects unpickled where no client runs ---------------


@pytest.mark.parametrize("kind", [Queue, Variable, Semaphore])
def test_coordination_objects_unpickle_without_a_client(kind):
    with cluster(nworkers=1) as (s, _):
        with Client(s["address"]) as c:
            obj = kind(client=c)
            pickled = pickle.dumps(obj)
        unpickled = pickle.loads(pickled)
        assert unpickled.client is None
        with pytest.raises(RuntimeError, match="not properly initialized"):
            unpickled.get_value() if kind is Semaphore else unpickled.get(timeout=0.1)
        with Client(s["address"]) as c:
            assert unpickled.client is c


# ----- loop= ------------------------------------------------------------------


def test_client_sync_runs_on_the_given_loop(loop, s):
    import asyncio

    async def which_loop():
        return asyncio.get_running_loop()

    with Client(s["address"], loop=loop) as c:
        assert c.loop is loop  # a tornado IOLoop when tornado is installed
        assert c.sync(which_loop) is getattr(loop, "asyncio_loop", loop)


def test_loop_must_be_an_event_loop(s):
    with pytest.raises(TypeError, match="asyncio event loop"):
        Client(s["address"], loop="not a loop")


def test_cancelled_future_in_as_completed(c):
    gate = c.submit(slowinc, 1, delay=5)
    ac = as_completed([gate], with_results=True)
    gate.cancel()
    [(future, result)] = list(ac)
    assert future is gate and isinstance(result, CancelledError)


# ----- retry -------------------------------------------------------------------


def _configured(name):
    import dask

    return dask.config.get(name)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_retry_reruns_only_what_failed(c, s, a):
    import dask

    with dask.config.set({"shoal-test-value": None}):
        x = c.submit(_configured, "shoal-test-value")
        y = c.submit(inc, x)
        with pytest.raises(TypeError):
            await y  # inc(None)
    with dask.config.set({"shoal-test-value": 1}):
        await x.retry()  # it did not fail: left as it is
        assert x.status == "finished" and await x is None
        await y.retry()
        with pytest.raises(TypeError):
            await y  # x was not run again: y got None again


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_retry_reruns_failed_dependencies(c, s, a):
    import dask

    x = c.submit(_configured, "shoal-missing-key")  # KeyError
    y = c.submit(inc, x)
    with pytest.raises(KeyError):
        await y
    assert x.status == y.status == "error"
    with dask.config.set({"shoal-missing-key": 100}):
        await y.retry()
        assert await y == 101
        assert x.status == "finished"


def test_retry_on_the_synchronous_client(c, tmp_path):
    from tasks import fail_first

    f = c.submit(fail_first, str(tmp_path / "count"), 1)
    with pytest.raises(ValueError, match="attempt 0"):
        f.result()
    c.retry([f])
    assert f.result() == 1
    assert f.status == "finished"


# ----- coordination names ------------------------------------------------------


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_locks_take_any_name_and_have_an_id_each(c, s, a):
    from shoal import Lock

    for name in [1, ("a", 1), ["a", 1], b"123", "123"]:
        lock = Lock(name)
        assert lock.name == name
        assert await lock.acquire()
        other = Lock(name)
        assert other.id != lock.id
        assert not await other.acquire(timeout=0.05)  # the same lock
        await lock.release()
    assert await Lock(("a", 2)).acquire(timeout=0.05)  # another name, another lock


# ----- small semantics ------------------------------------------------------------


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_scattered_futures_know_their_type_and_namedtuples_stay(c, s, a):
    import collections

    [f] = await c.scatter([1])
    assert f.type is int
    point = collections.namedtuple("point", ["x", "y"])
    out = await c.scatter(point(1, "b"))
    assert type(out) is point
    assert (await out.x, await out.y) == (1, "b")
    assert out.y.type is str


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_a_future_from_a_variable_knows_its_state_at_once(c, s, a):
    x = c.submit(div, 1, 0)
    await wait(x)
    await Variable("v").set(x)
    async with Client(s.address, asynchronous=True, set_as_default=False) as c2:
        got = await Variable("v", client=c2).get()
        assert got.status == "error"


def test_a_local_cluster_is_reached_as_localhost_too(s):
    port = s["address"].rsplit(":", 1)[1]
    with Client(f"localhost:{port}", set_as_default=False) as c:
        assert c.submit(inc, 1).result() == 2


@pytest.mark.parametrize("bad", [None, 0, 1.0])
def test_wait_for_workers_needs_a_count(c, bad):
    with pytest.raises(ValueError, match="n_workers"):
        c.wait_for_workers(bad)


def test_a_large_submission_warns_as_dask_does(c):
    import warnings

    import dask

    with pytest.warns(UserWarning, match="Sending large graph of size"):
        c.submit(len, b"0" * 11_000_000).result()
    with dask.config.set({"distributed.admin.large-graph-warning-threshold": "1GB"}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert c.submit(len, b"1" * 11_000_000).result() == 11_000_000
            assert c.submit(len, b"2" * 1000).result() == 1000


def test_client_repr_as_dask_shows(s):
    with Client(s["address"], set_as_default=False) as c:
        text = c._repr_html_()
        assert s["address"] in text and "Total threads: </strong>2" in text
        assert "threads=2" in repr(c)
        assert c.get_versions()["scheduler"] is not None  # hosted by this process
    assert "No scheduler connected" in repr(c)
    assert "No scheduler connected." in c._repr_html_()


@gen_test()
async def test_client_of_a_cluster_shows_the_clusters_dashboard_link():
    from shoal import LocalCluster

    class Proxied(LocalCluster):
        @property
        def dashboard_link(self):
            return "http://proxy.example/status"

    async with Proxied(n_workers=0, processes=False, asynchronous=True) as cluster:
        async with Client(cluster, asynchronous=True) as client:
            assert client.dashboard_link == "http://proxy.example/status"
            assert "http://proxy.example/status" in client._repr_html_()


def test_cancelling_a_future_cancels_its_dependents_as_dask_does(c):
    x = c.submit(slowinc, 1, delay=0.2, key="cx")
    y = c.submit(slowinc, x, delay=0.2, key="cy")
    z = c.submit(slowinc, y, delay=0.2, key="cz")
    c.cancel([y])
    wait(z)  # woken by the cancellation
    assert z.cancelled()
    assert x.result() == 2


# ----- actors ---------------------------------------------------------------------


class Counter:
    n = 0

    def increment(self):
        self.n += 1
        return self.n


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_actor_calls_are_base_actor_futures_awaited_and_completed(c, s, a):
    from shoal import BaseActorFuture

    counter = await c.submit(Counter, actor=True)
    calls = [counter.increment() for _ in range(5)]
    assert all(isinstance(f, BaseActorFuture) for f in calls)
    assert sorted(await asyncio.gather(*calls)) == [1, 2, 3, 4, 5]
    more = [counter.increment() for _ in range(3)]
    seen = [await f async for f in as_completed(more)]
    assert sorted(seen) == [6, 7, 8]


def test_as_completed_takes_actor_calls(c):
    counter = c.submit(Counter, actor=True).result()
    calls = [counter.increment() for _ in range(10)]
    assert sorted(f.result() for f in as_completed(calls)) == list(range(1, 11))


# ----- map batches, mixed clients, cancelled inputs, inherited configuration --


def test_map_in_batches(c):
    futures = c.map(inc, range(10), batch_size=3, key=[f"b{i}" for i in range(10)])
    assert [f.key for f in futures] == [f"b{i}" for i in range(10)]
    assert c.gather(futures) == list(range(1, 11))
    with pytest.raises(ValueError, match="batch_size"):
        c.map(inc, range(3), batch_size=0)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_gather_refuses_another_clients_futures(c, s, a):
    async with Client(s.address, asynchronous=True, set_as_default=False) as c2:
        x = c.submit(inc, 10)
        y = c2.submit(inc, 5)
        with pytest.raises(ValueError, match="Futures created by another client"):
            await c.gather([x, y])


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_a_task_on_a_cancelled_future_is_cancelled(c, s, a):
    x = c.submit(inc, 1)
    await x
    await c.cancel(x)
    with pytest.raises(CancelledError):
        await c.submit(inc, x)


def test_worker_processes_inherit_the_dask_configuration():
    import dask

    from shoal import LocalCluster

    with dask.config.set({"shoal-test-inherited": 100}):
        with LocalCluster(n_workers=1, dashboard_address=None) as lc, Client(lc) as c:
            assert c.submit(dask.config.get, "shoal-test-inherited").result() == 100


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_a_task_on_a_worker_in_this_process_uses_the_default_client(c, s, a):
    from shoal import get_client

    def which():
        client = get_client()
        return id(client), client.asynchronous

    # the same object (on threads of this process), acting synchronously there
    assert await c.submit(which) == (id(c), False)


def test_small_dask_names(c, tmp_path):
    import json

    from dask.base import tokenize

    from shoal import local_client

    x = c.submit(inc, 1)
    y = c.submit(inc, 1)
    assert tokenize(x) == tokenize(x) != tokenize(y)  # one token per Future object
    path = tmp_path / "scheduler.json"
    c.write_scheduler_file(str(path))
    assert json.loads(path.read_text())["address"] == c.scheduler_address
    with pytest.raises(ValueError, match="exists"):
        c.write_scheduler_file(str(path))
    with Client(scheduler_file=str(path), set_as_default=False) as other:
        assert other.submit(inc, 2).result() == 3
    with pytest.raises(OSError):
        Client(c.scheduler_address, timeout=0)

    def old_name(x):
        with pytest.warns(UserWarning, match="local_client has moved to worker_client"):
            manager = local_client()
        with manager as client:
            return client.submit(inc, x).result()

    assert c.submit(old_name, 10).result() == 11


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_actor_methods_take_separate_thread(c, s, a):
    counter = await c.submit(Counter, actor=True)
    assert await counter.increment(separate_thread=True) == 1
    with pytest.raises(NotImplementedError, match="event loop"):
        counter.increment(separate_thread=False)


def _mark():
    import builtins

    builtins._shoal_test_mark = True  # gone once the process starts afresh


def _marked():
    import builtins

    return getattr(builtins, "_shoal_test_mark", False)


def test_restart_workers_restarts_only_those(fresh_client):
    c = fresh_client
    first, second = sorted(c.nthreads())
    c.run(_mark)
    assert c.restart_workers([first]) == {first: "OK"}
    marks = c.run(_marked)
    assert sorted(marks.values()) == [False, True]  # one fresh process, one as it was
    assert marks.get(second) is True


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_restart_workers_needs_worker_processes(c, s, a):
    with pytest.raises(ValueError, match="requires a nanny") as info:
        await c.restart_workers([a.address])
    assert a.address in str(info.value)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_normalize_collection_takes_held_futures(c, s, a):
    from dask import delayed as dask_delayed

    x = dask_delayed(inc)(1)
    y = dask_delayed(inc)(x)
    z = dask_delayed(inc)(y)
    persisted = c.persist(y)
    zz = c.normalize_collection(z)
    assert isinstance(zz.dask[y.key], Future)
    assert len(zz.dask) < len(z.dask) == 3  # the input is left as it was
    assert await c.compute(zz) == 4
    del persisted


PRELOAD = """
def dask_setup(client):
    client.foo = "setup"


def dask_teardown(client):
    client.foo = "teardown"
"""


@gen_cluster(nthreads=[])
async def test_client_preloads_from_the_configuration(s, tmp_path):
    import dask

    with dask.config.set({"distributed.client.preload": [PRELOAD]}):
        async with Client(s.address, asynchronous=True) as c:
            assert c.foo == "setup"
    assert c.foo == "teardown"
    path = tmp_path / "setup_client.py"
    path.write_text(PRELOAD)
    with dask.config.set({"distributed.client.preload": [str(path)]}):
        async with Client(s.address, asynchronous=True) as c:
            assert c.foo == "setup"
    assert c.foo == "teardown"


CLICK_PRELOAD = """
import click

@click.command()
@click.argument("value")
@click.option("--times", type=int, default=1)
def dask_setup(client, value, times):
    client.foo = value * times
"""


@gen_cluster(nthreads=[])
async def test_a_click_preload_takes_its_arguments_from_the_configuration(s):
    import dask

    config = {
        "distributed.client.preload": [CLICK_PRELOAD],
        "distributed.client.preload-argv": [["ab", "--times", "2"]],
    }
    with dask.config.set(config):
        async with Client(s.address, asynchronous=True) as c:
            assert c.foo == "abab"
    # Arguments for a dask_setup that takes none are refused, not dropped.
    config = {"distributed.client.preload": [PRELOAD], "distributed.client.preload-argv": ["x"]}
    with dask.config.set(config), pytest.raises(ValueError, match="not a click command"):
        async with Client(s.address, asynchronous=True):
            pass


# ----- Dask's configuration keys ---------------------------------------------------


def _environ(name):
    import os

    return os.environ.get(name)


def test_worker_processes_start_with_dasks_pre_spawn_environ():
    import dask

    from shoal import LocalCluster

    with LocalCluster(n_workers=1, dashboard_address=None) as lc, Client(lc) as c:
        assert c.submit(_environ, "OMP_NUM_THREADS").result() == "1"  # Dask's default
    environ = {"OMP_NUM_THREADS": 2, "SHOAL_TEST_SPAWN": "yes"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        with LocalCluster(n_workers=1, dashboard_address=None) as lc, Client(lc) as c:
            assert c.submit(_environ, "OMP_NUM_THREADS").result() == "2"
            assert c.submit(_environ, "SHOAL_TEST_SPAWN").result() == "yes"


def test_scheduler_options_default_to_dasks_configuration():
    import dask

    from shoal.deploy.local import scheduler_options

    keys = {
        "distributed.scheduler.allowed-failures": 7,
        "distributed.scheduler.worker-ttl": "90s",
    }
    with dask.config.set(keys):
        options = scheduler_options({})
        # (With distributed imported, its defaults for lease-timeout and
        # comm.timeouts.tcp are configured too.)
        assert (options["allowed_failures"], options["worker_ttl"]) == (7, 90.0)
        assert scheduler_options({"allowed_failures": 1})["allowed_failures"] == 1
    with dask.config.set({"distributed.scheduler.worker-ttl": None}):
        assert scheduler_options({})["worker_ttl"] is None


def test_client_connect_timeout_follows_dasks_configuration(s):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": 0}):
        with pytest.raises(TimeoutError):
            Client(s["address"])  # no time to connect: Dask's timeout read


# ----- diagnostics -------------------------------------------------------------------


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1), ("127.0.0.1", 1)])
async def test_call_stack_shows_where_running_tasks_are(c, s, a, b):
    from shoal import Event

    started, release = Event(), Event()

    def waits(started, release):
        started.set()
        release.wait()

    f1 = c.submit(waits, started, release, key="f1", workers=[a.address])
    await started.wait()
    by_future = await c.call_stack(f1)
    assert by_future == await c.call_stack(keys=["f1"])
    assert list(by_future) == [a.address] and list(by_future[a.address]) == ["f1"]
    assert any("in waits" in line for line in by_future[a.address]["f1"])
    assert list((await c.call_stack())[a.address]) == ["f1"]
    await release.set()
    await f1
    assert await c.call_stack() == {}


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_cancel_with_a_reason(c, s, a):
    x = c.submit(slowinc, 1, delay=5)
    await c.cancel(x, reason="no longer needed")
    with pytest.raises(CancelledError, match="no longer needed"):
        await x


def _hold(n):
    return b"x" * n


def test_memory_sampler_sees_memory_held(c):
    from shoal.diagnostics import MemorySampler

    ms = MemorySampler()
    with ms.sample("held", measure="managed", interval=0.05):
        held = c.submit(_hold, 50_000_000, pure=False)
        held.result()
        until(
            lambda: (
                c.scheduler_info()["workers"]
                and any(
                    w["metrics"]["managed_bytes"] >= 50_000_000
                    for w in c.scheduler_info()["workers"].values()
                )
            ),
            what="the worker to report what it holds",
        )
    df = ms.to_pandas()
    assert list(df.columns) == ["held"] and len(df) >= 2
    assert df["held"].max() >= 50_000_000
    assert ms.to_pandas(align=True).index[0].total_seconds() == 0
    with pytest.raises(ValueError, match="sampled already"):
        ms.sample("held")
    with pytest.raises(ValueError, match="measure"):
        ms.sample("other", measure="disk")
    del held


def test_dump_cluster_state(c, tmp_path):
    import gzip

    import msgpack
    import yaml

    held = c.submit(inc, 1)
    held.result()
    path = c.dump_cluster_state(str(tmp_path / "dump"))
    assert path.endswith(".msgpack.gz")
    with gzip.open(path) as f:
        state = msgpack.unpackb(f.read())
    assert set(state) == {"scheduler", "workers", "versions"}
    assert set(state["workers"]) == set(c.nthreads())
    path = c.dump_cluster_state(str(tmp_path / "dump"), format="yaml", exclude=["running"])
    with open(path) as f:
        state = yaml.safe_load(f)
    assert all("running" not in w for w in state["workers"].values())
    with pytest.raises(ValueError, match="Unsupported format"):
        c.dump_cluster_state(str(tmp_path / "dump"), format="json")


def _reschedule_once(path):
    import os

    from shoal import Reschedule

    if not os.path.exists(path):
        open(path, "w").close()
        raise Reschedule()
    return "ran again"


def test_reschedule_places_the_task_again_without_failing_it(c, tmp_path):
    f = c.submit(_reschedule_once, str(tmp_path / "once"), retries=0)
    assert f.result() == "ran again"  # not an error, though it has no retries


def test_benchmark_hardware_logs_and_nbytes(c):
    rates = c.benchmark_hardware()
    assert set(rates) == {"memory", "disk", "network"}
    assert all(rates[m] for m in rates)  # two workers: every measure has rates
    assert all(isinstance(v, float) and v > 0 for d in rates.values() for v in d.values())
    logs = c.get_worker_logs(n=5)
    assert set(logs) == set(c.nthreads()) and all(len(v) <= 5 for v in logs.values())
    with pytest.raises(NotImplementedError, match="nanny"):
        c.get_worker_logs(nanny=True)
    f = c.submit(bytes, 1_000, key="sized-1")
    f.result()
    assert c.nbytes(keys=[f], summary=False) == {"sized-1": c.nbytes(summary=False)["sized-1"]}
    assert c.nbytes(keys=[f], summary=False)["sized-1"] >= 1_000
    assert c.nbytes(keys=["sized-1"])["sized"] >= 1_000


@gen_cluster(client=True, nthreads=[])
async def test_benchmark_hardware_without_workers(c, s):
    assert await c.benchmark_hardware() == {"memory": {}, "disk": {}, "network": {}}


WORKER_PRELOAD = """
_address = None


def dask_setup(worker):
    global _address
    _address = worker.address


def get_worker_address():
    return _address
"""


def _preloaded_address():
    import shoal_test_worker_info

    return shoal_test_worker_info.get_worker_address()


@pytest.mark.parametrize("processes", [True, False])
def test_worker_preloads_from_a_file(tmp_path, processes):
    from shoal import LocalCluster

    path = tmp_path / "shoal_test_worker_info.py"
    path.write_text(WORKER_PRELOAD)
    with (
        LocalCluster(
            n_workers=2,
            processes=processes,
            dashboard_address=None,
            preload=[str(path)],
            name="preloaded",
        ) as lc,
        Client(lc, set_as_default=False) as c,
    ):
        assert "'preloaded'" in repr(lc)
        addresses = c.run(_preloaded_address)
        if processes:  # each worker process ran its own preload
            assert addresses == {a: a for a in addresses}
        else:  # one module in this process: the last worker's setup wins
            assert set(addresses.values()) <= set(addresses)


def test_worker_preload_from_the_configuration(s):
    import dask

    text = "def dask_setup(worker):\n    worker.foo = 'setup'\n"
    with dask.config.set({"distributed.worker.preload": [text]}):
        from shoal import LocalCluster

        with LocalCluster(n_workers=1, dashboard_address=None) as lc, Client(lc) as c:
            assert list(c.run(lambda dask_worker: dask_worker.foo).values()) == ["setup"]


class UsesCounter:
    def do_inc(self, counter):
        # the counter lives on this worker: the call runs here, at once
        return counter.increment().result(timeout=0.001)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_an_actor_calls_an_actor_on_its_own_worker_at_once(c, s, a):
    counter = await c.submit(Counter, actor=True)
    user = await c.submit(UsesCounter, actor=True)
    assert await user.do_inc(counter) == 1
    assert await user.do_inc(counter) == 2


class AsyncCounter:
    n = 0

    async def ainc(self):
        self.n += 1
        return self.n


class UsesAsyncCounter:
    async def ado_inc(self, counter):
        return await counter.ainc()


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_an_async_actor_awaits_an_actor_on_its_own_worker(c, s, a):
    counter = await c.submit(AsyncCounter, actor=True)
    user = await c.submit(UsesAsyncCounter, actor=True)
    assert await user.ado_inc(counter) == 1


# ----- dask.annotate around submit and map ----------------------------------


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_annotations_in_force_are_the_options_of_submit_and_map(c, s, a):
    import dask

    # As Dask merges dask.get_annotations() under a call's own arguments.
    with dask.annotate(retries=2):
        assert await c.submit(varying([ZeroDivisionError("one"), ValueError("two"), 3])) == 3
        mapped = c.map(lambda f: f(), [varying([ZeroDivisionError("x"), 4])], pure=False)
        assert await c.gather(mapped) == [4]
        with pytest.raises(ValueError, match="two"):
            await c.submit(varying([ZeroDivisionError("one"), ValueError("two"), 3]), retries=1)
    with pytest.raises(ZeroDivisionError):
        await c.submit(varying([ZeroDivisionError("one"), 3]))


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_an_executor_annotation_shoal_has_not_is_refused(c, s, a):
    import dask

    with dask.annotate(executor="default"):
        assert await c.submit(inc, 1) == 2
    with dask.annotate(executor="bad"):
        with pytest.raises(ValueError, match="Invalid executor 'bad'"):
            c.submit(inc, 1)
        with pytest.raises(ValueError, match="Invalid executor 'bad'"):
            c.map(inc, [1, 2])


# ----- serialization families -------------------------------------------------


def _identity(x):
    return x


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_a_client_without_pickle_sends_and_loads_only_its_families(c, s, a):
    np = pytest.importorskip("numpy")
    async with Client(
        s.address, asynchronous=True, set_as_default=False, serializers=["dask", "msgpack"]
    ) as limited:
        # Tasks are pickled regardless; plain data and numpy results load.
        assert await limited.submit(inc, 1) == 2
        assert (await limited.submit(np.ones, 3)).tolist() == [1.0, 1.0, 1.0]
        assert await limited.gather(await limited.scatter([1, "two", {"x": b"3"}])) == [
            1,
            "two",
            {"x": b"3"},
        ]
        with pytest.raises(TypeError, match="cannot send"):
            await limited.scatter(inc)
        with pytest.raises(TypeError, match="cannot send"):
            await limited.publish_dataset(f=_identity)
        with pytest.raises(TypeError, match="cannot send"):
            await Variable("families", client=limited).set(_identity)
        # A function as a result is refused before anything of it is built.
        with pytest.raises(TypeError, match="do not load"):
            await limited.submit(_identity, inc)
        with pytest.raises(TypeError, match="do not load"):
            await limited.run(lambda: inc)
        await c.publish_dataset(g=_identity)
        with pytest.raises(TypeError, match="do not load"):
            await limited.get_dataset("g")


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_deserializers_limit_only_what_the_client_loads(c, s, a):
    np = pytest.importorskip("numpy")
    async with Client(
        s.address,
        asynchronous=True,
        set_as_default=False,
        serializers=["msgpack", "pickle"],
        deserializers=["msgpack"],
    ) as limited:
        future = await limited.scatter(np.ones(5))  # sending may pickle
        with pytest.raises(TypeError, match="do not load"):
            await future
        assert await limited.submit(inc, 1) == 2
    with pytest.raises(ValueError, match="unknown serializers"):
        Client(s.address, asynchronous=True, serializers=["json"])


# ----- Client.profile -------------------------------------------------------------


def _spin(seconds):
    import time

    end = time.time() + seconds
    while time.time() < end:
        pass
    return seconds


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)])
async def test_profile_counts_where_tasks_spend_their_time(c, s, a):
    import time

    start = time.time()
    await c.submit(_spin, 0.3, key="spin-1")
    tree = await c.profile(key="spin", start=start)
    assert tree["count"] > 0
    (site,) = [n for n in tree["children"].values() if n["identifier"].startswith("_spin;")]
    assert 0 < site["count"] <= tree["count"]
    assert (await c.profile(key="other"))["count"] == 0
    assert (await c.profile(start=time.time() + 10))["count"] == 0
    per_worker = await c.profile(merge_workers=False)
    assert list(per_worker) == [a.address]
    with pytest.raises(NotImplementedError, match="scheduler"):
        await c.profile(scheduler=True)


@gen_cluster(
    client=True,
    nthreads=[("127.0.0.1", 1)],
    config={"distributed.worker.profile.enabled": False},
)
async def test_profile_is_empty_when_disabled(c, s, a):
    await c.submit(_spin, 0.1)
    assert (await c.profile())["count"] == 0
