"""What importing ``warm_before`` or ``warm_after`` does: when the test
that owns them set ``SHOAL_TEST_IMPORT_LOG``, note this process's pid in
that file, then use :data:`COST` seconds of CPU (a package as heavy as
pandas, in small)."""

from __future__ import annotations

import os
import time

#: CPU seconds one import of such a module takes.
COST = 0.3


def record_and_burn(module: str) -> None:
    log = os.environ.get("SHOAL_TEST_IMPORT_LOG")
    if not log:
        return
    with open(f"{log}.{module}", "a") as f:
        f.write(f"{os.getpid()}\n")
    start = time.process_time()
    while time.process_time() - start < COST:
        pass


def importers(log: str, module: str) -> set[int]:
    """The pids of the processes that imported ``module`` so far."""
    try:
        with open(f"{log}.{module}") as f:
            return {int(line) for line in f if line.strip()}
    except FileNotFoundError:
        return set()
