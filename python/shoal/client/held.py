"""What a client holds: ``Client.futures`` and ``Client.refcount``, read-only
views of the client core's table of keys, by Dask's names. Part of
:class:`Client`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..core.errors import rebuild, remote_traceback
from ..core.keys import check_key, dask_key
from ..core.session import Session


def _text(key: object) -> str | None:
    """The text the cluster knows ``key`` by (None for what is no key)."""
    try:
        return check_key(key)
    except TypeError:
        return None


class FutureState:
    """The state this client knows of one key it holds futures for."""

    def __init__(self, session: Session, key: str):
        self._session = session
        self.key = key

    @property
    def status(self) -> str:
        """``"pending"``, ``"finished"``, ``"error"`` or ``"cancelled"``
        (``"lost"`` once the client no longer holds the key).
        """
        return self._session.status(self.key) or "lost"

    @property
    def exception(self) -> BaseException | None:
        """The task's exception, if it failed."""
        error = self._session.error(self.key)
        return None if error is None else rebuild(error)

    @property
    def traceback(self) -> Any:
        """The task's traceback, if it failed."""
        error = self._session.error(self.key)
        return None if error is None else remote_traceback(error)

    def __repr__(self) -> str:
        return f"<FutureState: {self.status}>"


class HeldFutures(Mapping[Any, FutureState]):
    """Key -> :class:`FutureState` for every key the client holds futures for."""

    def __init__(self, session: Session):
        self._session = session

    def __getitem__(self, key: Any) -> FutureState:
        text = _text(key)
        if text is None or self._session.status(text) is None:
            raise KeyError(key)
        return FutureState(self._session, text)

    def __iter__(self) -> Iterator[Any]:
        return (dask_key(k) for k in self._session.keys())

    def __len__(self) -> int:
        return len(self._session.keys())

    def __contains__(self, key: object) -> bool:
        text = _text(key)
        return text is not None and self._session.status(text) is not None

    def __repr__(self) -> str:
        return f"<futures of {len(self)} keys>"


class Refcounts(Mapping[Any, int]):
    """Key -> how many of the client's futures hold it (0 for any other key,
    as Dask's ``Client.refcount`` counter).
    """

    def __init__(self, session: Session):
        self._session = session

    def __getitem__(self, key: Any) -> int:
        text = _text(key)
        return 0 if text is None else self._session.refcount(text)

    def __contains__(self, key: object) -> bool:
        text = _text(key)
        return text is not None and self._session.refcount(text) > 0

    def __iter__(self) -> Iterator[Any]:
        return (dask_key(k) for k in self._session.keys())

    def __len__(self) -> int:
        return len(self._session.keys())

    def __repr__(self) -> str:
        return repr({k: self[k] for k in self})


class Held:
    """The Client's views of the keys it holds."""

    _session: Session

    @property
    def futures(self) -> HeldFutures:
        """Every key this client holds futures for, with its state.

        Examples
        --------
        >>> x = client.submit(inc, 1)  # doctest: +SKIP
        >>> x.key in client.futures  # doctest: +SKIP
        True

        """
        return HeldFutures(self._session)

    @property
    def refcount(self) -> Refcounts:
        """How many futures of this client hold each key (0 for a key it
        does not hold).
        """
        return Refcounts(self._session)
