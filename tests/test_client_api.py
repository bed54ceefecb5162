"""Dask's smaller client calls and their semantics: ``ClosedClientError``,
``Client.current``/``as_current``, ``get_current_task`` and
``Future.type``."""

from __future__ import annotations

import collections
import pickle
from concurrent.futures import CancelledError

import pytest

import shoal
from shoal import Client, ClosedClientError, Future, LocalCluster, Variable, get_current_task

from tasks import inc, wait_for_file


def current_task_key():
    return get_current_task()


async def current_task_key_after_awaiting():
    import asyncio

    await asyncio.sleep(0.01)  # other tasks run on the loop meanwhile
    return get_current_task()


def ordered(n):
    return collections.OrderedDict((i, i) for i in range(n))


def test_a_closed_client_raises_closed_client_error(client, tmp_path):
    other = Client(client.scheduler.address, set_as_default=False)
    done = other.submit(inc, 1)
    assert done.result() == 2
    release = tmp_path / "release"
    pending = other.submit(wait_for_file, str(release), pure=False)
    other.close()
    # The task keeps its thread until it returns, cancelled or not: let it.
    release.write_text("")
    with pytest.raises(ClosedClientError):
        other.submit(inc, 2)
    with pytest.raises(ClosedClientError):
        Variable("v", client=other).get(timeout=1)
    # A future the closed client did not finish was cancelled with it.
    with pytest.raises(CancelledError):
        pending.result(timeout=10)
    # Code that caught the RuntimeError shoal raised before still does.
    assert issubclass(ClosedClientError, RuntimeError)


def test_as_current_makes_a_client_current_and_owns_unpickled_futures(client):
    assert Client.current() is client
    other = Client(client.scheduler.address, set_as_default=False)
    try:
        f = other.submit(inc, 10)
        assert f.result() == 11
        data = pickle.dumps(f)
        with other.as_current():
            assert Client.current() is other
            assert Client.current(allow_global=False) is other
            again = pickle.loads(data)
            assert isinstance(again, Future) and again.client is other
            assert again.result() == 11
        # the fixture's `with Client(...)` made it current, as in Dask
        assert Client.current(allow_global=False) is client
    finally:
        other.close()


def test_current_without_allow_global_needs_an_entered_client(client):
    import contextvars

    def outside_any_block():  # a fresh context: no `with` block entered
        assert Client.current() is client  # the default client
        with pytest.raises(ValueError, match="as_current"):
            Client.current(allow_global=False)

    contextvars.Context().run(outside_any_block)


def test_with_client_is_current_and_must_be_left_where_entered(client):
    import concurrent.futures

    c = Client(client.scheduler.address)
    with (
        concurrent.futures.ThreadPoolExecutor(1) as one,
        concurrent.futures.ThreadPoolExecutor(1) as two,
    ):
        one.submit(c.__enter__).result()
        assert one.submit(Client.current, allow_global=False).result() is c
        with pytest.raises(ValueError, match="different Context"):
            two.submit(c.__exit__, None, None, None).result()
    assert c.status == "closed"  # closed even so


def test_with_a_client_not_set_as_default_leaves_the_current_one(client):
    # As Dask's: only a client set as the default is current in its block.
    with Client(client.scheduler.address) as outer:
        with Client(client.scheduler.address, set_as_default=False) as inner:
            assert Client.current() is outer
            assert inner.submit(inc, 1).result() == 2
        assert Client.current() is outer


def test_get_current_task_names_the_running_task(client):
    assert client.submit(current_task_key, key="mine").result() == "mine"
    # async def tasks share the worker's event loop thread: each knows its own.
    keys = [f"async-{i}" for i in range(6)]
    futures = [client.submit(current_task_key_after_awaiting, key=k) for k in keys]
    assert client.gather(futures) == keys
    with pytest.raises(ValueError, match="outside a task"):
        get_current_task()


def test_future_type_is_the_class_of_the_result(client):
    assert client.submit(inc, 1).type in (None, int)  # None until it finishes
    f = client.submit(ordered, 3)
    f.result()
    assert f.type is collections.OrderedDict
    assert "collections.OrderedDict" in repr(f)
    assert client.submit(inc, 1.5).result() == 2.5


