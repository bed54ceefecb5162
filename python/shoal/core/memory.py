"""Memory limits, and the fractions of them at which a worker spills, pauses
and restarts, read as Dask reads them.

A fraction comes from the first of: an argument (``memory_target_fraction=``,
as Dask's ``Worker`` takes), Dask's configuration
(``distributed.worker.memory.target``, ``.spill``, ``.pause``,
``.terminate``) if dask is loaded, the environment variable Dask reads for
it (``DASK_DISTRIBUTED__WORKER__MEMORY__TARGET``), and Dask's default.
``False`` turns a step off.
"""

from __future__ import annotations

from typing import Any, Optional

from .settings import setting
from .sizes import parse_bytes

#: The steps, in order, with Dask's defaults.
DEFAULTS = {"target": 0.6, "spill": 0.7, "pause": 0.8, "terminate": 0.95}

Fractions = tuple[Optional[float], Optional[float], Optional[float], Optional[float]]

_MISSING = object()


def parse_memory_limit(limit: Any, n_workers: int, total: int) -> int:
    """A worker's memory limit in bytes (0: none), from Dask's spellings.

    Parameters
    ----------
    limit
        ``"auto"`` (the machine's memory split evenly between the workers),
        a size (``"4GiB"``, ``2e9``), a fraction of the machine's memory
        (``0.25``), or ``None``/``0`` for no limit.
    n_workers
        How many workers share the machine (for ``"auto"``).
    total
        The machine's memory in bytes.

    Returns
    -------
    int
        Bytes, at most the machine's memory; 0 for no limit.

    Raises
    ------
    ValueError
        If ``limit`` is not one of those.

    """
    if limit is None or limit is False:
        return 0
    if isinstance(limit, str) and limit.strip().lower() == "auto":
        return total // max(n_workers, 1)
    if isinstance(limit, bool):
        raise ValueError(f"memory_limit must be a size, a fraction or 'auto', not {limit!r}")
    if isinstance(limit, (int, float)):
        if limit < 0:
            raise ValueError(f"memory_limit must not be negative, not {limit!r}")
        if 0 < limit <= 1 and isinstance(limit, float):
            return int(limit * total)
        return min(int(limit), total) if total else int(limit)
    if isinstance(limit, str):
        n = parse_bytes(limit)
        return min(n, total) if total else n
    raise ValueError(
        f"memory_limit must be a size like '4GiB', a fraction or 'auto', not {limit!r}"
    )


def _fraction(name: str, value: Any) -> float | None:
    if value is False or value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("false", "off", "none", "no"):
            return None
        try:
            value = float(text)
        except ValueError:
            raise ValueError(
                f"the memory {name} fraction must be a number or False, not {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(
            f"the memory {name} fraction must be above 0 and at most 1, or False, not {value!r}"
        )
    return float(value)


def _configured(name: str) -> Any:
    """What Dask's configuration says of step ``name``, if anything."""
    return setting(f"distributed.worker.memory.{name}", _MISSING)


def fractions(**given: Any) -> Fractions:
    """The target, spill, pause and terminate fractions: each from its
    keyword argument (``target=``, ``spill=``, ...) if given, else Dask's
    configuration, the environment, or Dask's default.

    Raises
    ------
    ValueError
        For a fraction that is not a number in (0, 1] or False.

    """
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"no memory step named {sorted(unknown)}")
    out = []
    for name, default in DEFAULTS.items():
        value = given.get(name, _MISSING)
        if value is _MISSING:
            value = _configured(name)
        if value is _MISSING:
            value = default
        out.append(_fraction(name, value))
    return (out[0], out[1], out[2], out[3])


def fraction_arguments(fr: Fractions) -> list[str]:
    """``shoal worker`` options giving these fractions."""
    args = []
    for name, value in zip(DEFAULTS, fr):
        args += [f"--memory-{name}", "off" if value is None else repr(value)]
    return args
