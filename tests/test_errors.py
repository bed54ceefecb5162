"""Exceptions in tasks, serialization failures, retries, bad addresses."""

from __future__ import annotations

import threading
import traceback

import pytest

from shoal import Client

from tasks import CustomError, div, fail_first, inc, raise_custom, unpicklable_result


def test_the_original_exception_type_is_raised_with_the_remote_traceback(client):
    f = client.submit(div, 1, 0)
    with pytest.raises(ZeroDivisionError) as info:
        f.result()
    text = "".join(traceback.format_exception(info.value))
    assert "return x / y" in text and "tasks.py" in text
    assert f.status == "error"
    assert isinstance(f.exception(), ZeroDivisionError)
    tb = f.traceback()
    assert tb is not None
    assert any("div" in line for line in traceback.format_tb(tb))


def test_custom_exceptions_keep_their_type_and_message(client):
    f = client.submit(raise_custom, "bad page")
    with pytest.raises(CustomError, match="bad page"):
        f.result()


def test_an_exception_propagates_to_dependents(client):
    bad = client.submit(div, 1, 0)
    dependent = client.submit(inc, bad)
    with pytest.raises(ZeroDivisionError):
        dependent.result()


def test_gather_raises_or_skips_errors(client):
    good = client.submit(inc, 1)
    bad = client.submit(div, 1, 0)
    with pytest.raises(ZeroDivisionError):
        client.gather([good, bad])
    assert client.gather([good, bad], errors="skip") == [2]


def test_a_successful_future_has_no_exception(client):
    f = client.submit(inc, 1)
    assert f.exception() is None and f.traceback() is None


def test_unpicklable_function_is_a_type_error_at_submit(client):
    lock = threading.Lock()

    def uses_lock(x):
        with lock:
            return x

    with pytest.raises(TypeError, match="uses_lock"):
        client.submit(uses_lock, 1)


def test_unpicklable_argument_is_a_type_error_at_submit(client):
    with pytest.raises(TypeError, match="lock"):
        client.submit(inc, threading.Lock())
    with pytest.raises(TypeError, match="lock"):
        client.map(inc, [1, threading.Lock()])


def test_unpicklable_result_errs_naming_task_and_type(client):
    f = client.submit(unpicklable_result)
    with pytest.raises(TypeError) as info:
        f.result()
    msg = str(info.value)
    assert f.key in msg and "lock" in msg.lower()


def test_retries_rerun_a_failing_task(client, tmp_path):
    counter = tmp_path / "count"
    f = client.submit(fail_first, str(counter), 2, retries=2)
    assert f.result() == 2
    counter2 = tmp_path / "count2"
    g = client.submit(fail_first, str(counter2), 5, retries=1)
    with pytest.raises(ValueError, match="attempt 1"):
        g.result()


def test_connecting_to_nothing_fails_fast_and_clearly():
    with pytest.raises(OSError, match="could not connect"):
        Client("tcp://127.0.0.1:1", timeout=3)
    with pytest.raises(OSError, match="could not connect"):
        Client("tcp://nowhere.invalid:1", timeout=3)


def test_bad_address_type_is_a_type_error():
    from shoal import LocalCluster

    with pytest.raises(TypeError, match="must be a string or a Cluster instance"):
        Client(12345)
    with pytest.raises(TypeError, match="an instance, not the class"):
        Client(LocalCluster)
