"""Retries that wait, and retries only of the errors worth retrying."""

from __future__ import annotations

import pytest

from shoal import Client

from tasks import async_fail_then_succeed, fail_then_succeed, finish_time


@pytest.fixture(scope="module")
def one_thread():
    with Client(n_workers=1, threads_per_worker=1, max_threads=1, set_as_default=False) as c:
        yield c


def _attempts(path):
    return [float(x) for x in path.read_text().split()]


def test_retries_wait_longer_each_time(one_thread, tmp_path):
    log = tmp_path / "attempts"
    f = one_thread.submit(
        fail_then_succeed, str(log), 2, retries=2, retry_delay=0.2, retry_max_delay=1.0
    )
    assert f.result() == 3
    a = _attempts(log)
    # The waits are the back-off (with jitter between half and all of it):
    # at least 0.1 s, then at least 0.2 s. Real clocks only bound a wait
    # from below; its upper bounds and the cap are checked exactly, on a
    # clock the test drives, by the scheduler core's own test
    # (crates/shoal-core/tests/faults.rs, a_retry_with_back_off_waits_then_runs).
    assert a[1] - a[0] >= 0.1
    assert a[2] - a[1] >= 0.2


def test_a_task_waiting_to_retry_holds_no_thread(one_thread, tmp_path):
    log = tmp_path / "attempts"
    flaky = one_thread.submit(fail_then_succeed, str(log), 1, retries=1, retry_delay=1.0)
    # The one thread is free while flaky waits: these run before its retry.
    others = one_thread.gather(one_thread.map(finish_time, range(5), pure=False))
    assert flaky.result() == 2
    first, retry = _attempts(log)
    assert max(others) < retry


def test_only_the_errors_named_are_retried(one_thread, tmp_path):
    log = tmp_path / "attempts"
    f = one_thread.submit(
        fail_then_succeed, str(log), 2, "ValueError", retries=3, retry_on=TimeoutError
    )
    with pytest.raises(ValueError, match="attempt 1"):
        f.result()
    assert len(_attempts(log)) == 1, "a ValueError is final"
    log2 = tmp_path / "attempts2"
    g = one_thread.submit(
        fail_then_succeed, str(log2), 2, "TimeoutError", retries=3, retry_on=(TimeoutError,)
    )
    assert g.result() == 3


def test_retry_options_work_with_map_and_async_functions(one_thread, tmp_path):
    logs = [str(tmp_path / f"log{i}") for i in range(3)]
    futures = one_thread.map(
        async_fail_then_succeed, logs, [1] * 3, retries=1, retry_delay=0.05, retry_on=TimeoutError
    )
    assert one_thread.gather(futures) == [2, 2, 2]
    bad = one_thread.map(
        async_fail_then_succeed,
        [str(tmp_path / "x")],
        [1],
        ["KeyError"],
        retries=2,
        retry_on=TimeoutError,
    )
    with pytest.raises(KeyError):
        bad[0].result()


def test_bad_retry_options_are_clear_errors(one_thread):
    with pytest.raises(TypeError, match="retry_on"):
        one_thread.submit(finish_time, retry_on="TimeoutError")
    with pytest.raises(ValueError, match="retry_delay"):
        one_thread.submit(finish_time, retry_delay=-1)
    with pytest.raises(ValueError, match="retry_delay"):
        one_thread.map(finish_time, [1], retry_delay=5, retry_max_delay=1)
