"""The futures API: submit, map, gather, Future, scatter, cancel, keys."""

from __future__ import annotations

import gc
import pickle
import threading

import pytest

from shoal import Client, Future, FutureCancelledError, LocalCluster, wait

from conftest import until
from tasks import (
    add,
    append_line,
    big_bytes,
    getpid,
    identity,
    inc,
    kinds,
    nested_sum,
    spin_until_file,
    start_then_wait,
    wait_for_file,
    zeros,
)


def test_submit_returns_a_future_whose_result_is_the_value(client):
    f = client.submit(inc, 1)
    assert isinstance(f, Future)
    assert f.result(timeout=30) == 2
    assert f.done()
    assert f.status == "finished"
    assert f.type is int
    assert "finished" in repr(f) and f.key in repr(f)
    assert "finished" in f._repr_html_()
    # A key is text anyone may choose: a notebook shows it, never runs it.
    g = client.submit(inc, 1, key="<img src=x onerror=alert(1)>")
    g.result(timeout=30)
    assert "<img" not in g._repr_html_() and "&lt;img" in g._repr_html_()


def test_keyword_arguments_reach_the_function(client):
    assert client.submit(add, 1, y=10).result() == 11


def test_map_and_gather_keep_order(client):
    futures = client.map(inc, range(100))
    assert client.gather(futures) == list(range(1, 101))


def test_map_over_several_iterables_zips_them(client):
    assert client.gather(client.map(add, [1, 2, 3], [10, 20, 30])) == [11, 22, 33]


def test_map_passes_extra_keyword_arguments(client):
    assert client.gather(client.map(add, [1, 2], y=5)) == [6, 7]


def test_futures_as_arguments_are_replaced_by_results(client):
    futures = client.map(inc, range(8))
    total = client.submit(sum, futures)
    assert total.result() == 36


def test_futures_nested_in_dicts_tuples_and_lists(client):
    a = client.submit(inc, 1)
    b = client.submit(inc, 2)
    c = client.submit(inc, 3)
    f = client.submit(nested_sum, {"a": [a, b], "b": (c,), "c": [a]})
    assert f.result() == 2 + 3 + 4 + 2


def test_chained_futures(client):
    x = client.submit(inc, 1)
    for _ in range(10):
        x = client.submit(inc, x)
    assert x.result() == 12


def test_gather_accepts_nested_structures_and_single_futures(client):
    a, b = client.submit(inc, 1), client.submit(inc, 2)
    assert client.gather({"x": [a, b], "y": (a, 5)}) == {"x": [2, 3], "y": (2, 5)}
    assert client.gather(a) == 2
    assert list(client.gather(iter([a, b]))) == [2, 3]


def test_pure_calls_share_a_key_and_run_once(client, tmp_path):
    log = tmp_path / "calls"
    f1 = client.submit(append_line, str(log), "hello")
    f2 = client.submit(append_line, str(log), "hello")
    assert f1.key == f2.key
    assert f1.key.startswith("append_line-")
    assert client.gather([f1, f2]) == ["hello", "hello"]
    assert log.read_text().splitlines() == ["hello"]


PLAIN_VALUES = [0, -(2**70), 1.5, float("inf"), "", "é" * 300, "__main__"]
PLAIN_VALUES += [b"", b"x" * 70_000, True, None]


def test_plain_values_take_a_short_path_to_the_same_bytes():
    # Numbers, text and bytes skip the general pickling path (no futures or
    # buffers to look for): keys of pure calls and the frames of results
    # must not depend on which path a value took.
    from shoal.core import serialize

    for v in PLAIN_VALUES:
        fast, deps = serialize.dumps_args((v, v), {}, "t")
        general, _ = serialize.dumps_args_like(((v, v), {}), "t")
        assert [bytes(f) for f in fast] == [bytes(f) for f in general] and deps == [], v
        plain = serialize.dumps_plain(v)
        assert plain is None or plain == [bytes(f) for f in serialize.dumps(v)], v


