"""shoal and dask, both ways.

* :mod:`.graphs`: dask graphs and collections run on shoal (what
  ``client.get`` and ``compute`` of a dask collection use).
* :mod:`.protocol`: shoal's objects seen by dask (a ``Delayed``'s graph as
  dask task-spec nodes).
* :mod:`.config`: a default shoal client is dask's default scheduler too.

dask stays optional: nothing here imports it until a dask object shows up.
"""
