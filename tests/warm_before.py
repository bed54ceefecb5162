"""Imported by a test before its cluster starts (see costly_import)."""

from costly_import import record_and_burn

record_and_burn("warm_before")
