"""The exceptions pydistributed raises, all in one place.

::

    DistributedError                  base of everything the library raises itself
     ├── RemoteException              a call failed on another process
     ├── ProcessExitedException       the process a caller waits on died or was removed
     ├── ChannelClosed                operation on a closed channel (local or remote)
     ├── FutureAlreadySet             put on a Future that has a value
     ├── LaunchError                  a worker could not be started or did not connect
     ├── AuthenticationError          a peer failed the cookie handshake
     └── ProtocolError                a peer sent bytes that are not a valid frame

Standard exceptions are used where Python users expect them: ``TimeoutError`` when a
``timeout=`` runs out, ``TypeError``/``ValueError`` for bad arguments.
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "AuthenticationError",
    "ChannelClosed",
    "DistributedError",
    "FutureAlreadySet",
    "LaunchError",
    "ProcessExitedException",
    "ProtocolError",
    "RemoteException",
    "RemoteExceptionStandIn",
)


class DistributedError(Exception):
    """Base class of the errors raised by pydistributed itself."""

    __module__ = "pydistributed"


class RemoteExceptionStandIn(Exception):
    """Takes the place of a remote exception that could not be unpickled here.

    Attributes:
        type_name: qualified name of the original exception type.
        message: ``str()`` of the original exception.
    """

    __module__ = "pydistributed"

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(type_name, message)
        self.type_name = type_name
        self.message = message

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}"


class RemoteException(DistributedError):
    """A call failed on another process.

    Attributes:
        pid: id of the process where the exception was raised.
        exception: the original exception, or a :class:`RemoteExceptionStandIn` keeping its
            type name and message when it could not be unpickled here.
        traceback: the remote traceback, as text.

    The original exception is also chained as ``__cause__``.
    """

    __module__ = "pydistributed"

    def __init__(self, pid: int, exception: BaseException, traceback: str = "") -> None:
        super().__init__(pid, exception, traceback)
        self.pid = pid
        self.exception = exception
        self.traceback = traceback
        self.__cause__ = exception

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteException, (self.pid, self.exception, self.traceback))

    def __str__(self) -> str:
        exception = self.exception
        if isinstance(exception, RemoteExceptionStandIn):
            text = f"On worker {self.pid}:\n{exception}"  # the original type name, not ours
        else:
            text = f"On worker {self.pid}:\n{type(exception).__name__}: {exception}"
        if self.traceback:
            text += "\n" + self.traceback.rstrip("\n")
        return text


class ProcessExitedException(DistributedError):
    """The process a caller was waiting on exited, died or was removed.

    Attributes:
        worker_id: id of the process that is gone.
    """

    __module__ = "pydistributed"

    def __init__(self, worker_id: int = -1) -> None:
        super().__init__(worker_id)
        self.worker_id = worker_id

    def __str__(self) -> str:
        return f"process {self.worker_id} exited"


class ChannelClosed(DistributedError):
    """Raised by ``put``/``take``/``fetch``/``wait`` on a closed (and drained) channel."""

    __module__ = "pydistributed"

    def __init__(self, message: str = "channel is closed") -> None:
        super().__init__(message)


class FutureAlreadySet(DistributedError):
    """``put`` on a Future that already has a value (Futures are write-once)."""

    __module__ = "pydistributed"


class LaunchError(DistributedError):
    """A worker could not be launched, or did not join the cluster in time."""

    __module__ = "pydistributed"


class AuthenticationError(DistributedError):
    """A peer did not prove it knows the cluster cookie."""

    __module__ = "pydistributed"


class ProtocolError(DistributedError):
    """A peer sent bytes that do not form a valid frame (bad header, over the size limit)."""

    __module__ = "pydistributed"
