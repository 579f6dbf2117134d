"""Cluster managers: the interface and the built-in LocalManager and SSHManager."""

from __future__ import annotations

from ._base import ClusterManager, WorkerConfig, connect, kill, launch, manage
from ._local import LocalManager
from ._ssh import SSHManager

__all__ = (
    "ClusterManager",
    "LocalManager",
    "SSHManager",
    "WorkerConfig",
    "connect",
    "kill",
    "launch",
    "manage",
)
