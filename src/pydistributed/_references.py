"""The low-level reference API: ``remoteref_id`` and ``channel_from_id``."""

from __future__ import annotations

from typing import Any

from ._cluster import PGRP
from ._future import Future
from ._refs import RRID, TABLE

__all__ = ("channel_from_id", "remoteref_id")


def remoteref_id(r: Any) -> RRID:
    """The id ``RRID(whence, id)`` of a :class:`Future` or :class:`RemoteChannel`.

    Raises:
        TypeError: ``r`` is not a remote reference.
    """
    from ._remotechannel import RemoteChannel  # it imports this module

    if not isinstance(r, Future | RemoteChannel):
        raise TypeError(f"remoteref_id: expected a Future or RemoteChannel, not {type(r).__name__}")
    return r.rrid


def channel_from_id(rrid: RRID | tuple[int, int]) -> Any:
    """On the owner of reference ``rrid``: the object that backs it.

    For a :class:`RemoteChannel` that is its channel (what its factory returned); for a
    :class:`Future`, the owner's write-once store of its value.

    Raises:
        KeyError: this process does not keep that reference: it is owned by another process,
            or every holder dropped it and it was freed (or, for a Future, nothing used it
            here yet).
    """
    value = TABLE.get(RRID(*rrid))
    if value is None:
        raise KeyError(
            f"no reference {RRID(*rrid)} on process {PGRP.myid}: it is owned by another "
            "process, or was freed once no process held it"
        )
    return value.store