def test_get_versions_reports_every_process(client):
    v = client.get_versions(packages=["pytest"])
    assert set(v) == {"scheduler", "workers", "client"}
    workers = client.scheduler_info()["workers"]
    assert set(v["workers"]) == set(workers)
    for report in [v["client"], *v["workers"].values()]:
        assert report["packages"]["shoal"] == shoal.__version__
        assert report["packages"]["pytest"] == pytest.__version__
        assert report["host"]["python"].startswith("3.")
    # This client's local cluster runs the scheduler in this process.
    assert v["scheduler"] == v["client"]
    # The same versions everywhere: the check passes.
    assert client.get_versions(check=True, packages=["pytest"])["client"] == v["client"]


def test_a_version_mismatch_is_named():
    from shoal.core.versions import mismatch_message, mismatches

    same = {"packages": {"dask": "1", "numpy": "2"}}
    other = {"packages": {"dask": "1", "numpy": "3"}}
    rows = mismatches(same, same, {"w1": same, "w2": other})
    assert rows == [("numpy", "2", "2", {"2", "3"})]
    assert "numpy" in mismatch_message(rows)
    assert mismatches(same, {}, {"w1": same}) == []


async def _double_later(x):
    import asyncio

    await asyncio.sleep(0)
    return 2 * x


async def _forever():
    import asyncio

    await asyncio.Event().wait()


def test_sync_runs_a_coroutine_function_to_its_end(client):
    assert client.sync(_double_later, 21) == 42
    assert client.sync(len, [1, 2]) == 2
    with pytest.raises(TimeoutError):
        client.sync(_forever, callback_timeout=0.05)


def test_sync_returns_the_awaitable_on_an_asynchronous_client(client):
    import asyncio

    async def main():
        async with Client(client.scheduler.address, asynchronous=True, set_as_default=False) as c:
            pending = c.sync(_double_later, 5)
            assert asyncio.iscoroutine(pending)
            assert await pending == 10

    asyncio.run(main())


def set_in_task(key, value):
    from shoal import get_client

    get_client().set_metadata(key, value)


def test_metadata_is_kept_by_the_scheduler_and_reached_into(client):
    client.set_metadata("config", {"rate": 10, "nested": {"deep": [1, 2]}, "empty": {}})
    assert client.get_metadata("config") == {"rate": 10, "nested": {"deep": [1, 2]}, "empty": {}}
    assert client.get_metadata(["config", "nested", "deep"]) == [1, 2]
    assert client.get_metadata(("config", "empty")) == {}
    # A path makes dicts where there are none and replaces a value on the way.
    client.set_metadata(["config", "rate", "per"], "second")
    assert client.get_metadata(["config", "rate"]) == {"per": "second"}
    with pytest.raises(KeyError):
        client.get_metadata(["config", "missing"])
    assert client.get_metadata("nothing-here", default=None) is None
    # Non-dict values, and dicts with other keys, are kept whole.
    client.set_metadata("odd", {1: "one"})
    assert client.get_metadata("odd") == {1: "one"}
    # Tasks see and change the same metadata.
    client.submit(set_in_task, ["from", "task"], 7, pure=False).result()
    assert client.get_metadata("from") == {"task": 7}
    with pytest.raises(TypeError, match="strings"):
        client.set_metadata(1, "x")


def test_the_dashboard_link_follows_dasks_template(monkeypatch):
    import dask

    with LocalCluster(n_workers=1, dashboard_address=":0") as lc:
        plain = lc.dashboard_link
        assert plain.startswith("http://") and plain.endswith("/status")
        port = plain.rsplit(":", 1)[1].split("/")[0]
        monkeypatch.setenv("HUB_USER", "ada")
        template = "{scheme}://example.org/user/{HUB_USER}/proxy/{port}/status"
        with dask.config.set({"distributed.dashboard.link": template}):
            with Client(lc, set_as_default=False) as c:
                want = f"http://example.org/user/ada/proxy/{port}/status"
                assert c.dashboard_link == lc.dashboard_link == want
                assert want in repr(c)
        with dask.config.set({"distributed.dashboard.link": "{NOT_SET_ANYWHERE}/status"}):
            with pytest.warns(RuntimeWarning, match="NOT_SET_ANYWHERE"):
                assert lc.dashboard_link == plain
