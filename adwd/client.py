"""The public Python client of adwd: ``from adwd.client import AdwdClient``.

A short, stable import path for applications; the code, and the list of
public names (``__all__``), live in :mod:`adwd.transport.client`
(docs/client.md).
"""

from adwd.transport.client import *  # noqa: F403  (a facade: the same public names)
from adwd.transport.client import __all__  # noqa: F401  (re-exported: the facade's public names)
