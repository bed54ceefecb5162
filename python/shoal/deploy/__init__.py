"""Ways to start a cluster, all built on :class:`~.spec.Cluster` (``scale``,
``adapt``, graceful retirement): :class:`~.local.LocalCluster` runs a
scheduler and workers on this machine, :class:`~.ssh.SSHCluster` on hosts
reached over SSH.
"""
