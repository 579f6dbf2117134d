"""The wire protocol with no sockets: frame encoding and decoding, and the cookie handshake."""

from __future__ import annotations

import ast
import hashlib
import hmac
import pathlib

import pytest

import pydistributed
from pydistributed import AuthenticationError, ProtocolError
from pydistributed.protocol import (
    BY_REFERENCE,
    HEADER,
    HELLO_SIZE,
    MAGIC,
    MAX_BUFFERS,
    PEER_BYTES,
    PROOF_SIZE,
    Frame,
    FrameDecoder,
    Handshake,
    Kind,
    Reference,
    encode_frame,
)


def wire(*args: object, **kwargs: object) -> bytes:
    return b"".join(bytes(c) for c in encode_frame(*args, **kwargs))  # type: ignore[arg-type]


def sample() -> list[tuple[Kind, bytes, tuple[int, int], tuple[int, int], list[bytes]]]:
    """Frames with: empty payload, refs, large payload (not coalesced), buffers, empty buffer."""
    return [
        (Kind.CALL, b"", (0, 0), (0, 0), []),
        (Kind.CALL_FETCH, b"hello", (1, 7), (0, 0), []),
        (Kind.RESULT, bytes(range(256)) * 400, (3, 2**40), (5, 9), []),
        (Kind.CALL_WAIT, b"p" * 10, (2**31, 1), (4, 2**63), [b"a" * 100, b"", b"z" * 70000]),
        (Kind.REMOTE_DO, b"x", (0, 0), (0, 0), [b"\x00" * 3]),
    ]


def encode_all() -> bytes:
    return b"".join(
        wire(kind, payload, response, notify, [memoryview(b) for b in buffers])
        for kind, payload, response, notify, buffers in sample()
    )


def drain(decoder: FrameDecoder) -> list[Frame]:
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


def check(frames: list[Frame]) -> None:
    expected = sample()
    assert len(frames) == len(expected)
    for frame, (kind, payload, response, notify, buffers) in zip(frames, expected, strict=True):
        assert frame.kind is kind
        assert bytes(frame.payload) == payload
        assert frame.response == response
        assert frame.notify == notify
        assert [bytes(b) for b in frame.buffers] == buffers


# -- framing --------------------------------------------------------------------------------


def test_header_is_fixed_size() -> None:
    assert HEADER.size == 36
    assert len(wire(Kind.CALL, b"")) == HEADER.size


def test_decode_whole_buffer() -> None:
    decoder = FrameDecoder()
    decoder.receive_data(encode_all())
    check(drain(decoder))
    assert decoder.next_frame() is None


def test_decode_one_byte_at_a_time() -> None:
    data = encode_all()
    decoder = FrameDecoder()
    frames: list[Frame] = []
    for i in range(len(data)):
        decoder.receive_data(data[i : i + 1])
        frames += drain(decoder)
    check(frames)


def test_decode_with_trailing_partial_frame() -> None:
    data = encode_all()
    last = wire(Kind.CALL, b"tail", (1, 1))
    cut = len(last) - 2
    decoder = FrameDecoder()
    decoder.receive_data(data + last[:cut])
    check(drain(decoder))
    assert decoder.next_frame() is None
    decoder.receive_data(last[cut:])
    [frame] = drain(decoder)
    assert (frame.kind, bytes(frame.payload), frame.response) == (Kind.CALL, b"tail", (1, 1))


def test_decode_in_uneven_chunks_and_direct_body_fill() -> None:
    data = encode_all()
    decoder = FrameDecoder()
    frames: list[Frame] = []
    pos, step = 0, 1
    while pos < len(data):
        view = decoder.body_view()
        if view is not None and len(view) > 0:
            # Fill the body buffer directly, as a recv_into would.
            n = min(len(view), len(data) - pos, 1000)
            view[:n] = data[pos : pos + n]
            decoder.advance(n)
            pos += n
        else:
            decoder.receive_data(data[pos : pos + step])
            pos += step
            step = step % 97 + 13
        frames += drain(decoder)
    check(frames)


def header(kind: int, payload: int, nbuffers: int = 0) -> bytes:
    return HEADER.pack(kind, 0, nbuffers, payload, 0, 0, 0, 0)


def test_oversized_payload_refused_on_the_header() -> None:
    decoder = FrameDecoder(max_frame=1000)
    decoder.receive_data(wire(Kind.CALL, b"x" * 1000))
    assert bytes(drain(decoder)[0].payload) == b"x" * 1000
    with pytest.raises(ProtocolError, match="limit"):
        # Only the header: the decoder must refuse before any body arrives (or is allocated).
        decoder.receive_data(header(Kind.CALL, 1001))


