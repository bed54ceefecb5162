"""Running a task again in the client (``recreate_task_locally``,
``recreate_error_locally``). Part of :class:`Client`.
"""

from __future__ import annotations

from typing import Any, Callable

from .._engine import Answer, Coord
from ..core import serialize
from ..futures import Future


class Recreating:
    """The Client's calls that run a remote task here."""

    def _task_parts(self, key: str) -> tuple[bytes, list[bytes], list[str]]:
        """The pickled function and arguments of task ``key``, and the keys
        of its dependencies, as the scheduler holds them.
        """
        answer = self._request(Coord.TaskCall(key))
        if not isinstance(answer, Answer.Items):
            raise ValueError(f"the scheduler no longer knows task {key}")
        (function,), frames, dep_keys = answer.items
        return function, frames, [k.decode() for k in dep_keys]

    def _task_call(
        self, parts: tuple[bytes, list[bytes], list[str]]
    ) -> tuple[Callable[..., Any], tuple, dict]:
        """The function and arguments of a task (see :meth:`_task_parts`),
        with its dependencies' values gathered from the cluster.
        """
        import pickle

        function, frames, deps = parts
        func = pickle.loads(function)
        inputs = self.gather([Future(k, self) for k in deps]) if deps else []
        args, kwargs = serialize.loads_args(frames, inputs)
        return func, args, kwargs

    def recreate_task_locally(self, future: Future) -> Any:
        """Run the task behind ``future`` again, here, and return its result
        (its dependencies' results come from the cluster).

        Parameters
        ----------
        future
            A future of a task (not of scattered data).

        Returns
        -------
        What the task's function returns when called here.

        Examples
        --------
        >>> f = client.submit(inc, 1)  # doctest: +SKIP
        >>> client.recreate_task_locally(f)  # doctest: +SKIP
        2

        """
        from ..completion import wait

        wait([future])
        func, args, kwargs = self._task_call(self._task_parts(future._key))
        return func(*args, **kwargs)

    def recreate_error_locally(self, future: Future) -> None:
        """Run the failed task behind ``future`` here, so its exception is
        raised in this process (where ``pdb`` can step into it). When it
        failed because a dependency failed, that dependency runs instead.

        Parameters
        ----------
        future
            A future whose task failed.

        Raises
        ------
        ValueError
            If the future did not fail.
        Exception
            The task's exception, raised by running it here.

        """
        from ..completion import wait

        wait([future])
        if future.status != "error":
            raise ValueError(f"No errored futures passed ({future._key} is {future.status})")
        culprit = future._key
        parts = self._task_parts(culprit)
        while True:
            erred = [f for f in (Future(k, self) for k in parts[2]) if f.status == "error"]
            if not erred:
                break
            culprit = erred[0]._key
            parts = self._task_parts(culprit)
        func, args, kwargs = self._task_call(parts)
        func(*args, **kwargs)
        raise RuntimeError(f"task {culprit} failed in the cluster but succeeded when run here")
