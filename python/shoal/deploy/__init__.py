"""Ways to start a cluster, all built on :class:`~.spec.Cluster` (``scale``,
``adapt``, graceful retirement): :class:`~.local.LocalCluster` runs a
scheduler and workers on this machine, :class:`~.ssh.SSHCluster` on hosts
reached over SSH, :class:`~.slurm.SLURMCluster` as Slurm jobs.
"""

from typing import Any

__all__ = ["Cluster", "LocalCluster", "SLURMCluster", "SSHCluster"]


def __getattr__(name: str) -> Any:
    # Each on first use: SSH and Slurm pull in modules a local cluster
    # never needs.
    if name == "Cluster":
        from .cluster import Cluster

        return Cluster
    if name == "LocalCluster":
        from .local import LocalCluster

        return LocalCluster
    if name == "SSHCluster":
        from .ssh import SSHCluster

        return SSHCluster
    if name == "SLURMCluster":
        from .slurm import SLURMCluster

        return SLURMCluster
    raise AttributeError(f"module 'shoal.deploy' has no attribute {name!r}")
