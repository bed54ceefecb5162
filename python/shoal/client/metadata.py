"""``set_metadata`` and ``get_metadata``: small values kept by the
scheduler in a tree of named dicts. Part of :class:`Client`.

A dict with string keys is sent as its tree, so a later path can reach
inside it; anything else is a pickled leaf. Keys are strings (Dask also
takes other msgpack values; shoal raises ``TypeError`` for them).
"""

from __future__ import annotations

from typing import Any

from .._engine import Answer, Coord
from ..coordination._request import ask
from ..core import aio, serialize

#: ``get_metadata``'s default for "raise KeyError".
_NO_DEFAULT = object()


def _path(keys: Any, path_types: tuple[type, ...]) -> list[str]:
    parts = list(keys) if isinstance(keys, path_types) else [keys]
    if not parts:
        raise ValueError("a metadata key needs at least one part")
    for part in parts:
        if not isinstance(part, str):
            raise TypeError(f"metadata keys are strings in shoal, not {part!r}")
    return parts


def _rows(value: Any, path: list[str], out: list[tuple[list[str], Any]]) -> None:
    """``value`` as pre-order rows: a dict with string keys is a dict row
    and its items; anything else one pickled leaf.
    """
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        out.append((list(path), None))
        for k, v in value.items():
            path.append(k)
            _rows(v, path, out)
            path.pop()
    else:
        out.append((list(path), serialize.dumps(value)))


def _tree(rows: list[tuple[list[str], Any]]) -> Any:
    """The value rows describe (the inverse of :func:`_rows`)."""
    (root_path, root_frames), *rest = rows
    if root_frames is not None:
        return serialize.loads(root_frames)
    root: dict[str, Any] = {}
    for path, frames in rest:
        parent = root
        for part in path[:-1]:
            parent = parent[part]
        parent[path[-1]] = {} if frames is None else serialize.loads(frames)
    return root


class MetadataCalls:
    """The Client's calls on the scheduler's metadata."""

    @aio.maybe_async
    def set_metadata(self, key: str | list[str], value: Any) -> None:
        """Keep ``value`` in the scheduler under ``key``.

        Parameters
        ----------
        key
            A name, or a list of names: a path into nested dicts (made
            where missing; a value on the way is replaced by a dict).
        value
            Any picklable value; a dict with string keys can be reached
            into by a longer path later.

        Examples
        --------
        >>> client.set_metadata("x", {"y": 1})  # doctest: +SKIP
        >>> client.get_metadata(["x", "y"])  # doctest: +SKIP
        1

        """
        rows: list[tuple[list[str], Any]] = []
        _rows(value, [], rows)
        ask(self, Coord.SetMetadata(_path(key, (list,)), rows))

    @aio.maybe_async
    def get_metadata(self, keys: str | list[str], default: Any = _NO_DEFAULT) -> Any:
        """The value kept under ``keys``.

        Parameters
        ----------
        keys
            A name, or a list (or tuple) of names: a path into nested dicts.
        default
            Returned when nothing is there (default: raise ``KeyError``).

        Returns
        -------
        The value (a dict for a path that ends at a dict).

        Raises
        ------
        KeyError
            If nothing is there and no default was given.

        """
        path = _path(keys, (list, tuple))
        answer = ask(self, Coord.GetMetadata(path))
        if isinstance(answer, Answer.Missing):
            if default is _NO_DEFAULT:
                raise KeyError(keys)
            return default
        assert isinstance(answer, Answer.Metadata), answer
        return _tree(answer.entries)
