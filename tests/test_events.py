"""The structured event log (``log_event``, ``get_events``,
``subscribe_topic``) and a task's ``shoal.print``/``shoal.warn`` shown by
the client."""

from __future__ import annotations

import threading
import time
import warnings

import pytest

import shoal
from shoal import Client, get_worker

from conftest import run_async, until


def log_from_task(topic, msg):
    get_worker().log_event(topic, msg)
    return msg


def print_from_task(text):
    shoal.print(text, "and more", sep="|")
    return text


def print_to_a_file_from_task(path):
    with open(path, "w") as f:
        shoal.print("nope", file=f)


def warn_from_task(text):
    shoal.warn(text, RuntimeWarning)
    return text


def test_events_are_kept_per_topic_and_read_back(client):
    before = time.time()
    client.log_event("alpha", {"n": 1})
    client.log_event(["alpha", "beta"], "both")
    alpha = client.get_events("alpha")
    assert [m for _, m in alpha] == [{"n": 1}, "both"]
    assert all(before <= t <= time.time() for t, _ in alpha)
    assert [m for _, m in client.get_events("beta")] == ["both"]
    assert client.get_events("nobody-logged-here") == ()
    every = client.get_events()
    assert {"alpha", "beta"} <= set(every) and every["beta"] == client.get_events("beta")
    with pytest.raises(TypeError):
        client.log_event(3, "not a topic")


def test_a_handler_gets_what_tasks_log_until_unsubscribed(client):
    got: list = []
    arrived = threading.Event()

    def handler(event):
        got.append(event)
        arrived.set()

    client.subscribe_topic("from-tasks", handler)
    assert client.submit(log_from_task, "from-tasks", "hello", pure=False).result() == "hello"
    assert arrived.wait(30)
    (stamp, msg), *_ = got
    assert msg == "hello" and isinstance(stamp, float)
    client.unsubscribe_topic("from-tasks")
    with pytest.raises(ValueError, match="No event handler"):
        client.unsubscribe_topic("from-tasks")
    # Kept by the scheduler even with nobody subscribed.
    client.submit(log_from_task, "from-tasks", "later", pure=False).result()
    assert [m for _, m in client.get_events("from-tasks")] == ["hello", "later"]
    assert [m for _, m in got] == ["hello"]
    # A dict logged by a worker names the worker, as in Dask.
    client.submit(log_from_task, "dicts", {"foo": "bar"}, pure=False).result()
    [(_, logged)] = client.get_events("dicts")
    assert logged["foo"] == "bar" and logged["worker"] in client.nthreads()


def test_print_in_a_task_shows_in_the_client(client, capsys):
    assert client.submit(print_from_task, "printed remotely", pure=False).result()
    seen = []

    def printed():
        seen.append(capsys.readouterr().out)
        return "printed remotely|and more\n" in "".join(seen)

    until(printed, 30, "the task's print in the client")
    with pytest.raises(TypeError, match="sys.stdout or sys.stderr"):
        client.submit(print_to_a_file_from_task, "/dev/null", pure=False).result()
    # Outside a task it is the built-in print.
    shoal.print("plain", "print", sep="-")
    assert capsys.readouterr().out == "plain-print\n"


def test_warn_in_a_task_warns_in_the_client(client):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert client.submit(warn_from_task, "careful", pure=False).result() == "careful"
        until(
            lambda: any(
                issubclass(w.category, RuntimeWarning) and "careful" in str(w.message)
                for w in caught
            ),
            30,
            "the task's warning in the client",
        )


def test_a_warning_class_defined_in_a_function_reaches_the_client(client):
    # Neither the class nor its instance can be pickled by name.
    class LocalWarning(UserWarning):
        pass

    def warn_locally():
        shoal.warn(LocalWarning("local class"))
        return True

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert client.submit(warn_locally, pure=False).result()
        until(
            lambda: any(
                w.category.__name__ == "LocalWarning" and "local class" in str(w.message)
                for w in caught
            ),
            30,
            "the task's warning in the client",
        )


def test_the_event_log_on_an_asynchronous_client(client):
    async def main():
        async with Client(client.scheduler.address, asynchronous=True, set_as_default=False) as c:
            await c.log_event("async-topic", 42)
            events = await c.get_events("async-topic")
            assert [m for _, m in events] == [42]

    run_async(main())


def log_on_worker(name, text):
    import logging

    logging.getLogger(name).warning("from a task: %s", text)
    logging.getLogger(name).debug("below the level")
    return text


def test_forward_logging_shows_worker_records_here(client):
    import logging

    got = []

    class Keep(logging.Handler):
        def emit(self, record):
            got.append(record)

    logger = logging.getLogger("shoal-test-forwarded")
    keep = Keep()
    logger.addHandler(keep)
    try:
        client.forward_logging("shoal-test-forwarded", level=logging.INFO)
        client.submit(log_on_worker, "shoal-test-forwarded", "hello", pure=False).result()
        until(lambda: got, what="the forwarded record")
        [record] = got
        assert record.getMessage() == "from a task: hello"
        assert record.levelno == logging.WARNING and record.name == "shoal-test-forwarded"
        client.unforward_logging("shoal-test-forwarded")
        client.submit(log_on_worker, "shoal-test-forwarded", "later", pure=False).result()
        # a marker through the same path proves "later" was not forwarded
        marker = {"name": "shoal-test-forwarded", "msg": "marker", "levelno": 30}
        client.log_event("forward-logging", marker)
        until(lambda: len(got) == 2, what="the marker")
        assert got[1].getMessage() == "marker"
    finally:
        logger.removeHandler(keep)
