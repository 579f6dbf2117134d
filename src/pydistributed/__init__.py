"""pydistributed: Julia's Distributed standard library for Python.

A cluster of Python processes (the master is 1, workers 2, 3, ...) that call each other over
authenticated TCP, with futures, remote channels, worker pools, parallel map and parallel
for-reduce. Everything public is importable from here::

    import pydistributed as dist
    dist.addprocs(4)
    dist.remotecall_fetch(sum, 2, [1, 2, 3])
"""

from __future__ import annotations

from ._backoff import ExponentialBackOff
from ._channel import Channel
from ._exceptions import (
    AuthenticationError,
    ChannelClosed,
    DistributedError,
    FutureAlreadySet,
    LaunchError,
    ProcessExitedException,
    ProtocolError,
    RemoteException,
)
from ._future import Future
from ._generics import fetch, isready, put, take, wait
from ._macros import clear, distributed, everywhere, fetchfrom, spawn, spawnat
from ._pmap import pmap
from ._processes import (
    addprocs,
    cluster_cookie,
    default_addprocs_params,
    interrupt,
    myid,
    nprocs,
    nworkers,
    procs,
    rmprocs,
    worker_id_from_socket,
    workers,
)
from ._references import channel_from_id, remoteref_id
from ._refs import RRID
from ._remotecall import remote_do, remotecall, remotecall_fetch, remotecall_wait
from ._remotechannel import RemoteChannel
from ._sync import sync
from ._timedwait import timedwait
from ._worker import init_worker, process_messages, start_worker
from ._workerpool import (
    AbstractWorkerPool,
    CachingPool,
    WorkerPool,
    default_worker_pool,
    remote,
)
from .managers import (
    ClusterManager,
    LocalManager,
    SSHManager,
    WorkerConfig,
    connect,
    kill,
    launch,
    manage,
)

# Imported for its effect: large buffers go through shared memory between local processes.
from . import _shm  # noqa: F401  # isort: skip

__all__ = (
    "RRID",
    "AbstractWorkerPool",
    "AuthenticationError",
    "CachingPool",
    "Channel",
    "ChannelClosed",
    "ClusterManager",
    "DistributedError",
    "ExponentialBackOff",
    "Future",
    "FutureAlreadySet",
    "LaunchError",
    "LocalManager",
    "ProcessExitedException",
    "ProtocolError",
    "RemoteChannel",
    "RemoteException",
    "SSHManager",
    "WorkerConfig",
    "WorkerPool",
    "addprocs",
    "channel_from_id",
    "clear",
    "cluster_cookie",
    "connect",
    "default_addprocs_params",
    "default_worker_pool",
    "distributed",
    "everywhere",
    "fetch",
    "fetchfrom",
    "init_worker",
    "interrupt",
    "isready",
    "kill",
    "launch",
    "manage",
    "myid",
    "nprocs",
    "nworkers",
    "pmap",
    "process_messages",
    "procs",
    "put",
    "remote",
    "remote_do",
    "remotecall",
    "remotecall_fetch",
    "remotecall_wait",
    "remoteref_id",
    "rmprocs",
    "spawn",
    "spawnat",
    "start_worker",
    "sync",
    "take",
    "timedwait",
    "wait",
    "worker_id_from_socket",
    "workers",
)
