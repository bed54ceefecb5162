"""Published datasets: named values the cluster keeps for any client.
Part of :class:`Client`.

A dataset's name is any Dask key (a string, bytes, a number, or a tuple of
them), as in Dask; the scheduler knows it by :func:`shoal.core.keys.name_text`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, MutableMapping
from typing import Any

from .._engine import Answer, Coord
from ..core import aio, families, keys, serialize

_NO_DEFAULT = object()


def wire_name(name: Any) -> str:
    """The string the scheduler knows dataset ``name`` by."""
    keys.check_dask_key(name, "a dataset name's")
    return keys.name_text(name)


def _named(args: tuple[Any, ...], name: Any, kwargs: dict[str, Any]) -> list[tuple[Any, Any]]:
    """The (name, value) pairs of a ``publish_dataset`` call."""
    pairs: list[tuple[Any, Any]] = list(kwargs.items())
    if name is not None:
        if not args:
            raise ValueError(
                "If name is provided, expecting call signature like publish_dataset(df, name='ds')"
            )
        pairs.append((name, args[0] if len(args) == 1 else args))
    elif args:
        if len(args) != 1 or not isinstance(args[0], Mapping):
            raise ValueError("If name is omitted, positional argument must be a {name: value} dict")
        pairs.extend(args[0].items())
    return pairs


class DatasetMethods:
    """The Client's calls for published datasets."""

    @aio.maybe_async
    def publish_dataset(
        self, *args: Any, name: Any = None, override: bool = False, **kwargs: Any
    ) -> None:
        """Name data (futures, collections of them, or any value) so that
        other clients can get it with :meth:`get_dataset`. The scheduler
        keeps the futures' results while the name exists.

        Parameters
        ----------
        *args
            With ``name=``, the value to publish (several: a tuple of them);
            without, one ``{name: value}`` dict.
        name
            The dataset's name: a string, bytes, a number, or a tuple of them.
        override
            Replace a dataset of that name instead of raising.
        **kwargs
            ``name=value`` pairs to publish.

        Raises
        ------
        KeyError
            If a dataset of that name exists and ``override`` is False.
        ValueError
            For ``name=`` without a value, or positional values without
            ``name=`` that are not one dict.

        Examples
        --------
        >>> client.publish_dataset(prices=client.submit(load_prices))  # doctest: +SKIP
        >>> other_client.get_dataset("prices").result()  # doctest: +SKIP

        """
        pairs = _named(args, name, kwargs)
        wire = [(wire_name(key), key, value) for key, value in pairs]
        for text, key, value in wire:
            families.check_sendable(value, self._serializers, f"dataset {key!r}")
            frames, keys = serialize.dumps_held(value, f"dataset {key!r}")
            answer = self._request(Coord.DatasetPublish(text, frames, keys, override))
            if isinstance(answer, Answer.Exists):
                raise KeyError(f"Dataset {key} already exists")

    @aio.maybe_async
    def get_dataset(self, name: Any, default: Any = _NO_DEFAULT) -> Any:
        """The dataset published as ``name`` (futures come back as this
        client's futures); for a list of names, a list of datasets.

        Parameters
        ----------
        name
            A dataset's name, or a list of names.
        default
            Returned for a name that is not published (default: raise).

        Returns
        -------
        The dataset, or a list of them.

        Raises
        ------
        KeyError
            If there is none and no ``default`` was given.

        Examples
        --------
        >>> client.get_dataset("prices")  # doctest: +SKIP

        """
        names = name if isinstance(name, list) else [name]
        out = []
        for one in names:
            answer = self._request(Coord.DatasetGet(wire_name(one)))
            if isinstance(answer, Answer.Items):
                out.append(serialize.loads_for(answer.items[0], self))
            elif default is _NO_DEFAULT:
                raise KeyError(f"Dataset '{one}' not found")
            else:
                out.append(default)
        return out if isinstance(name, list) else out[0]

    @aio.maybe_async
    def list_datasets(self) -> list[Any]:
        """The names of the published datasets, in the order of their text.

        Examples
        --------
        >>> client.list_datasets()  # doctest: +SKIP
        ['prices']

        """
        answer = self._request(Coord.DatasetList())
        if not isinstance(answer, Answer.Names):
            raise RuntimeError(f"the scheduler answered a dataset list with {answer!r}")
        return sorted((keys.name_from_text(n) for n in answer.names), key=str)

    @aio.maybe_async
    def unpublish_dataset(self, name: Any) -> None:
        """Remove published datasets (a name, or a list of names); a name
        that is not published is passed over, as in Dask, so a task that
        runs twice can unpublish safely.

        Examples
        --------
        >>> client.unpublish_dataset("prices")  # doctest: +SKIP

        """
        for one in name if isinstance(name, list) else [name]:
            self._request(Coord.DatasetDelete(wire_name(one)))

    @property
    def datasets(self) -> Datasets:
        """The published datasets as a mutable mapping (``async for`` over
        it on an asynchronous client).
        """
        return Datasets(self)


class Datasets(MutableMapping[Any, Any]):
    """The published datasets of a cluster, as a mapping (``client.datasets``).

    On an asynchronous client its lookups return coroutines and it is
    iterated with ``async for``.
    """

    def __init__(self, client: Any):
        self._client = client

    def __getitem__(self, name: Any) -> Any:
        return self._client.get_dataset(name)

    def __setitem__(self, name: Any, value: Any) -> None:
        if self._client.asynchronous:
            raise TypeError("on an asynchronous client use await client.publish_dataset(...)")
        self._client.publish_dataset(value, name=name, override=True)

    def __delitem__(self, name: Any) -> None:
        if self._client.asynchronous:
            raise TypeError("on an asynchronous client use await client.unpublish_dataset(...)")
        self._client.unpublish_dataset(name)

    def __iter__(self) -> Iterator[Any]:
        if self._client.asynchronous:
            raise TypeError("on an asynchronous client iterate with `async for`")
        return iter(self._client.list_datasets())

    def __aiter__(self) -> AsyncIterator[Any]:
        if not self._client.asynchronous:
            raise TypeError("`async for` needs an asynchronous client; use `for`")
        return self._anames()

    async def _anames(self) -> AsyncIterator[Any]:
        for name in await self._client.list_datasets():
            yield name

    def __len__(self) -> int:
        if self._client.asynchronous:
            raise TypeError("on an asynchronous client use len(await client.list_datasets())")
        return len(self._client.list_datasets())
