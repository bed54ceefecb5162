"""The bottom layer of shoal's Python side: everything above calls down here.

* :mod:`.session` owns the engine handle (the Rust client core) of a client.
* :mod:`.spec` builds every task spec and :mod:`.keys` names every key.
* :mod:`.graph` turns a graph of nodes into specs and submits it.
* :mod:`.serialize` pickles functions, arguments and results.
* :mod:`.context` knows the default client, so lower layers never import
  the :class:`~shoal.Client` class itself.
* :mod:`.errors` holds shoal's exceptions; :mod:`.sizes` reads and writes
  byte sizes; :mod:`.arguments` rejects Dask arguments shoal does not
  implement yet.

Nothing in this package imports from the rest of shoal.
"""
