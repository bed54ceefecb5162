"""A shoal worker: the process (or threads) that run users' functions.

The Rust runtime holds the scheduler connection, the data store and the data
server; the executor threads (:mod:`.executor`) pull tasks from it and run
them. :mod:`.main` is the ``shoal worker`` command and ``python -m
shoal.worker``.
"""
