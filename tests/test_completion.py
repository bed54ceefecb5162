"""as_completed and wait."""

from __future__ import annotations

from concurrent.futures import CancelledError

import pytest

from shoal import FIRST_COMPLETED, FIRST_EXCEPTION, as_completed, wait

from tasks import div, inc, wait_for_file


def test_as_completed_yields_every_future_once(client):
    futures = client.map(inc, range(20))
    seen = [f.result() for f in as_completed(futures)]
    assert sorted(seen) == list(range(1, 21))


def test_as_completed_yields_in_completion_order(client, tmp_path):
    gate = tmp_path / "gate"
    slow = client.submit(wait_for_file, str(gate), "slow", pure=False)
    fast = client.submit(inc, 1)
    ac = as_completed([slow, fast])
    first = next(ac)
    assert first is fast
    gate.write_text("go")
    assert next(ac) is slow
    with pytest.raises(StopIteration):
        next(ac)


def test_as_completed_with_results_and_errors(client):
    good = client.submit(div, 1, 1)
    bad = client.submit(div, 1, 0)
    results = dict(
        (f.key, r) for f, r in as_completed([good, bad], with_results=True, raise_errors=False)
    )
    assert results[good.key] == 1.0
    kind, error, traceback = results[bad.key]  # as Dask: (type, exception, traceback)
    assert kind is ZeroDivisionError and isinstance(error, ZeroDivisionError)
    assert traceback is error.__traceback__
    with pytest.raises(ZeroDivisionError):
        for _ in as_completed([bad], with_results=True):
            pass


def test_as_completed_with_results_yields_a_cancelled_futures_error(client, tmp_path):
    gate_file = tmp_path / "gate"
    gate = client.submit(wait_for_file, str(gate_file))
    done = client.submit(inc, 1)
    ac = as_completed([gate, done], with_results=True)
    gate.cancel()
    results = dict(ac)
    gate_file.write_text("")  # lets the cancelled task end
    assert isinstance(results[gate], CancelledError)
    assert results[done] == 2


def test_as_completed_accepts_futures_added_while_iterating(client):
    ac = as_completed([client.submit(inc, 1)])
    results = []
    for f in ac:
        results.append(f.result())
        if len(results) < 3:
            ac.add(client.submit(inc, f.result()))
    assert results == [2, 3, 4]
    assert ac.is_empty() and ac.count() == 0


def test_as_completed_batches(client):
    futures = client.map(inc, range(30))
    total = []
    for batch in as_completed(futures).batches():
        assert batch
        total.extend(f.result() for f in batch)
    assert sorted(total) == list(range(1, 31))


def test_as_completed_counts_duplicate_futures(client):
    a = client.submit(inc, 5)
    b = client.submit(inc, 5)
    assert a.key == b.key
    got = list(as_completed([a, b]))
    assert len(got) == 2 and {id(x) for x in got} == {id(a), id(b)}


def test_as_completed_sums_a_column_as_in_the_tutorial(client):
    pd = pytest.importorskip("pandas")

    def page(n):
        return pd.DataFrame({"view": [n, 2 * n]})

    total = 0
    for future in as_completed(client.map(page, range(15))):
        total += future.result()["view"].sum()
    assert total == 3 * sum(range(15))


def test_wait_all_completed(client):
    futures = client.map(inc, range(10))
    done, not_done = wait(futures)
    assert len(done) == 10 and not not_done


def test_wait_first_completed_returns_early(client, tmp_path):
    gate = tmp_path / "gate"
    slow = client.submit(wait_for_file, str(gate), pure=False)
    fast = client.submit(inc, 2)
    done, not_done = wait([slow, fast], return_when=FIRST_COMPLETED)
    assert fast in done and slow in not_done
    gate.write_text("go")
    slow.result()


def test_wait_first_exception(client, tmp_path):
    gate = tmp_path / "gate"
    slow = client.submit(wait_for_file, str(gate), pure=False)
    bad = client.submit(div, 1, 0)
    done, not_done = wait([slow, bad], return_when=FIRST_EXCEPTION)
    assert bad in done and slow in not_done
    gate.write_text("go")
    slow.result()


def test_wait_timeout_raises(client, tmp_path):
    gate = tmp_path / "gate"
    slow = client.submit(wait_for_file, str(gate), pure=False)
    with pytest.raises(TimeoutError):
        wait([slow], timeout=0.05)
    gate.write_text("go")
    wait(slow)
    assert slow.done()


def test_wait_rejects_bad_return_when(client):
    with pytest.raises(ValueError):
        wait([client.submit(inc, 1)], return_when="WHENEVER")
