"""Worker plugins: set up in every worker now and in every worker that joins
or restarts later, told of task transitions, torn down when removed; the
nanny-style ones (Environ, UploadDirectory) and register_worker_callbacks."""

from __future__ import annotations

import os

import pytest

from shoal import (
    Client,
    Environ,
    LocalCluster,
    NannyPlugin,
    PipInstall,
    SchedulerPlugin,
    UploadDirectory,
    WorkerPlugin,
)

from conftest import run_async
from tasks import inc


class Recorder(WorkerPlugin):
    """Records its setup, the transitions it sees, and its teardown."""

    name = "recorder"

    def __init__(self, marker_dir):
        self.marker_dir = str(marker_dir)

    def setup(self, worker):
        self.pid = os.getpid()
        self.seen = []

    def transition(self, key, start, finish, **kwargs):
        self.seen.append((key, start, finish))

    def teardown(self, worker):
        open(os.path.join(self.marker_dir, f"teardown-{os.getpid()}"), "w").close()


class Broken(WorkerPlugin):
    def setup(self, worker):
        raise RuntimeError("setup went wrong")


def seen_by_recorder(dask_worker):
    plugin = dask_worker.plugins.get("recorder")
    return None if plugin is None else (plugin.pid, list(plugin.seen))


def read_env(name):
    return os.environ.get(name)


def import_and_call(module):
    import importlib

    return importlib.import_module(module).answer()


def plugin_names(dask_worker):
    return sorted(dask_worker.plugins)


_calls = []


def remember_start(dask_worker):
    _calls.append(dask_worker.address)


def started_here():
    return list(_calls)


@pytest.fixture
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as lc:
        with Client(lc, set_as_default=False) as c:
            yield lc, c


def test_a_plugin_is_set_up_everywhere_and_sees_every_task(cluster, tmp_path):
    _, client = cluster
    answers = client.register_plugin(Recorder(tmp_path))
    assert answers == {w: {"status": "OK"} for w in client.scheduler_info()["workers"]}
    pids = set(client.run(os.getpid).values())
    results = client.run(seen_by_recorder)
    assert {pid for pid, _ in results.values()} == pids
    f = client.submit(inc, 1, key="watched")
    assert f.result() == 2
    seen = [t for _, ts in client.run(seen_by_recorder).values() for t in ts]
    assert ("watched", "ready", "executing") in seen
    assert ("watched", "executing", "memory") in seen


def test_workers_that_join_or_restart_later_get_the_plugin(cluster, tmp_path):
    lc, client = cluster
    client.register_plugin(Recorder(tmp_path))
    lc.scale(3)
    client.wait_for_workers(3, timeout=60)
    # A joining worker serves client calls only once the scheduler's join
    # messages (its plugins) are in: the plugin is there for the first one.
    assert all(names == ["recorder"] for names in client.run(plugin_names).values())
    client.restart()
    after = client.run(seen_by_recorder)
    # Set up again in each fresh interpreter (restart execs the worker).
    assert len(after) == 3 and all(r is not None for r in after.values())
    assert {pid for pid, _ in after.values()} == set(client.run(os.getpid).values())


def test_unregistering_tears_a_plugin_down(cluster, tmp_path):
    _, client = cluster
    client.register_plugin(Recorder(tmp_path))
    pids = set(client.run(os.getpid).values())
    client.unregister_worker_plugin("recorder")
    assert {p.name for p in tmp_path.iterdir()} == {f"teardown-{pid}" for pid in pids}
    assert all(names == [] for names in client.run(plugin_names).values())
    with pytest.raises(ValueError, match="does not exist"):
        client.unregister_worker_plugin("recorder")


def test_a_plugin_registered_again_replaces_the_old_one(cluster, tmp_path):
    _, client = cluster
    client.register_plugin(Recorder(tmp_path))
    client.register_plugin(Recorder(tmp_path))
    # The first was torn down when the second replaced it.
    assert len(list(tmp_path.iterdir())) == 2
    assert all(names == ["recorder"] for names in client.run(plugin_names).values())


def test_environ_and_upload_directory_reach_every_worker(cluster, tmp_path):
    _, client = cluster
    client.register_plugin(Environ({"SHOAL_PLUGIN_TEST": 42}))
    assert client.submit(read_env, "SHOAL_PLUGIN_TEST", pure=False).result() == "42"
    package = tmp_path / "mytools"
    package.mkdir()
    (package / "plugin_test_helpers.py").write_text("def answer():\n    return 'from upload'\n")
    client.register_plugin(UploadDirectory(str(package), update_path=True))
    assert (
        client.submit(import_and_call, "plugin_test_helpers", pure=False).result() == "from upload"
    )


def write_module(directory, version):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "restart_probe.py").write_text(f"def answer():\n    return {version}\n")


