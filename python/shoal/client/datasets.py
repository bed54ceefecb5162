"""Published datasets: named values the cluster keeps for any client.
Part of :class:`Client`.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from .._engine import Answer, Coord
from ..core import aio, serialize

_NO_DEFAULT = object()


class DatasetMethods:
    """The Client's calls for published datasets."""

    @aio.maybe_async
    def publish_dataset(
        self, *args: Any, name: str | None = None, override: bool = False, **kwargs: Any
    ) -> None:
        """Name data (futures, collections of them, or any value) so that
        other clients can get it with :meth:`get_dataset`. The scheduler
        keeps the futures' results while the name exists.

        Parameters
        ----------
        *args
            With ``name=``, the one value to publish.
        name
            The dataset's name.
        override
            Replace a dataset of that name instead of raising.
        **kwargs
            ``name=value`` pairs to publish.

        Raises
        ------
        KeyError
            If a dataset of that name exists and ``override`` is False.

        Examples
        --------
        >>> client.publish_dataset(prices=client.submit(load_prices))  # doctest: +SKIP
        >>> other_client.get_dataset("prices").result()  # doctest: +SKIP

        """
        if name is not None:
            if len(args) != 1:
                raise ValueError("publish_dataset(value, name=...) takes exactly one value")
            kwargs[name] = args[0]
        elif args:
            raise ValueError("publish_dataset needs name=... for a positional value")
        for key, value in kwargs.items():
            frames, keys = serialize.dumps_held(value, f"dataset {key!r}")
            answer = self._request(Coord.DatasetPublish(key, frames, keys, override))
            if isinstance(answer, Answer.Exists):
                raise KeyError(f"Dataset {key} already exists")

    @aio.maybe_async
    def get_dataset(self, name: str, default: Any = _NO_DEFAULT) -> Any:
        """The dataset published as ``name`` (futures come back as this
        client's futures).

        Raises
        ------
        KeyError
            If there is none and no ``default`` was given.

        """
        answer = self._request(Coord.DatasetGet(name))
        if not isinstance(answer, Answer.Items):
            if default is _NO_DEFAULT:
                raise KeyError(f"Dataset '{name}' not found")
            return default
        return serialize.loads_for(answer.items[0], self)

    @aio.maybe_async
    def list_datasets(self) -> list[str]:
        """The names of the published datasets."""
        answer = self._request(Coord.DatasetList())
        assert isinstance(answer, Answer.Names), answer
        return list(answer.names)

    @aio.maybe_async
    def unpublish_dataset(self, name: str) -> None:
        """Remove a published dataset.

        Raises
        ------
        KeyError
            If there is none of that name.

        """
        answer = self._request(Coord.DatasetDelete(name))
        if isinstance(answer, Answer.Missing):
            raise KeyError(f"Dataset '{name}' not found")

    @property
    def datasets(self) -> Datasets:
        """The published datasets as a mutable mapping."""
        return Datasets(self)


class Datasets(MutableMapping[str, Any]):
    """The published datasets of a cluster, as a mapping (``client.datasets``)."""

    def __init__(self, client: Any):
        self._client = client

    def __getitem__(self, name: str) -> Any:
        return self._client.get_dataset(name)

    def __setitem__(self, name: str, value: Any) -> None:
        self._client.publish_dataset(value, name=name, override=True)

    def __delitem__(self, name: str) -> None:
        self._client.unpublish_dataset(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._client.list_datasets())

    def __len__(self) -> int:
        return len(self._client.list_datasets())
