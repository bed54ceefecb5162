"""dask's own collections and scheduler protocol, running on shoal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import shoal
from shoal import Client

dask = pytest.importorskip("dask")
pytest.importorskip("dask.dataframe")
pytest.importorskip("pyarrow")
import dask.array as da  # noqa: E402
import dask.bag as db  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import pandas as pd  # noqa: E402

from tasks import getpid, inc  # noqa: E402


@pytest.fixture(scope="module")
def dclient():
    with Client(n_workers=2, threads_per_worker=1) as c:
        yield c


def _worker_pids(client):
    return {w["pid"] for w in client.scheduler_info()["workers"].values()}


def test_dask_compute_with_the_client_as_scheduler(dclient):
    x = dask.delayed(getpid)(0)
    (pid,) = dask.compute(x, scheduler=dclient)
    assert pid in _worker_pids(dclient)
    total = dask.delayed(sum)([dask.delayed(inc)(i) for i in range(8)])
    assert dask.compute(total, scheduler=dclient) == (36,)


def test_plain_compute_runs_on_the_default_client(dclient):
    # The fixture's client is the default one: dask uses it without being told.
    assert dask.delayed(getpid)(1).compute() in _worker_pids(dclient)


def test_dask_array_matches_the_threaded_scheduler(dclient):
    x = da.arange(10_000).reshape(100, 100).rechunk((20, 20))
    expr = (x + x.T).sum(axis=0) * 2
    expected = expr.compute(scheduler="threads")
    got = dask.compute(expr, scheduler=dclient)[0]
    assert (got == expected).all()
    assert x.sum().compute() == sum(range(10_000))


def test_dask_bag_matches_the_threaded_scheduler(dclient):
    b = db.from_sequence(range(100), npartitions=7).map(lambda v: v * 3).filter(lambda v: v % 2)
    assert b.compute() == b.compute(scheduler="threads")
    assert b.sum().compute() == sum(v * 3 for v in range(100) if (v * 3) % 2)


def test_dask_dataframe_matches_the_threaded_scheduler(dclient):
    pdf = pd.DataFrame({"g": [i % 5 for i in range(1000)], "v": range(1000)})
    ddf = dd.from_pandas(pdf, npartitions=6)
    agg = ddf.groupby("g").v.sum()
    pd.testing.assert_series_equal(agg.compute(), agg.compute(scheduler="threads"))
    assert ddf.v.mean().compute() == pdf.v.mean()


def test_client_compute_and_shoal_compute_take_dask_collections(dclient):
    x = da.ones(100, chunks=10).sum()
    assert dclient.compute(x).result() == 100
    assert shoal.compute(x, dask.delayed(inc)(1)) == (100, 2)


def test_from_delayed_over_shoal_futures_as_in_the_tutorial(dclient):
    def page(n):
        return pd.DataFrame({"view": [n, 2 * n]})

    t15 = dclient.map(page, range(15))
    test_del = dd.from_delayed(t15, meta=pd.DataFrame({"view": pd.Series([], dtype="int64")}))
    assert test_del["view"].sum().compute() == 3 * sum(range(15))


def test_from_delayed_over_shoal_delayed(dclient):
    parts = [shoal.delayed(pd.DataFrame)({"x": [i, i + 1]}) for i in range(4)]
    df = dd.from_delayed(parts, meta=pd.DataFrame({"x": pd.Series([], dtype="int64")}))
    assert df.x.sum().compute() == sum(2 * i + 1 for i in range(4))


def test_dask_delayed_calls_on_shoal_objects(dclient):
    f = dclient.submit(inc, 10)
    assert dask.delayed(inc)(f).compute() == 12
    d = shoal.delayed(inc)(20)
    assert dask.delayed(inc)(d).compute() == 22


def test_dask_graph_with_tuple_keys(dclient):
    dsk = {("x", 0): 1, ("x", 1): 2, "y": (sum, [("x", 0), ("x", 1)])}
    assert dclient.get(dsk, "y") == 3
    assert dclient.get(dsk, [["y"], [("x", 1)]]) == [[3], [2]]


def test_closing_the_client_gives_dask_its_default_back():
    with Client(n_workers=1, set_as_default=True) as c:
        assert dask.config.get("scheduler") is c
    assert dask.config.get("scheduler", None) is not c


def test_shoal_imports_and_runs_without_dask():
    code = (
        "import sys\n"
        "sys.modules['dask'] = None\n"
        "import shoal\n"
        "from shoal import delayed\n"
        "print(delayed(sum)([delayed(abs)(-1), 2]).compute())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_closing_an_older_client_keeps_the_newer_one_as_dasks_scheduler():
    with Client(n_workers=1) as a:
        with Client(n_workers=1) as b:
            a.close()
            assert dask.config.get("scheduler") is b
        assert dask.config.get("scheduler", None) is not b


def test_persist_of_a_dask_collection_keeps_its_values(dclient):
    x = da.arange(100, chunks=10) * 2
    (px,) = shoal.persist(x, scheduler=dclient)
    assert isinstance(px, da.Array)
    assert int(px.sum().compute()) == 9900
    py = dclient.persist(db.from_sequence(range(10), npartitions=2).map(inc))
    assert sorted(py.compute()) == list(range(1, 11))
