"""adwd: the event-sourced WebSocket service that runs AI developer workflows.

Everything adwd installs lives under this one name. The repository keeps its
layers as top-level folders (``events/``, ``projections/``, ``actors/``,
``transport/``, ``service/``); ``pyproject.toml`` maps each to ``adwd.<layer>``.
The Python client library is :mod:`adwd.client`.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("adwd")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
