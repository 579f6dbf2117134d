"""Cluster managers: the interface and the built-in LocalManager."""

from __future__ import annotations

from ._base import ClusterManager, WorkerConfig, connect, kill, launch, manage
from ._local import LocalManager

__all__ = (
    "ClusterManager",
    "LocalManager",
    "WorkerConfig",
    "connect",
    "kill",
    "launch",
    "manage",
)