def test_the_engine_pickles_calls_to_the_bytes_pythons_pickler_makes(client):
    # The engine writes the commonest calls' pickles itself (numbers,
    # texts, bytes and inputs); a pure call's key hashes those bytes, so
    # they must be exactly what pickle makes: memo, integer widths, inputs
    # met twice, the interned name "ref" that the reference to an input
    # also pickles.
    from shoal import delayed
    from shoal.core import serialize

    f, g = client.submit(inc, 1), client.submit(inc, 2)
    a, b = delayed(inc)(1), delayed(inc)(2)
    text, name = "é" * 300, "ref"
    calls = [(), (f,), (a, b), (a, a, f), (b, a, b, a, g, f), (1, 2, 3, 4, 5)]
    calls += [(0, 255, 256, 65535, 65536, -1, -(2**31), 2**31 - 1), (1.5, -0.0, float("inf"))]
    calls += [("", text, text), (name, a, name), (b"", b"x" * 300, b"y"), (None, True, False)]
    calls += [(a, "x", a, 1.0, None, b, delayed(inc), f, f)]
    calls += [tuple(range(64)), tuple([a] * 64)]
    for args in calls:
        made = serialize._call_pickler.dumps(args)
        assert made is not None, args
        general, deps = serialize.dumps_args_like((args, {}), "t", positional=True)
        assert (made[0], made[1]) == (general[0], deps), args
    for v in [*PLAIN_VALUES, 2**31 - 1, -(2**31), "ref", b"y" * 300]:
        made = serialize._call_pickler.dumps_value(v)
        assert made is None or made == bytes(serialize.dumps(v)[0]), v
    # What it leaves to the pickler.
    for args in [(2**31,), ("__main__",), ("\ud800",), ("z" * 5000,), tuple(range(65)), ([1],)]:
        assert serialize._call_pickler.dumps(args) is None, args
    assert client.submit(add, f, 1).result(timeout=30) == 3


def test_plain_values_round_trip_with_their_types(client):
    for v, out in zip(PLAIN_VALUES, client.gather(client.map(identity, PLAIN_VALUES))):
        assert type(out) is type(v) and out == v


def test_pure_calls_on_different_inputs_get_different_keys(client):
    # A task's pickled arguments name its inputs by position, not by key,
    # so the inputs' keys must be part of a pure call's key.
    from shoal import delayed

    a, b = client.submit(inc, 1), client.submit(inc, 2)
    fa, fb = client.submit(inc, a), client.submit(inc, b)
    assert fa.key != fb.key
    assert client.submit(inc, a).key == fa.key
    ma, mb = client.map(inc, [a, b])
    assert ma.key != mb.key
    assert client.gather([fa, fb, ma, mb]) == [3, 4, 3, 4]
    x, y = delayed(inc, pure=True)(1), delayed(inc, pure=True)(2)
    assert delayed(inc, pure=True)(x).key != delayed(inc, pure=True)(y).key
    assert delayed(inc, pure=True)(x).key == delayed(inc, pure=True)(x).key


def test_inputs_reach_their_places_whatever_form_the_worker_keeps_them_in(client):
    # On one worker, a large array stays the object it is and a number is
    # kept pickled: each input still lands in the argument it was passed
    # as, in any order and more than once.
    w = [next(iter(client.scheduler_info()["workers"]))]
    big = client.submit(zeros, 100_000, workers=w)
    small = client.submit(inc, 1, workers=w)
    out = client.submit(kinds, small, big, small, 3, workers=w, x=big, y=small)
    expected = ["int", "ndarray", "int", "int"], {"x": "ndarray", "y": "int"}
    assert out.result(timeout=60) == expected
    out = client.submit(kinds, big, small, workers=w)
    assert out.result(timeout=60) == (["ndarray", "int"], {})


