"""dask collections on a shoal cluster: persisted collections stay on the
workers, ``futures_of``/``wait``/``as_completed``/``progress`` follow them,
``dask.annotate`` sets task options, and dataframe shuffles are right on
several worker processes.
"""

from __future__ import annotations

import ast
import io
import os

import dask
import dask.array as da
import dask.bag as db
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

from shoal import Client, Future, as_completed, futures_of, get_task_stream, progress, wait

from conftest import until

ROWS = 20_000


def part(i: int, rows: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    return pd.DataFrame(
        {
            "x": rng.random(rows),
            "k": rng.integers(0, 5_000, rows),
            "name": rng.choice(["alice", "bob", "carol", "dan"], rows),
        }
    )


def whole(n: int) -> pd.DataFrame:
    return pd.concat([part(i) for i in range(n)], ignore_index=True)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fail_once(path, x):
    if not os.path.exists(path):
        open(path, "w").close()
        raise OSError("first attempt fails")
    return x


@pytest.fixture(scope="module")
def c3():
    with Client(n_workers=3, threads_per_worker=1, dashboard_address=None) as c:
        yield c


def test_a_persisted_frame_stays_on_the_workers(c3):
    df = dd.from_map(part, range(24), rows=100_000)  # about 60 MB, made on workers
    before = rss()
    p = c3.persist(df)
    wait(p)
    # The partitions are on the workers: the client grew by far less than them.
    assert rss() - before < 30 * 2**20
    futures = futures_of(p)
    assert len(futures) == 24 and all(isinstance(f, Future) for f in futures)
    held = c3.who_has(futures)
    assert all(held[f.key] for f in futures)
    pd.testing.assert_frame_equal(p.partitions[0].compute(), part(0, 100_000), check_dtype=False)
    assert p.x.sum().compute() == pytest.approx(df.x.sum().compute())
    assert len(p) == 24 * 100_000


def test_persist_from_dask_and_from_shoal_agree(c3):
    x = da.random.default_rng(0).random((400, 400), chunks=(100, 100))
    a = x.persist()
    (b,) = dask.persist(x)
    assert len(futures_of(a)) == len(futures_of(b)) == 16
    assert float((a + a.T).mean().compute()) == pytest.approx(float((x + x.T).mean().compute()))
    bag = db.from_sequence(range(100), npartitions=4).map(lambda v: v * 2).persist()
    assert len(futures_of(bag)) == 4
    assert sorted(bag.compute()) == [v * 2 for v in range(100)]


def test_wait_as_completed_and_progress_take_collections(c3):
    p = c3.persist(dd.from_map(part, range(6)))
    done, not_done = wait(p)
    assert len(done) == 6 and not not_done
    assert sum(1 for _ in as_completed(p)) == 6
    out = io.StringIO()
    progress(p, file=out)
    assert "6/6" in out.getvalue()
    with pytest.raises(TypeError, match="expected Futures"):
        wait([1, 2])


def test_compute_of_a_collection_is_a_future(c3):
    f = c3.compute(dd.from_map(part, range(3)).x.sum())
    assert isinstance(f, Future)
    assert f.result() == pytest.approx(whole(3).x.sum())


def test_annotations_become_task_options(c3, tmp_path):
    a, b, _ = sorted(c3.scheduler_info()["workers"])
    with dask.annotate(workers=[b]):
        x = dask.delayed(os.getpid)()
    pids = {w["pid"]: addr for addr, w in c3.scheduler_info()["workers"].items()}
    assert pids[c3.compute(x).result()] == b
    # retries: a task that fails once succeeds with retries=1 ...
    with dask.annotate(retries=1):
        y = dask.delayed(fail_once)(str(tmp_path / "gate"), 7)
    assert c3.compute(y).result() == 7
    # ... and errs without it.
    z = dask.delayed(fail_once)(str(tmp_path / "other"), 7)
    with pytest.raises(OSError, match="first attempt"):
        c3.compute(z).result()
    # A persisted array placed by an annotation lives where it was told (as
    # in Dask, fusing layers when the graph is optimized drops annotations).
    with dask.annotate(workers=[a]):
        arr = da.ones(1000, chunks=250) + 1
    placed = c3.persist(arr, optimize_graph=False)
    wait(placed)
    held = c3.who_has(futures_of(placed))
    assert {w for ws in held.values() for w in ws} == {a}
    with dask.annotate(resources={"GPU": "lots"}), pytest.raises(TypeError, match="annotations"):
        c3.compute(dask.delayed(os.getpid)())


def test_blocks_are_consumed_soon_after_they_are_made():
    """``(x + x.T)`` reads every block of ``x`` twice, at (i, j) and (j, i).
    Run in ``dask.order``'s order, with a ready task that reads results
    taken before a new root, as Dask's scheduler does, each pair is made and
    consumed together (6 to 8 of the 56 off-diagonal blocks held at once on
    two workers); in submission order alone, 29 to 30 wait for their second
    reader, and in depth-first order from the output, 37 to 38.
    """
    x = da.random.random((8_000, 8_000), chunks=(1_000, 1_000))
    # A cluster of its own: how deep a worker's queue is follows the mean
    # duration of the tasks it has seen, here only these.
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as c:
        with get_task_stream(c) as ts:
            total = float((x + x.T).mean(axis=0).sum().compute())
    assert total == pytest.approx(8_000, rel=0.01)  # 8,000 column means of about 1
    made, read = {}, {}
    for r in ts.data:
        key = ast.literal_eval(r["key"]) if r["key"].startswith("(") else (r["key"],)
        if len(key) != 3:
            continue  # the reduction's steps above the blocks
        name, i, j = key
        stop = r["startstops"][0]["stop"]
        if name.startswith("random_sample-mean_chunk"):
            continue  # a diagonal block, made and read inside one task
        if name.startswith("random_sample"):
            made[(i, j)] = stop
        elif name.startswith("mean_chunk"):
            read[(i, j)] = stop
    assert len(made) == 56 and len(read) == 64
    # A block (i, j) is held from its making until (i, j) and (j, i) are read.
    events = sorted(
        [(t, 1) for t in made.values()] + [(max(read[(i, j)], read[(j, i)]), -1) for (i, j) in made]
    )
    live = peak = 0
    for _, step in events:
        live += step
        peak = max(peak, live)
    assert peak <= 16, f"{peak} blocks waited for their second reader at once"


def test_a_worker_lets_go_of_an_unpickled_input_when_it_is_freed(c3):
    """Executors keep recently unpickled large inputs (fetched from another
    worker) for the next reader; once the scheduler frees the result, the
    worker keeps none of it."""
    a, b = sorted(c3.scheduler_info()["workers"])[:2]
    block = c3.submit(np.ones, 1_000_000, workers=[b], pure=False)
    assert c3.submit(np.sum, block, workers=[a], pure=False).result() == 1_000_000
    key = block.key

    def cached(dask_worker):
        return key in dask_worker.executors.inputs._items

    assert c3.run(cached, workers=[a]) == {a: True}
    del block
    until(lambda: c3.run(cached, workers=[a]) == {a: False}, what="the input let go")


def _writeable(x):
    return x.flags.writeable


def test_a_task_reads_an_array_made_on_its_worker_as_it_was_made(c3):
    """As in Dask, a result read where it was made is the object itself (an
    array stays writeable), never a copy rebuilt from its pickle; read on
    another worker or by the client, it arrives whole."""
    a, b = sorted(c3.scheduler_info()["workers"])[:2]
    block = c3.submit(np.arange, 1_000_000, workers=[a], pure=False)
    assert c3.submit(_writeable, block, workers=[a], pure=False).result() is True
    assert c3.submit(np.sum, block, workers=[b], pure=False).result() == np.arange(1_000_000).sum()
    np.testing.assert_array_equal(block.result(), np.arange(1_000_000))
    frame = c3.submit(
        lambda n: pd.DataFrame({"x": np.arange(n), "s": pd.array(["v"] * n, dtype="string")}),
        100_000,
        workers=[a],
        pure=False,
    )
    got = c3.submit(lambda df: df.s.str.len().sum(), frame, workers=[b], pure=False).result()
    assert got == 100_000
    pd.testing.assert_frame_equal(
        frame.result(),
        pd.DataFrame({"x": np.arange(100_000), "s": pd.array(["v"] * 100_000, dtype="string")}),
    )


def test_dask_uses_the_task_shuffle_on_a_shoal_cluster(c3):
    assert dask.config.get("dataframe.shuffle.method") == "tasks"


def test_shuffles_equal_pandas_on_three_processes(c3):
    n = 6
    df = dd.from_map(part, range(n))
    pdf = whole(n)
    # groupby-apply by a series (the case the disk shuffle got wrong)
    got = df.groupby(df.k).apply(len, meta=(None, "int64")).compute().sort_index()
    want = pdf.groupby(pdf.k).apply(len).sort_index()
    assert got.to_dict() == want.to_dict()
    # set_index and sort_values
    s = df.set_index("x").compute()
    assert s.index.is_monotonic_increasing and len(s) == len(pdf)
    assert np.allclose(np.sort(pdf.x.to_numpy()), s.index.to_numpy())
    sv = df.sort_values("k").compute()
    assert sv.k.is_monotonic_increasing and sorted(sv.x) == sorted(pdf.x)
    # a merge of two frames on a key with many values
    other = dd.from_map(part, range(n, 2 * n))
    merged = df.merge(other, on="k").compute()
    expected = pdf.merge(whole(2 * n).iloc[n * ROWS :], on="k")
    assert len(merged) == len(expected)
    assert merged.x_x.sum() == pytest.approx(expected.x_x.sum())
    # a groupby with many groups, split out
    g = df.groupby("k").x.sum(split_out=3).compute().sort_index()
    assert np.allclose(g.to_numpy(), pdf.groupby("k").x.sum().sort_index().to_numpy())


def numeric_part(i: int, rows: int = 1_000_000) -> pd.DataFrame:
    rng = np.random.default_rng(i)
    return pd.DataFrame({"x": rng.random(rows), "y": rng.random(rows)})


def summary(p: pd.DataFrame) -> tuple[int, bool, float, float, float]:
    if not len(p):
        return (0, True, 0.0, np.inf, -np.inf)
    return (len(p), p.index.is_monotonic_increasing, float(p.y.sum()), p.index[0], p.index[-1])


@pytest.mark.timeout(300)
def test_a_shuffle_larger_than_the_workers_memory_completes_by_spilling():
    # 640 MB of partitions, shuffled into another 640 MB: more than any
    # worker's limit, and more than all of them keep in memory (three
    # workers of 450 MB, about 150 MB of which is the interpreter, pandas
    # and dask): values must spill, and workers must not die of it.
    n = 40
    with Client(
        n_workers=3, threads_per_worker=1, memory_limit="450MB", dashboard_address=None
    ) as c:
        df = dd.from_map(numeric_part, range(n))
        parts = c.compute(df.set_index("x").map_partitions(summary, meta=(None, "object")))
        parts = parts.result()
    parts = [p for p in parts if p[0]]
    assert sum(p[0] for p in parts) == n * 1_000_000
    assert all(p[1] for p in parts), "every partition sorted"
    assert all(a[4] <= b[3] for a, b in zip(parts, parts[1:])), "partitions in order"
    expected = sum(numeric_part(i).y.sum() for i in range(n))
    assert sum(p[2] for p in parts) == pytest.approx(expected)


def _compute_inside(collection):
    """In a task: compute a dask collection."""
    return collection.compute()


def _where(_):
    """The shoal worker running this (raises outside a shoal task)."""
    from shoal import get_worker

    return get_worker().address


def test_a_collection_computed_in_a_task_runs_on_the_cluster(c3):
    # As Dask's get_client: a persisted frame passed to a task (its graph
    # holds futures) is computed through the worker's client; a task that
    # waits so gives up its slot, so one thread is enough.
    pdf = pd.DataFrame({"x": range(10)})
    persisted = dd.from_pandas(pdf, npartitions=3).persist()
    scattered = c3.scatter(persisted)
    pd.testing.assert_frame_equal(c3.submit(_compute_inside, scattered).result(), pdf)
    # Each partition ran as a shoal task (dask's own threads have no worker).
    bag = db.from_sequence(range(20), npartitions=4).map(_where)
    workers = set(c3.scheduler_info()["workers"])
    assert set(c3.submit(_compute_inside, bag).result()) <= workers


def _shuffle_method_in_a_task():
    from dask.dataframe.dask_expr._util import get_default_shuffle_method

    return get_default_shuffle_method()


def test_a_task_shuffles_with_tasks_too(c3):
    # A frame shuffled inside a task runs on several processes: never the
    # single-machine disk shuffle dask would otherwise pick there.
    assert c3.submit(_shuffle_method_in_a_task).result() == "tasks"


def _arrow_pool():
    import pyarrow

    return pyarrow.default_memory_pool().backend_name


def test_workers_allocate_arrow_memory_where_their_allocator_policy_applies(c3):
    """Arrow's buffers come from the system allocator in worker processes,
    whose mode the worker sets (roomy, then frugal near its limit)."""
    assert set(c3.run(_arrow_pool).values()) == {"system"}


def _count_pickling():
    """In a worker: count the pickling of kept results from now on (the
    engine looks ``shoal.core.serialize.dumps`` up on first use)."""
    import shoal.core.serialize as s

    calls = s._held_calls = []
    dumps = s.dumps

    def counted(obj):
        calls.append(type(obj).__name__)
        return dumps(obj)

    s.dumps = counted


def _pickled():
    import shoal.core.serialize as s

    return list(s._held_calls)


def test_a_kept_result_read_elsewhere_is_pickled_once_for_all_its_readers():
    with Client(n_workers=3, threads_per_worker=1, dashboard_address=None) as c:
        a, b, d = sorted(c.scheduler_info()["workers"])
        c.run(_count_pickling, workers=[a])
        block = c.submit(np.arange, 1_000_000, workers=[a], pure=False)
        sums = [c.submit(np.sum, block, workers=[w], pure=False) for w in (b, d)]
        assert c.gather(sums) == [np.arange(1_000_000).sum()] * 2
        np.testing.assert_array_equal(block.result(), np.arange(1_000_000))
        # Two peers and the client read it: one pickling (others on that
        # worker, such as Client.run's answers, are not counted here).
        assert c.run(_pickled, workers=[a])[a].count("ndarray") == 1
