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
import statistics
import subprocess
import sys
from typing import Callable


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


def run_each(
    script: str,
    names: list[str],
    args: list[str] | Callable[[int], list[str]],
    timeout: float,
    rounds: int = 1,
) -> dict[str, dict]:
    """Run ``script``'s child part for each framework in ``names`` (shoal
    and dask by default), one after the other, ``rounds`` times in turn
    (each time a fresh process and a fresh cluster); each one's result, or
    ``{}`` with the reason on standard error when it has none. ``args``
    may depend on the round (from 0).

    With several rounds a step's figure is the median of the rounds, and
    ``"<step> range"`` holds the lowest and highest: on a small virtual
    machine one run of the same step can differ from the next by 2x, for
    Dask as for shoal, and a single run would compare noise.
    """
    runs: dict[str, list[dict]] = {name: [] for name in names or ["shoal", "dask"]}
    for i in range(rounds):
        for name in runs:
            round_ = f" (round {i + 1} of {rounds})" if rounds > 1 else ""
            print(f"running {name}{round_} ...", file=sys.stderr, flush=True)
            round_args = args(i) if callable(args) else args
            r = run_child(script, [name, *round_args], timeout)
            if isinstance(r, str):
                print(f"{name} failed:\n{r}", file=sys.stderr)
                r = {}
            runs[name].append(r)
    return {name: combine(rs) for name, rs in runs.items()}


def combine(runs: list[dict]) -> dict:
    """One result from several rounds: the median of each numeric step (and
    its range), the first round's value of any other."""
    if len(runs) == 1:
        return runs[0]
    out: dict = {}
    for step in dict.fromkeys(k for r in runs for k in r):
        values = [r[step] for r in runs if step in r]
        nums = sorted(v for v in values if isinstance(v, (int, float)))
        if len(nums) == len(values):
            out[step] = float(statistics.median(nums))
            out[f"{step} range"] = (nums[0], nums[-1])
        else:
            out[step] = values[0]
    return out


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
    """A markdown table: a row per step, a column per framework (the
    median and, after several rounds, the range in brackets), and shoal's
    figure over Dask's where both have one."""
    names = list(results)
    print(f"| {title} | " + " | ".join(names) + " | shoal / dask |")
    print("|---|" + "---|" * (len(names) + 1))
    for step in steps:
        cells, nums = [], {}
        for name in names:
            v = results[name].get(step, "failed" if not results[name] else "—")
            cell = f"{v:.2f}{unit}" if isinstance(v, float) else str(v)
            spread = results[name].get(f"{step} range")
            if spread and isinstance(v, float):
                cell += f" ({spread[0]:.2f}–{spread[1]:.2f})"
            cells.append(cell)
            nums[name] = v if isinstance(v, float) else None
        ours, theirs = nums.get("shoal"), nums.get("dask")
        ratio = f"{ours / theirs:.2f}x" if ours and theirs else ""
        print(f"| {step} | " + " | ".join(cells) + f" | {ratio} |")


def steps_main(script: str, title: str, steps: list[str], run: Callable[[str], dict]) -> None:
    """The command line of a benchmark of timed steps: ``--child NAME``
    runs ``run(NAME)`` and reports it; otherwise ``[NAME...] [--rounds N]``
    runs each framework ``N`` times (3 by default) in turn and prints the
    table titled ``title``, a row per step."""
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "--child":
        report(run(argv[1]))
        return
    rounds, names, it = 3, [], iter(argv)
    for arg in it:
        if arg == "--rounds":
            rounds = int(next(it))
        else:
            names.append(arg)
    results = run_each(script, names, [], 300.0, rounds=rounds)
    print_table(title, steps, results, " s")
