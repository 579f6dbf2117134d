"""Authentication: peers that do not know the cookie, send junk or announce huge frames are
dropped, and the worker keeps serving."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

import pydistributed as dist
from pydistributed._transport import dial
from pydistributed.protocol import HEADER, HELLO_SIZE, Kind, encode_frame
from support import dropped, identity, ospid_of, send_quietly, worker_address


@pytest.fixture
def address(cluster: list[int]) -> Iterator[tuple[str, int]]:
    """The address of the first worker; after the test, check that it still serves."""
    yield worker_address(cluster[0])
    assert dist.remotecall_fetch(identity, cluster[0], "still serving") == "still serving"
    assert (
        dist.remotecall_fetch(dist.remotecall_fetch, cluster[1], dist.myid, cluster[0])
        == (cluster[0])
    )


def test_wrong_cookie_is_refused(address: tuple[str, int]) -> None:
    with pytest.raises(dist.AuthenticationError):
        dial(*address, "not-the-cookie")


def test_wrong_cookie_never_gets_a_frame_through(address: tuple[str, int]) -> None:
    # Pretend the handshake passed and send a frame anyway: the worker must not read it.
    with socket.create_connection(address) as sock:
        sock.sendall(b"PYDIST\x00\x01" + b"\x11" * 32 + b"\x22" * 32)
        send_quietly(sock, b"".join(bytes(c) for c in encode_frame(Kind.CALL_FETCH, b"x")))
        assert dropped(sock)


@pytest.mark.parametrize(
    "junk",
    [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"\x00" * HELLO_SIZE,
        os.urandom(4096),
        b"x" * (1 << 20),
    ],
    ids=["http", "zeros", "random", "one-megabyte"],
)
def test_junk_bytes_are_refused(address: tuple[str, int], junk: bytes) -> None:
    with socket.create_connection(address) as sock:
        send_quietly(sock, junk)
        assert dropped(sock)


def test_peer_closing_at_once(address: tuple[str, int]) -> None:
    for _ in range(5):
        socket.create_connection(address).close()


def test_silent_peer_does_not_block_the_worker(
    address: tuple[str, int], cluster: list[int]
) -> None:
    with socket.create_connection(address) as sock:
        # Says nothing; meanwhile the worker serves, and accepts other connections.
        assert dist.remotecall_fetch(identity, cluster[0], 1) == 1
        dial(*address, dist.cluster_cookie()).close()
        assert sock.fileno() >= 0


def header(kind: int, payload: int, nbuffers: int = 0) -> bytes:
    return HEADER.pack(kind, 0, nbuffers, payload, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "frame",
    [
        header(Kind.IDENTIFY_SOCKET, 2**63),
        header(Kind.IDENTIFY_SOCKET, 2**36 + 1),
        header(Kind.IDENTIFY_SOCKET, 8, nbuffers=2)
        + (2**40).to_bytes(8, "little")
        + (2**40).to_bytes(8, "little"),
        header(Kind.IDENTIFY_SOCKET, 0, nbuffers=60_000),
        header(200, 10),
    ],
    ids=["huge-payload", "over-default-limit", "huge-buffers", "many-buffers", "unknown-kind"],
)
def test_authenticated_peer_with_bad_header_is_dropped(
    address: tuple[str, int], frame: bytes
) -> None:
    sock = dial(*address, dist.cluster_cookie())
    with sock:
        sock.sendall(frame)
        assert dropped(sock)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (Kind.IDENTIFY_SOCKET, b"not a pickle"),
        (Kind.IDENTIFY_SOCKET, b"\x80\x05N."),  # a pickled None: no pid in it
        (Kind.CALL_FETCH, b"\x80\x05N."),  # calls before introducing oneself
        (Kind.JOIN_PGRP, b"\x80\x05N."),  # a second master
    ],
    ids=["garbage-payload", "wrong-content", "call-first", "join-again"],
)
def test_authenticated_peer_with_bad_first_message_is_dropped(
    address: tuple[str, int], kind: Kind, payload: bytes
) -> None:
    sock = dial(*address, dist.cluster_cookie())
    with sock:
        sock.sendall(b"".join(bytes(c) for c in encode_frame(kind, payload)))
        assert dropped(sock)


def test_cookie_not_on_the_command_line_or_in_the_environment(cluster: list[int]) -> None:
    cookie = dist.cluster_cookie().encode()
    for pid in cluster:
        ospid = ospid_of(pid)
        with open(f"/proc/{ospid}/cmdline", "rb") as f:
            assert cookie not in f.read()
        with open(f"/proc/{ospid}/environ", "rb") as f:
            assert cookie not in f.read()
        assert dist.remotecall_fetch(dist.cluster_cookie, pid) == dist.cluster_cookie()


def test_cluster_cookie_default_and_validation() -> None:
    cookie = dist.cluster_cookie()
    assert isinstance(cookie, str)
    assert len(cookie) >= 16
    assert len(set(cookie)) > 4
    for bad in ("", "caf\u00e9", "two\nlines", "nul\0"):
        with pytest.raises(ValueError):
            dist.cluster_cookie(bad)
    assert dist.cluster_cookie() == cookie


def test_new_cookie_is_used_by_new_workers() -> None:
    old = dist.cluster_cookie()
    try:
        assert dist.cluster_cookie("a new shared secret") == "a new shared secret"
        [pid] = dist.addprocs(1)
        try:
            assert dist.remotecall_fetch(dist.cluster_cookie, pid) == "a new shared secret"
            with pytest.raises(dist.AuthenticationError):
                dial(*worker_address(pid), old)
        finally:
            dist.rmprocs(pid, waitfor=20)
    finally:
        dist.cluster_cookie(old)


def test_a_cookie_with_spaces_at_its_ends_reaches_the_workers() -> None:
    old = dist.cluster_cookie()
    try:
        dist.cluster_cookie(" \tpadded secret ")
        [pid] = dist.addprocs(1)
        try:
            assert dist.remotecall_fetch(dist.cluster_cookie, pid) == " \tpadded secret "
        finally:
            dist.rmprocs(pid, waitfor=20)
    finally:
        dist.cluster_cookie(old)
