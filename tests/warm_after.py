"""Imported by a test after its cluster started (see costly_import)."""

from costly_import import record_and_burn

record_and_burn("warm_after")
