"""Composition root: configuration, wiring and the ``adwd`` command line."""
