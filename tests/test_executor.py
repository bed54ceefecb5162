"""``Client.get_executor``: the cluster behind the standard library's API."""

from __future__ import annotations

import concurrent.futures as cf

import pytest

from tasks import div, inc, wait_for_file


def test_submit_returns_standard_futures(client):
    with client.get_executor() as ex:
        assert isinstance(ex, cf.Executor)
        fs = [ex.submit(inc, i) for i in range(10)]
        assert all(isinstance(f, cf.Future) for f in fs)
        done, not_done = cf.wait(fs)
        assert not not_done
        assert sorted(f.result() for f in cf.as_completed(fs)) == list(range(1, 11))
        bad = ex.submit(div, 1, 0)
        with pytest.raises(ZeroDivisionError):
            bad.result(timeout=30)
        assert isinstance(bad.exception(), ZeroDivisionError)


def test_map_keeps_order_and_options_apply(client):
    first = next(iter(client.nthreads()))
    with client.get_executor(workers=[first]) as ex:
        assert list(ex.map(inc, range(20))) == list(range(1, 21))
        assert list(ex.map(divmod, [7, 9], [2, 4])) == [(3, 1), (2, 1)]
    with pytest.raises(TypeError, match="unsupported arguments to ClientExecutor"):
        client.get_executor(nonsense=1)
    with pytest.raises(NotImplementedError, match="chunksize"):
        client.get_executor().map(inc, [1], chunksize=4)


def test_calls_are_pure_by_default_as_submit_and_options_apply_per_call(client, tmp_path):
    counter = tmp_path / "runs"

    def record(_):
        with open(counter, "a") as f:
            f.write("x")
        return 1

    with client.get_executor() as ex:  # as Dask's: one run for equal calls
        assert [ex.submit(record, 0).result() for _ in range(3)] == [1, 1, 1]
    assert counter.read_text() == "x"
    with client.get_executor(pure=False) as ex:
        assert [ex.submit(record, 1).result() for _ in range(2)] == [1, 1]
        assert ex.submit(record, 2, pure=True).result() == 1
        assert ex.submit(record, 2, pure=True).result() == 1
    assert counter.read_text() == "x" + "xx" + "x"


def test_shutdown_refuses_new_work_and_can_cancel(client, tmp_path):
    ex = client.get_executor()
    release = tmp_path / "release"
    blocker = ex.submit(wait_for_file, str(release))
    queued = [ex.submit(inc, i) for i in range(3)]
    ex.shutdown(wait=False, cancel_futures=True)
    with pytest.raises(RuntimeError, match="shutdown"):
        ex.submit(inc, 1)
    with pytest.raises(cf.CancelledError):
        blocker.result(timeout=30)
    # Each queued call was cancelled, or had started on the other worker
    # before the shutdown and finished with its value.
    for i, f in enumerate(queued):
        try:
            assert f.result(timeout=30) == i + 1
        except cf.CancelledError:
            pass
    release.write_text("")  # a running task is not interrupted: let it end
