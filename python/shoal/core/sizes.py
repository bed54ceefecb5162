"""Byte sizes as people write them (``"4GiB"``, ``"500 MB"``) and read them."""

from __future__ import annotations

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(text: str | int) -> int:
    """Read a size: ``"4GiB"`` -> 4294967296; plain numbers are bytes.

    Raises
    ------
    ValueError
        If ``text`` is not a size.

    """
    if isinstance(text, int):
        return text
    s = text.strip().lower().replace(" ", "")
    number = s.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = s[len(number) :]
    if unit not in _UNITS or not number:
        raise ValueError(f"cannot read {text!r} as a size (examples: 1000000, 500MB, 4GiB)")
    return int(float(number) * _UNITS[unit])


def format_bytes(n: int) -> str:
    """A size for people, e.g. ``'23.47 GiB'``."""
    for unit, size in (
        ("PiB", 2**50),
        ("TiB", 2**40),
        ("GiB", 2**30),
        ("MiB", 2**20),
        ("kiB", 2**10),
    ):
        if n >= size * 0.9:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