def test_huge_payload_refused_with_default_limit() -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().receive_data(header(Kind.RESULT, 2**64 - 1))


def test_oversized_buffers_refused_on_their_lengths() -> None:
    decoder = FrameDecoder(max_frame=1000)
    lengths = (600).to_bytes(8, "little") + (600).to_bytes(8, "little")
    with pytest.raises(ProtocolError, match="limit"):
        decoder.receive_data(header(Kind.CALL, 10, nbuffers=2) + lengths)


# -- buffers sent by reference ----------------------------------------------------------------


def referring_frame() -> tuple[bytes, Reference]:
    ref = Reference.make(7, 42, 4096, 1 << 30)
    data = wire(Kind.CALL_FETCH, b"payload", (1, 2), (0, 0), [memoryview(b"inline"), ref])
    return data, ref


@pytest.mark.parametrize("chunk", [None, 1, 5])
def test_references_are_resolved_by_the_owner(chunk: int | None) -> None:
    data, ref = referring_frame()
    seen: list[list[object]] = []

    def resolve(buffers: list[object]) -> list[object]:
        seen.append(list(buffers))
        return ["mapped" if isinstance(b, Reference) else b for b in buffers]

    decoder = FrameDecoder()
    decoder.resolve = resolve
    for i in range(0, len(data), chunk or len(data)):
        decoder.receive_data(data[i : i + (chunk or len(data))])
    decoder.receive_data(data)  # a second frame, and decoding goes on as usual after one
    frames = drain(decoder)
    assert len(frames) == 2
    assert [bytes(b) if isinstance(b, bytearray) else b for b in frames[0].buffers] == [
        b"inline",
        "mapped",
    ]
    assert seen[0][1] == ref
    assert ref.fields() == (7, 42, 4096, 1 << 30)


def test_reference_marked_in_the_length_table() -> None:
    data, ref = referring_frame()
    lengths = data[HEADER.size : HEADER.size + 16]
    assert int.from_bytes(lengths[8:], "little") == BY_REFERENCE | Reference.SIZE
    assert data.endswith(ref)


def test_references_refused_without_a_resolver() -> None:
    with pytest.raises(ProtocolError, match="takes none"):
        FrameDecoder().receive_data(referring_frame()[0])


def test_referenced_size_counts_against_the_limit() -> None:
    decoder = FrameDecoder(max_frame=1 << 20)
    decoder.resolve = lambda buffers: pytest.fail("resolved a frame over the limit")
    with pytest.raises(ProtocolError, match="limit"):
        decoder.receive_data(referring_frame()[0])


def test_reference_of_the_wrong_size_refused() -> None:
    lengths = (BY_REFERENCE | 31).to_bytes(8, "little")
    with pytest.raises(ProtocolError, match="descriptor"):
        FrameDecoder().receive_data(header(Kind.CALL, 1, nbuffers=1) + lengths)


def test_too_many_buffers_refused() -> None:
    with pytest.raises(ProtocolError, match="buffers"):
        FrameDecoder().receive_data(header(Kind.CALL, 0, nbuffers=MAX_BUFFERS + 1))


@pytest.mark.parametrize("kind", [0, max(Kind) + 1, 255])
def test_unknown_kind_refused(kind: int) -> None:
    with pytest.raises(ProtocolError, match="kind"):
        FrameDecoder().receive_data(header(kind, 0))


# -- handshake ------------------------------------------------------------------------------


def run_handshake(a: Handshake, b: Handshake, chunk: int | None = None) -> None:
    """Deliver each side's bytes to the other (in pieces of ``chunk`` bytes) until both stop."""
    to_b, to_a = a.hello(), b.hello()
    while to_a or to_b:
        if to_b:
            piece, to_b = (to_b, b"") if chunk is None else (to_b[:chunk], to_b[chunk:])
            to_a += b.receive_data(piece)
        if to_a:
            piece, to_a = (to_a, b"") if chunk is None else (to_a[:chunk], to_a[chunk:])
            to_b += a.receive_data(piece)


@pytest.mark.parametrize("chunk", [None, 1, 7, HELLO_SIZE])
def test_handshake_same_cookie(chunk: int | None) -> None:
    a = Handshake("secret", initiator=True)
    b = Handshake("secret", initiator=False)
    run_handshake(a, b, chunk)
    assert a.complete
    assert b.complete
    assert a.wanted() == b.wanted() == 0


def test_handshake_sizes() -> None:
    assert len(MAGIC) + 32 == HELLO_SIZE
    assert PEER_BYTES == HELLO_SIZE + PROOF_SIZE
    h = Handshake("c", initiator=True)
    assert len(h.hello()) == HELLO_SIZE
    assert h.hello().startswith(MAGIC)
    assert h.wanted() == PEER_BYTES


