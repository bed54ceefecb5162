"""Runs one framework's part of a benchmark in a subprocess of its own.

The subprocess prints ``RESULT <json>`` when it is done. It runs in a
session of its own, so a framework stopped at the timeout takes its worker
processes with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


def run_child(script: str, args: list[str], timeout: float) -> dict | str:
    """Run ``python script --child *args``; its result, or why there is none
    (``"timeout"``, or the end of its error output)."""
    proc = subprocess.Popen(
        [sys.executable, script, "--child", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timeout"
    line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        return err[-3000:]
    return json.loads(line[len("RESULT ") :])


def report(result: dict) -> None:
    """What the subprocess prints at the end."""
    print("RESULT " + json.dumps(result), flush=True)
