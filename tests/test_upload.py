"""``Client.upload_file``: .py, .zip and .egg files importable on every worker."""

from __future__ import annotations

import os
import zipfile

import pytest

from shoal import Client, LocalCluster


def _value(module):
    return __import__(module).VALUE


def _directory(dask_worker):
    return str(dask_worker.executors.uploads.directory)


def test_a_module_is_importable_on_current_and_future_workers(tmp_path):
    src = tmp_path / "shoal_uploaded_mod.py"
    src.write_text("VALUE = 1\n")
    with Client(n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        client.upload_file(src)
        assert client.gather(client.map(_value, ["shoal_uploaded_mod"] * 4, pure=False)) == [1] * 4
        src.write_text("VALUE = 2\n")
        client.upload_file(str(src))
        assert set(client.run(_value, "shoal_uploaded_mod").values()) == {2}, "reloaded"
        directories = list(client.run(_directory).values())
        client.restart()
        assert set(client.run(_value, "shoal_uploaded_mod").values()) == {2}, "new workers get it"
        assert not any(os.path.exists(d) for d in directories), "restarted workers cleaned up"
        directories = list(client.run(_directory).values())
    assert not any(os.path.exists(d) for d in directories), "closed workers cleaned up"


def test_archives_go_on_the_path(tmp_path):
    archive = tmp_path / "shoal_zipped.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("shoal_zipped_pkg/__init__.py", "VALUE = 3\n")
    egg = tmp_path / "shoal_egg.egg"
    with zipfile.ZipFile(egg, "w") as z:
        z.writestr("shoal_egg_mod.py", "VALUE = 4\n")
    with Client(n_workers=1, dashboard_address=None) as client:
        client.upload_file(archive)
        client.upload_file(egg)
        assert client.submit(_value, "shoal_zipped_pkg").result() == 3
        assert client.submit(_value, "shoal_egg_mod").result() == 4


def test_a_broken_module_raises_its_error_and_missing_files_raise(tmp_path, client):
    bad = tmp_path / "shoal_broken_mod.py"
    bad.write_text("def broken(:\n")
    with pytest.raises(SyntaxError):
        client.upload_file(bad)
    client.upload_file(bad, load=False)  # saved, not imported
    with pytest.raises(FileNotFoundError):
        client.upload_file(tmp_path / "missing.py")


@pytest.mark.parametrize("planted", ["open to others", "a link"])
@pytest.mark.parametrize("processes", [True, False])
def test_a_planted_per_user_directory_is_never_used(tmp_path, planted, processes):
    # Workers import uploaded files from under <local_directory>/shoal-<uid>:
    # one that someone else could write to is refused before any starts.
    root = tmp_path / f"shoal-{os.getuid()}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    if planted == "a link":
        root.symlink_to(elsewhere)
    else:
        root.mkdir()
        root.chmod(0o777)
    with pytest.raises(PermissionError, match="not a private directory"):
        LocalCluster(
            n_workers=1,
            processes=processes,
            local_directory=str(tmp_path),
            dashboard_address=None,
        )
    assert list(elsewhere.iterdir()) == []
    assert root.is_symlink() or list(root.iterdir()) == []


def test_the_per_user_directory_is_found_without_probing_the_temporary_directory(tmp_path):
    # tempfile.gettempdir() writes and deletes a file to test the directory;
    # a worker killed at that moment (they are, at close) would leave it.
    import subprocess
    import sys

    code = (
        "import tempfile\n"
        "def probed():\n"
        "    raise AssertionError('gettempdir probes the directory')\n"
        "tempfile.gettempdir = probed\n"
        "from shoal.worker.uploads import user_root\n"
        "print(user_root())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / f"shoal-{os.getuid()}")
    assert list(tmp_path.iterdir()) == []