def test_a_plugin_that_asks_for_a_restart_restarts_the_workers_there_once(cluster, tmp_path):
    lc, client = cluster
    first, second = tmp_path / "v1" / "probe", tmp_path / "v2" / "probe"
    write_module(first, 1)
    client.register_plugin(UploadDirectory(str(first), update_path=True), name="probe")
    # Every worker imports version 1 (tasks on both, by restriction).
    workers = sorted(client.scheduler_info()["workers"])
    got = [
        client.submit(import_and_call, "restart_probe", workers=[w], pure=False) for w in workers
    ]
    assert client.gather(got) == [1, 1]
    # Version 2 under the same name: without a restart the workers would
    # keep the module they imported.
    write_module(second, 2)
    plugin = UploadDirectory(str(second), update_path=True, restart_workers=True)
    answers = client.register_plugin(plugin, name="probe")
    assert sorted(answers) == workers
    # A restarted worker is a fresh interpreter (exec'd in its process)
    # with a new data address.
    fresh = sorted(client.scheduler_info()["workers"])
    assert len(fresh) == 2 and set(fresh).isdisjoint(workers), "every worker there restarted"
    got = [client.submit(import_and_call, "restart_probe", workers=[w], pure=False) for w in fresh]
    assert client.gather(got) == [2, 2]
    # A worker that joins later installs it and does not restart.
    lc.scale(3)
    client.wait_for_workers(3, timeout=60)
    (joined,) = set(client.scheduler_info()["workers"]) - set(fresh)
    assert client.submit(import_and_call, "restart_probe", workers=[joined]).result() == 2
    assert joined in client.scheduler_info()["workers"]


def make_wheel(directory):
    """A wheel of one module, ``shoal_pip_probe``, made by hand (pip
    installs it with no index and no build)."""
    import zipfile

    path = directory / "shoal_pip_probe-1.0-py3-none-any.whl"
    files = {
        "shoal_pip_probe.py": "VERSION = 1\n",
        "shoal_pip_probe-1.0.dist-info/METADATA": (
            "Metadata-Version: 2.1\nName: shoal-pip-probe\nVersion: 1.0\n"
        ),
        "shoal_pip_probe-1.0.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = "".join(f"{name},,\n" for name in files) + "shoal_pip_probe-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("shoal_pip_probe-1.0.dist-info/RECORD", record)
    return path


def test_pip_install_with_restart_installs_then_restarts_the_workers(cluster, tmp_path):
    _, client = cluster
    target = tmp_path / "site"
    wheel = make_wheel(tmp_path)
    before = sorted(client.scheduler_info()["workers"])
    options = ["--no-index", "--no-deps", "--target", str(target)]
    plugin = PipInstall([str(wheel)], pip_options=options, restart_workers=True)
    assert plugin.restart is True
    answers = client.register_plugin(plugin)
    assert sorted(answers) == before
    assert (target / "shoal_pip_probe.py").exists()
    after = client.scheduler_info()["workers"]
    assert len(after) == 2 and set(after).isdisjoint(before), "restarted"
    with pytest.raises(TypeError, match="restart_workers"):
        PipInstall(["x"], restart_workers="yes")


def test_register_worker_callbacks_runs_now_and_on_joining_workers(cluster):
    lc, client = cluster
    client.register_worker_callbacks(remember_start)
    lc.scale(3)
    client.wait_for_workers(3, timeout=60)
    calls = client.run(started_here)
    assert all(calls[w] == [w] for w in calls) and len(calls) == 3


def test_bad_plugins_are_refused_and_setup_errors_raised(cluster):
    _, client = cluster
    with pytest.raises(RuntimeError, match="setup went wrong"):
        client.register_plugin(Broken())
    with pytest.raises(TypeError, match="instance"):
        client.register_plugin(Environ)
    with pytest.raises(TypeError, match="duck-typed"):
        client.register_plugin(object())
    with pytest.raises(NotImplementedError, match="runs no Python"):
        client.register_plugin(SchedulerPlugin())
    assert issubclass(Environ, NannyPlugin)


def test_plugins_on_an_asynchronous_client(cluster, tmp_path):
    lc, _ = cluster

    async def main():
        async with Client(lc.scheduler_address, asynchronous=True, set_as_default=False) as c:
            answers = await c.register_plugin(Recorder(tmp_path))
            assert len(answers) == 2
            await c.unregister_worker_plugin("recorder")

    run_async(main())


def test_upload_directory_modes(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        UploadDirectory(str(tmp_path), mode="invalid")
    with pytest.raises(NotImplementedError, match="runs no Python"):
        UploadDirectory(str(tmp_path), mode="scheduler")
    assert UploadDirectory(str(tmp_path), mode="workers").path == str(tmp_path)


def plugins_of_my_worker():
    from shoal import get_worker

    return sorted(get_worker().plugins)


def test_a_joining_worker_runs_no_task_before_its_plugins_are_set_up(cluster, tmp_path):
    lc, client = cluster
    client.register_plugin(Recorder(tmp_path))
    before = set(client.nthreads())
    lc.scale(3)
    client.wait_for_workers(3, timeout=60)
    (new,) = set(client.nthreads()) - before
    # sent the moment it is listed: the plugin is set up before they run
    jobs = [client.submit(plugins_of_my_worker, pure=False, workers=[new]) for _ in range(8)]
    assert all(names == ["recorder"] for names in client.gather(jobs))
