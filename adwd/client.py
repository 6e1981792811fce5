"""The public Python client of adwd: ``from adwd.client import AdwdClient``.

A short, stable import path for applications; the code lives in
:mod:`adwd.transport.client` (docs/client.md).
"""

from adwd.transport.client import (
    AdwdClient,
    ClientClosed,
    ClientError,
    ConnectFailed,
    RequestTimeout,
    ServerError,
    SlowConsumer,
    TriggerRejected,
)

__all__ = [
    "AdwdClient",
    "ClientClosed",
    "ClientError",
    "ConnectFailed",
    "RequestTimeout",
    "ServerError",
    "SlowConsumer",
    "TriggerRejected",
]
