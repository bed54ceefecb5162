"""The joblib backend: ``joblib.parallel_config(backend="shoal")``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

joblib = pytest.importorskip("joblib")

from tasks import div, getpid, inc  # noqa: E402


def test_parallel_runs_on_the_cluster(client):
    with joblib.parallel_config(backend="shoal"):
        out = joblib.Parallel()(joblib.delayed(inc)(i) for i in range(50))
        pids = set(joblib.Parallel(n_jobs=-1)(joblib.delayed(getpid)(i) for i in range(20)))
    assert out == list(range(1, 51))
    assert os.getpid() not in pids
    assert pids <= set(client.run(os.getpid).values())


def test_errors_come_back_from_parallel(client):
    with joblib.parallel_config(backend="shoal"), pytest.raises(ZeroDivisionError):
        joblib.Parallel()(joblib.delayed(div)(1, x) for x in [1, 0, 2])


def test_the_backend_is_registered_when_joblib_is_imported_after_shoal(client):
    code = textwrap.dedent(
        f"""
        import sys
        import shoal
        assert "joblib" not in sys.modules, "import shoal must not import joblib"
        import joblib
        from shoal import Client
        with Client({client.scheduler_address!r}, set_as_default=True):
            with joblib.parallel_config(backend="shoal"):
                print(sum(joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(5))))
        """
    )
    env = {**os.environ, "SHOAL_TOKEN": client.cluster.security.token}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "10"
