"""The soak benchmark (``benches/soak.py``) for a minute: random work from
three client processes while workers are SIGKILLed and SIGSTOPped, clients
are killed, garbage connections arrive and (as root) a worker's network
link goes down and up; nothing may be wrong, stuck or
left behind (the script checks, and exits 1 if anything is)."""

import os
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(600)

SOAK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benches", "soak.py")


def test_a_minute_of_faults_loses_nothing_and_leaks_nothing():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    out = subprocess.run(
        [sys.executable, SOAK, "--seconds", "60", "--seed", "1"],
        capture_output=True,
        text=True,
        env=env,
        timeout=540,
    )
    report = out.stdout[out.stdout.find("soak:") :]
    assert out.returncode == 0, report + out.stderr[-3000:]
    assert "wrong answers: 0; tasks failed" in report
    assert "(0 unexpected)" in report and "processes left: []; files left: []" in report
    if os.geteuid() == 0 and shutil.which("ip"):
        # A worker on a network namespace of its own, its link taken down.
        assert "1 over a link of its own" in report
        assert re.search(r"link [1-9]", report), report
