"""Ways to start a cluster. :class:`~.local.LocalCluster` runs a scheduler
and workers on this machine.
"""