def test_impure_calls_run_each_time(client, tmp_path):
    log = tmp_path / "calls"
    futures = [client.submit(append_line, str(log), "x", pure=False) for _ in range(3)]
    assert len({f.key for f in futures}) == 3
    client.gather(futures)
    assert log.read_text().splitlines() == ["x", "x", "x"]


def test_explicit_keys(client):
    f = client.submit(inc, 41, key="the-answer")
    assert f.key == "the-answer"
    assert f.result() == 42
    fs = client.map(inc, [1, 2], key=["k1", "k2"])
    assert [f.key for f in fs] == ["k1", "k2"]
    fs = client.map(inc, [1, 2], key="prefix")
    assert all(f.key.startswith("prefix-") for f in fs)
    with pytest.raises(ValueError):
        client.map(inc, [1, 2, 3], key=["only-one"])


def test_tuple_keys_are_the_futures_keys_as_in_dask(client):
    start = client.scheduler_info()["tasks"]
    f = client.submit(inc, 1, key=("x", 0, 1))
    assert f.key == ("x", 0, 1) and f.result() == 2
    fs = client.map(inc, [1, 2], key=[("y", 0), ("y", 1)])
    assert [g.key for g in fs] == [("y", 0), ("y", 1)]
    # The client's views name them the same way, and take them back.
    assert ("x", 0, 1) in client.futures and client.refcount[("x", 0, 1)] == 1
    assert set(client.futures) >= {("x", 0, 1), ("y", 0), ("y", 1)}
    assert set(client.who_has(fs)) == {("y", 0), ("y", 1)}
    assert "('x', 0, 1)" in repr(f) and "('x', 0, 1)" in f._repr_html_()
    # A string key that only looks like a tuple stays a string only if it is
    # no tuple's repr.
    assert client.submit(inc, 1, key="(not a tuple)").key == "(not a tuple)"
    client.cancel(f)
    with pytest.raises(FutureCancelledError):
        f.result()
    for bad in [("x", [1]), ("x", object()), True, 1j]:
        with pytest.raises(TypeError):
            client.submit(inc, 1, key=bad)
    del f, fs
    gc.collect()
    until(lambda: client.scheduler_info()["tasks"] == start, what="the tasks forgotten")


def test_lambdas_and_closures_run(client):
    offset = 100
    assert client.gather(client.map(lambda p: p + offset, range(3))) == [100, 101, 102]

    def local(x):
        return x * offset

    assert client.submit(local, 2).result() == 200


def test_large_results_are_fetched_from_the_worker(client):
    size = 5 * 1024 * 1024
    f = client.submit(big_bytes, size)
    data = f.result()
    assert len(data) == size and data[:1] == b"x"
    holders = client.who_has(f)[f.key]
    assert len(holders) == 1 and holders[0] in client.scheduler_info()["workers"]


def test_numpy_arrays_round_trip(client):
    np = pytest.importorskip("numpy")
    arr = np.arange(1_000_000, dtype="float64")
    f = client.submit(lambda a: a * 2, arr)
    out = f.result()
    assert out.dtype == arr.dtype and (out == arr * 2).all()


def test_pandas_dataframes_round_trip(client):
    pd = pytest.importorskip("pandas")

    def frame(n):
        return pd.DataFrame({"page": [n] * 3, "views": [1, 2, 3]})

    frames = client.gather(client.map(frame, range(4)))
    total = pd.concat(frames)
    assert list(total.columns) == ["page", "views"]
    assert total["views"].sum() == 24


def test_scatter_single_list_and_dict(client):
    one = client.scatter(10)
    assert isinstance(one, Future) and one.result() == 10
    many = client.scatter([1, 2, 3])
    assert [f.result() for f in many] == [1, 2, 3]
    named = client.scatter({"a": 1, "b": 2})
    assert named["a"].key == "a"
    assert client.submit(add, named["a"], named["b"]).result() == 3
    assert client.submit(sum, many).result() == 6


