"""``get_versions``: what the client, the scheduler and each worker run.
Part of :class:`Client`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core import aio
from ..core.security import hosted_here
from ..core.versions import mismatch_message, mismatches, versions
from ..deploy.cluster import HostedScheduler


class VersionCalls:
    """The Client's question about software versions."""

    @aio.maybe_async
    def get_versions(
        self, check: bool = False, packages: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """The Python, machine and package versions of this client, the
        scheduler and every worker.

        Parameters
        ----------
        check
            Raise ``ValueError`` if the processes' versions of a package
            differ.
        packages
            More packages to report (and check).

        Returns
        -------
        dict
            ``{"client": ..., "scheduler": ..., "workers": {address: ...}}``,
            each ``{"host": {...}, "packages": {name: version}}``. The
            scheduler runs no Python: started by this process (a local
            cluster) it reports this process's versions; a stand-alone
            scheduler reports ``None``, and is not compared.

        Raises
        ------
        ValueError
            With ``check=True``, naming the packages whose versions differ.

        Examples
        --------
        >>> client.get_versions()["workers"]  # doctest: +SKIP
        {'tcp://127.0.0.1:40123': {'host': {...}, 'packages': {...}}, ...}

        """
        names = list(packages or [])
        client = versions(names)
        scheduler = client if self._scheduler_is_local() else None
        workers = self.run(versions, names)
        if check:
            rows = mismatches(client, scheduler or {}, workers)
            if rows:
                raise ValueError(mismatch_message(rows))
        return {"scheduler": scheduler, "workers": workers, "client": client}

    def _scheduler_is_local(self) -> bool:
        """Whether the scheduler runs in this process (a cluster this
        process started, whether or not this client was made from it).
        """
        if isinstance(getattr(self, "cluster", None), HostedScheduler):
            return True
        return hosted_here(self.scheduler_address)
