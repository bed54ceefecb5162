"""Durations in Dask's spellings: seconds as numbers, or strings such as
``"200 ms"``, ``"1.5s"``, ``"2 minutes"``, ``"1h"``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

_UNITS = {
    "us": 1e-6,
    "microsecond": 1e-6,
    "microseconds": 1e-6,
    "ms": 1e-3,
    "millisecond": 1e-3,
    "milliseconds": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}

_PATTERN = r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Z]*)\s*$"


def parse_timedelta(value: Any, default: str = "seconds") -> float | None:
    """Seconds in ``value``: a number (in ``default`` units), a
    :class:`datetime.timedelta`, or a string like ``"200 ms"``; None stays None.

    Examples
    --------
    >>> parse_timedelta("200 ms")
    0.2
    >>> parse_timedelta(3)
    3.0

    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool):
        raise TypeError(f"a duration must be a number or a string like '200 ms', not {value!r}")
    if isinstance(value, (int, float)):
        return float(value) * _UNITS[default]
    if isinstance(value, str):
        import re  # costs milliseconds at start-up; most durations are numbers

        m = re.match(_PATTERN, value)
        if m is not None:
            number, unit = m.groups()
            factor = _UNITS.get(unit.lower() if unit else default)
            if factor is not None:
                return float(number) * factor
        raise ValueError(
            f"could not read {value!r} as a duration: use a number of seconds or a string "
            "like '200 ms', '1.5 s', '2 minutes'"
        )
    raise TypeError(f"a duration must be a number or a string like '200 ms', not {value!r}")