def test_scatter_hash_gives_stable_keys(client):
    assert client.scatter(123).key == client.scatter(123).key
    assert client.scatter(123, hash=False).key != client.scatter(123, hash=False).key


def test_workers_restriction_places_the_task(client):
    info = client.scheduler_info()["workers"]
    for address, w in info.items():
        assert client.submit(getpid, address, workers=[address], pure=False).result() == w["pid"]


def test_cancel_a_pending_future(fresh_client, tmp_path):
    client = fresh_client
    gate = tmp_path / "gate"
    log = tmp_path / "log"
    # The blockers compute until the gate opens: a worker may start a queued
    # task beside one that sleeps (it overlaps blocking calls), never
    # beside one that computes.
    blockers = [client.submit(spin_until_file, str(gate), i, pure=False) for i in range(2)]
    # Queued behind the blockers on one of the two workers.
    victim = client.submit(append_line, str(log), "victim", pure=False)
    victim.cancel()
    assert victim.cancelled()
    assert victim.status == "cancelled"
    with pytest.raises(FutureCancelledError):
        victim.result()
    # The scheduler forgot it: only the two blockers are left.
    assert client.scheduler_info()["tasks"] == 2
    gate.write_text("go")
    assert client.gather(blockers) == [0, 1]
    # A marker on each worker runs after anything queued there before it:
    # had the victim not been dropped, it would have run by now.
    markers = [
        client.submit(append_line, str(log), f"marker {w}", workers=[w], pure=False)
        for w in client.nthreads()
    ]
    client.gather(markers)
    assert sorted(log.read_text().split("\n")) == sorted(["", *(f.result() for f in markers)])


def test_result_timeout(client, tmp_path):
    gate = tmp_path / "gate"
    f = client.submit(wait_for_file, str(gate), pure=False)
    with pytest.raises(TimeoutError):
        f.result(timeout=0.05)
    gate.write_text("go")
    assert f.result(timeout=30) is None


def test_done_callbacks_run_once_done(client):
    seen = []
    event = threading.Event()

    def callback(fut):
        seen.append(fut.result())
        event.set()

    f = client.submit(inc, 7)
    f.add_done_callback(callback)
    assert event.wait(30)
    assert seen == [8]


def test_released_futures_are_forgotten_by_the_cluster(client):
    before = client.scheduler_info()["tasks"]
    futures = client.map(identity, range(1000, 1050), pure=False)
    client.gather(futures)
    assert client.scheduler_info()["tasks"] >= before + 50
    del futures
    gc.collect()
    info = client.scheduler_info()
    assert info["tasks"] == before
    assert sum(w["stored"] for w in info["workers"].values()) <= before


def test_a_future_pickled_into_a_task_is_its_value_there(client):
    a = client.submit(inc, 1)
    # A future inside a custom container still becomes a dependency.
    assert client.submit(lambda box: box[0] + 1, [a]).result() == 3


def test_unpickling_a_future_outside_a_task_gives_a_future_of_the_default_client(client):
    f = client.submit(inc, 1)
    data = pickle.dumps(f)
    with Client(client.scheduler_address) as other:
        copy = pickle.loads(data)
        assert copy.key == f.key and copy.client is other
        assert copy.result(timeout=30) == 2
    # When the newer default closes, the earlier one still running is the
    # default again, as in Dask (test_diagnostics covers having none at all).
    again = pickle.loads(data)
    assert again.client is client and again.result(timeout=30) == 2


def test_client_repr_reports_workers_threads_and_memory(client):
    text = repr(client)
    assert "processes=2" in text and "threads=2" in text and "GiB" in text
    assert "<table>" in client._repr_html_()
    assert client.nthreads() and all(n == 1 for n in client.nthreads().values())


