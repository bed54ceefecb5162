"""Runs one framework's part of a benchmark in a subprocess of its own.

The subprocess prints ``RESULT <json>`` when it is done, and may print one
after each step too: the last one counts, so the steps a framework finished
are reported even if a later one kills it or runs out of time. It runs in a
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
    why = None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        why = "timeout"
    lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
    if not lines:
        return why or err[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    if why or proc.returncode:
        cause = why or f"exit {proc.returncode}"
        print(f"stopped early ({cause}):\n{err[-3000:]}", file=sys.stderr)
    return result


def report(result: dict) -> None:
    """What the subprocess prints at the end."""
    print("RESULT " + json.dumps(result), flush=True)


def run_each(script: str, names: list[str], args: list[str], timeout: float) -> dict[str, dict]:
    """Run ``script``'s child part for each framework in ``names`` (shoal
    and dask by default), one after the other; each one's result, or ``{}``
    with the reason on standard error when it has none.
    """
    results = {}
    for name in names or ["shoal", "dask"]:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        r = run_child(script, [name, *args], timeout)
        if isinstance(r, str):
            print(f"{name} failed:\n{r}", file=sys.stderr)
            r = {}
        results[name] = r
    return results


def touch_memory(gb: float | None = None) -> None:
    """Write ``gb`` GB once and free it (``SHOAL_BENCH_TOUCH_GB``, 16 by
    default). On a virtual machine whose host backs guest memory on first
    touch, whichever framework ran first would otherwise pay that
    once-per-boot cost for both.
    """
    import numpy as np

    if gb is None:
        gb = float(os.environ.get("SHOAL_BENCH_TOUCH_GB", "16"))
    for _ in range(int(gb)):
        np.ones(125_000_000)


def print_table(title: str, steps: list[str], results: dict[str, dict], unit: str = "") -> None:
    """A markdown table: a row per step, a column per framework, and
    shoal's figure over Dask's where both have one."""
    names = list(results)
    print(f"| {title} | " + " | ".join(names) + " | shoal / dask |")
    print("|---|" + "---|" * (len(names) + 1))
    for step in steps:
        cells, nums = [], {}
        for name in names:
            v = results[name].get(step, "failed" if not results[name] else "—")
            cells.append(f"{v:.2f}{unit}" if isinstance(v, float) else str(v))
            nums[name] = v if isinstance(v, float) else None
        ours, theirs = nums.get("shoal"), nums.get("dask")
        ratio = f"{ours / theirs:.2f}x" if ours and theirs else ""
        print(f"| {step} | " + " | ".join(cells) + f" | {ratio} |")
