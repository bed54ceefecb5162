"""Building task specs: the one place a :class:`shoal._engine.TaskSpec` is made."""

from __future__ import annotations

from collections.abc import Iterable

from .. import _engine

#: ``func`` of a task whose value is its own pickled payload (scattered data,
#: literals in a graph).
LITERAL_FUNC: int = _engine.LITERAL_FUNC


def task_spec(
    key: str,
    func: int,
    frames: list[bytes],
    deps: Iterable[str] = (),
    *,
    wanted: bool = True,
    options: int = 0,
) -> _engine.TaskSpec:
    """A task for the scheduler.

    Parameters
    ----------
    key
        The task's key.
    func
        The hash of its function, or ``LITERAL_FUNC`` for data.
    frames
        The pickled ``(args, kwargs)`` (or the pickled value, for data).
    deps
        Keys of the tasks whose results it needs.
    wanted
        Whether the client will hold a future for the key.
    options
        The index of its options in the submission's
        :class:`~.options.OptionsTable`.

    Returns
    -------
    shoal._engine.TaskSpec

    """
    return _engine.TaskSpec(
        key, func, frames, deps if type(deps) is list else list(deps), wanted, options
    )


def task_specs(
    keys: list[str], func: int, frames: list[list[bytes]], deps: list[list[str]], options: int
) -> list[_engine.TaskSpec]:
    """Wanted tasks of one function, one per key (``map``): as
    :func:`task_spec` makes each, in one pass.
    """
    make = _engine.TaskSpec
    return [make(k, func, f, d, True, options) for k, f, d in zip(keys, frames, deps)]


def parse_resources(text: str) -> list[tuple[str, float]]:
    """``"GPU=2,MEM=10e9"`` (commas or spaces between pairs) as pairs.

    Raises
    ------
    ValueError
        If a pair is not ``NAME=NUMBER``.

    """
    out: dict[str, float] = {}
    for pair in text.replace(",", " ").split():
        name, sep, amount = pair.partition("=")
        try:
            value = float(amount)
        except ValueError:
            value = float("nan")
        if not sep or not name or not value >= 0 or value == float("inf"):
            raise ValueError(f"resources must look like 'GPU=2,MEM=10e9', not {text!r}")
        out[name] = value
    return list(out.items())