def test_local_cluster_object_and_threads_workers():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False) as cluster:
        assert "workers=1" in repr(cluster)
        with Client(cluster) as c:
            assert c.submit(inc, 1).result() == 2
            # Threads of this process: the worker's pid is ours.
            import os

            assert c.submit(getpid, pure=False).result() == os.getpid()


def test_default_sizes_follow_the_machine():
    import math
    import os

    with LocalCluster(processes=True) as cluster:
        cpus = os.cpu_count() or 1
        workers, threads = cluster.n_workers, cluster.threads_per_worker
        # Every core used, as in Dask: a process per core up to 4 cores,
        # then about sqrt(cores) processes.
        assert workers * threads == cpus
        if cpus <= 4:
            assert (workers, threads) == (cpus, 1)
        else:
            assert workers >= math.sqrt(cpus) and threads > 1
        assert len(cluster.workers) == workers


def test_bad_arguments_are_clear_errors(client):
    with pytest.raises(TypeError, match="callable"):
        client.submit(1, 2)
    with pytest.raises(TypeError, match="callable"):
        client.map("nope", [1])
    with pytest.raises(TypeError):
        client.map(inc, 5)
    with pytest.raises(ValueError):
        client.gather([], errors="ignore")
    with pytest.raises(TypeError, match="keyword"):
        Client("tcp://127.0.0.1:1", n_workers=2)


def test_a_closed_client_refuses_work():
    c = Client(n_workers=1)
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.submit(inc, 1)


def test_many_threads_submitting_new_functions_at_once(client):
    from concurrent.futures import ThreadPoolExecutor

    def worker(t):
        fn = eval(f"lambda x: x + {t}")  # a new function per thread
        return client.gather([client.submit(fn, i) for i in range(50)])

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(worker, range(8)))
    assert results == [[i + t for i in range(50)] for t in range(8)]


def test_client_with_no_arguments_starts_a_local_cluster():
    with Client() as c:
        assert c.cluster is not None and c.cluster.status == "running"
        assert c.submit(inc, 1).result() == 2
    assert c.cluster.status == "closed"


def test_a_task_forgotten_while_it_runs_leaves_no_result_on_its_worker(fresh_client, tmp_path):
    """Its last future goes while it runs: the scheduler forgets it, and the
    result it makes afterwards is freed where it is made, not kept for
    ever (1 MB: too large to travel with its report)."""
    started, release = tmp_path / "started", tmp_path / "release"
    running = fresh_client.submit(
        start_then_wait, str(started), str(release), b"x" * 1_000_000, pure=False
    )
    until(started.exists, 30, "the task to start")
    del running
    until(lambda: not any(fresh_client.processing().values()), what="the task forgotten")
    release.touch()

    def running_tasks(dask_worker):
        return len(dask_worker.call_stacks())

    def held(dask_worker):
        return dask_worker.spilled_bytes["memory"]

    # Once it no longer runs, its result was stored; then it must go.
    until(lambda: set(fresh_client.run(running_tasks).values()) == {0}, what="the task to end")
    until(
        lambda: set(fresh_client.run(held).values()) == {0},
        what="the forgotten task's result freed on its worker",
    )


def test_a_task_cancelled_while_it_runs_does_not_hold_up_new_work(fresh_client, tmp_path):
    """Python cannot stop the cancelled task's thread: until it returns, its
    worker tells the scheduler it has no free slot, so new work goes to the
    idle worker instead of queueing behind it."""
    started, release = tmp_path / "started", tmp_path / "release"
    blocked = fresh_client.submit(start_then_wait, str(started), str(release), pure=False)
    try:
        until(started.exists, 30, "the task to start")
        blocked.cancel()
        # They run on the idle worker while the cancelled task still runs.
        work = fresh_client.map(inc, range(4), pure=False)
        done, not_done = wait(work, timeout=30)
        assert not not_done and fresh_client.gather(work) == [1, 2, 3, 4]
        assert not release.exists()
    finally:
        release.touch()
