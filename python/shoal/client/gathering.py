"""Getting results: ``gather``. Part of :class:`Client`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import _engine
from ..core import aio, nested
from ..core.errors import trimmed
from ..core.session import value_of, values_of
from ..futures import Future
from .workers import collect_keys


class Gathering:
    """The Client's call that waits for futures and returns their results."""

    def gather(
        self,
        futures: Any,
        errors: str = "raise",
        direct: Any = None,
        asynchronous: Any = None,
    ) -> Any:
        """Wait for futures and return their results, in the same structure.

        Parameters
        ----------
        futures
            A Future, or lists, tuples, sets and dicts of them (nested), or an
            iterator of them (gathered lazily).
        errors
            ``"raise"`` the first failed future's exception, or ``"skip"``
            failed futures.
        direct
            True: read results from the workers holding them; False: through
            the scheduler, which carries the connections. By default as the
            client's ``direct_to_workers``.
        asynchronous
            Return a coroutine (True) or the results (False); default: as
            the client is.

        Returns
        -------
        The results, in the structure of ``futures``.

        """
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        if direct is not None and not isinstance(direct, bool):
            raise TypeError(f"direct must be True, False or None, not {direct!r}")
        if aio.wants_coroutine(self, asynchronous):
            return self._agather(futures, errors, direct)
        if self.asynchronous:
            return aio.run_blocking(self.gather, futures, errors, direct)
        try:
            return self._gather(futures, errors, direct)
        except Exception as e:
            raise trimmed(e)  # noqa: B904 (the task's own exception, its traceback cut)

    def _gather(self, futures: Any, errors: str, direct: bool | None = None) -> Any:
        if isinstance(futures, Iterator):
            return (self.gather(f, errors=errors, direct=direct) for f in futures)
        found: dict[str, None] = {}
        collect_keys(futures, found, owner=self)
        if not found:
            return futures
        key_list = list(found)
        if errors == "raise":
            erred = self._session.first_error(key_list)
            if erred is not None:
                self._session.result(erred)  # raises its error
        outcomes = self._session.outcomes(key_list, direct=direct) or []
        values: dict[str, Any] = {}
        value = _engine.Outcome.Value
        if all(type(o) is value for o in outcomes):
            values = dict(zip(key_list, values_of(outcomes, self)))
        else:
            for k, outcome in zip(key_list, outcomes):
                if type(outcome) is value or errors == "raise":
                    values[k] = value_of(k, outcome, self)
        return _substitute(futures, values)

    async def _agather(self, futures: Any, errors: str, direct: bool | None = None) -> Any:
        found: dict[str, None] = {}
        collect_keys(futures, found, owner=self)
        if errors == "raise" and len(found) > 1:
            # the first error is raised at once, as in Dask
            erred = await aio.offload_wait(self._session.first_error, list(found))
            if erred is not None:
                found = {erred: None}
        await aio.keys_done([(self._session, k) for k in found])
        try:
            return await aio.offload(self._gather, futures, errors, direct)
        except Exception as e:
            raise trimmed(e)  # noqa: B904


def _substitute(obj: Any, values: dict[str, Any]) -> Any:
    """``obj`` with its futures replaced by their values; futures with no
    value (``errors="skip"``) left out.
    """
    if type(obj) is list and all(type(x) is Future for x in obj):
        # A flat list of futures (what ``map`` returns): the common case.
        if len(values) == len(obj):
            return [values[x._key] for x in obj]
        return [values[x._key] for x in obj if x._key in values]
    return nested.rebuild(
        obj, lambda x: values.get(x._key, nested.SKIP) if isinstance(x, Future) else x
    )