def test_handshake_cookie_never_sent() -> None:
    cookie = "a-cookie-that-must-stay-secret"
    a = Handshake(cookie, initiator=True)
    b = Handshake(cookie, initiator=False)
    sent = a.hello() + b.hello()
    sent += b.receive_data(a.hello()) + a.receive_data(b.hello())
    assert cookie.encode() not in sent
    assert hashlib.sha256(cookie.encode()).digest() not in sent


def test_handshake_different_cookies() -> None:
    a = Handshake("one", initiator=True)
    b = Handshake("two", initiator=False)
    proof_a = b.receive_data(a.hello())
    proof_b = a.receive_data(b.hello())
    with pytest.raises(AuthenticationError, match="cookie"):
        a.receive_data(proof_a)
    with pytest.raises(AuthenticationError, match="cookie"):
        b.receive_data(proof_b)
    assert not a.complete
    assert not b.complete


def test_handshake_bad_magic() -> None:
    a = Handshake("secret", initiator=False)
    with pytest.raises(AuthenticationError):
        a.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".ljust(HELLO_SIZE, b"\0"))
    assert not a.complete


@pytest.mark.parametrize("first", [b"G", b"GET /", b"PYDIST\x00\x02"])
def test_handshake_refuses_a_stranger_on_its_first_bytes(first: bytes) -> None:
    a = Handshake("secret", initiator=False)
    with pytest.raises(AuthenticationError, match="protocol"):
        a.receive_data(first)


def test_handshake_accepts_the_magic_in_pieces() -> None:
    a = Handshake("secret", initiator=False)
    for i in range(len(MAGIC)):
        assert a.receive_data(MAGIC[i : i + 1]) == b""
    assert not a.complete


def test_handshake_reflected_hello() -> None:
    a = Handshake("secret", initiator=True)
    with pytest.raises(AuthenticationError, match="nonce"):
        a.receive_data(a.hello())


def test_handshake_reflected_proof() -> None:
    # A peer that does not know the cookie sends back our own proof: the role in the HMAC
    # makes it wrong.
    a = Handshake("secret", initiator=True)
    peer_hello = MAGIC + b"\x01" * 32
    proof = a.receive_data(peer_hello)
    assert len(proof) == PROOF_SIZE
    with pytest.raises(AuthenticationError, match="cookie"):
        a.receive_data(proof)


def test_handshake_two_initiators_fail() -> None:
    a = Handshake("secret", initiator=True)
    b = Handshake("secret", initiator=True)
    with pytest.raises(AuthenticationError):
        run_handshake(a, b)


def test_handshake_proof_is_hmac_of_role_and_nonces() -> None:
    a = Handshake("secret", initiator=True, nonce=b"\xaa" * 32)
    peer_nonce = b"\xbb" * 32
    proof = a.receive_data(MAGIC + peer_nonce)
    expected = hmac.new(b"secret", b"initiator" + peer_nonce + b"\xaa" * 32, "sha256").digest()
    assert proof == expected


def test_handshake_refuses_extra_bytes() -> None:
    a = Handshake("secret", initiator=False)
    with pytest.raises(AuthenticationError):
        a.receive_data(b"\0" * (PEER_BYTES + 1))


# -- no I/O in the protocol package ---------------------------------------------------------

FORBIDDEN = {"socket", "threading", "subprocess", "select", "selectors", "asyncio", "ssl"}


def imported_modules(path: pathlib.Path, package: str) -> set[str]:
    """Absolute names of the modules a source file imports (relative ones resolved)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


def test_protocol_package_does_no_io() -> None:
    """The protocol files, and the package modules they import, import no I/O modules."""
    root = pathlib.Path(pydistributed.__file__).parent
    todo = [(p, "pydistributed.protocol") for p in (root / "protocol").glob("*.py")]
    assert len(todo) >= 3
    seen: set[pathlib.Path] = set()
    while todo:
        path, package = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_modules(path, package):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
            if name.startswith("pydistributed.") and not name.startswith("pydistributed.protocol"):
                parts = name.split(".")[1:]
                target = root.joinpath(*parts).with_suffix(".py")
                if target.exists():
                    todo.append((target, "pydistributed"))
    assert any(p.name == "_exceptions.py" for p in seen)


def test_import_checker_catches_io(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import os\nfrom socket import socket\nfrom .. import _x\n")
    names = imported_modules(src, "pydistributed.protocol")
    assert {"os", "socket", "pydistributed._x"} <= names
