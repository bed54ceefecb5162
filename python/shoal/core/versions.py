"""What a process runs: its Python, its machine, and the versions of the
packages a cluster needs to agree on (``Client.get_versions``).
"""

from __future__ import annotations

import functools
import os
import struct
import sys
from collections.abc import Iterable, Mapping
from typing import Any

# importlib.metadata and platform are imported where used: `import shoal`
# should not pay for them (20 ms) unless get_versions is called.

#: Packages every process of a cluster must have at the same version.
REQUIRED = ("shoal", "cloudpickle", "dask")
#: Packages compared when present.
OPTIONAL = ("numpy", "pandas", "pyarrow", "toolz")


@functools.cache
def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def system() -> dict[str, Any]:
    """This process's Python and machine."""
    import platform

    uname = platform.uname()
    return {
        "python": ".".join(str(p) for p in sys.version_info),
        "python-bits": struct.calcsize("P") * 8,
        "OS": uname.system,
        "OS-release": uname.release,
        "machine": uname.machine,
        "processor": uname.processor,
        "byteorder": sys.byteorder,
        "LC_ALL": os.environ.get("LC_ALL", "None"),
        "LANG": os.environ.get("LANG", "None"),
    }


def versions(packages: Iterable[str] = ()) -> dict[str, Any]:
    """``{"host": ..., "packages": ...}`` of this process: the required
    and optional packages and ``packages`` (None where not installed).
    """
    names = dict.fromkeys([*REQUIRED, *OPTIONAL, *packages])
    found: dict[str, str | None] = {"python": ".".join(map(str, sys.version_info[:3]))}
    found.update((n, _version(n)) for n in names)
    return {"host": system(), "packages": found}


def mismatches(
    client: Mapping[str, Any], scheduler: Mapping[str, Any], workers: Mapping[str, Any]
) -> list[tuple[str, Any, Any, Any]]:
    """Packages whose versions differ between the processes, as
    ``(package, client's, scheduler's, workers')`` rows (workers' is one
    version, or the set of them when they differ among themselves). A
    process that did not report (None) or does not know a package is not
    compared on it.
    """
    reports = {"client": client, "scheduler": scheduler, **{w: v for w, v in workers.items()}}
    packages = {p for r in reports.values() if r for p in (r.get("packages") or {})}
    rows = []
    for p in sorted(packages):
        seen = {
            name: r["packages"][p]
            for name, r in reports.items()
            if r and r.get("packages") and p in r["packages"] and r["packages"][p] is not None
        }
        if len(set(seen.values())) <= 1:
            continue
        ws = {v for name, v in seen.items() if name not in ("client", "scheduler")}
        rows.append(
            (p, seen.get("client"), seen.get("scheduler"), next(iter(ws)) if len(ws) == 1 else ws)
        )
    return rows


def mismatch_message(rows: list[tuple[str, Any, Any, Any]]) -> str:
    """The rows of :func:`mismatches` as the text of an error."""
    lines = ["Mismatched versions found", "", "package | client | scheduler | workers"]
    lines += [" | ".join(str(x) for x in row) for row in rows]
    return "\n".join(lines)
