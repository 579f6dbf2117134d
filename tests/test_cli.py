"""``python -m pydistributed -p N script.py``: a script run with workers already added."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def test_script_runs_with_n_workers_and_they_are_removed(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            import pydistributed as dist
            print("args", sys.argv[1:])
            print("nworkers", dist.nworkers())
            pids = [dist.remotecall_fetch(os.getpid, w) for w in dist.workers()]
            print("ospids", " ".join(map(str, pids)))
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pydistributed", "-p", "3", str(script), "x", "--flag"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["args"] == "['x', '--flag']"
    assert lines["nworkers"] == "3"
    ospids = [int(p) for p in lines["ospids"].split()]
    assert len(set(ospids)) == 3
    for pid in ospids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_worker_reads_cookie_from_stdin_and_prints_its_address() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pydistributed", "--worker", "--bind-to", "127.0.0.1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write("a-cookie\n")
        process.stdin.flush()
        line = process.stdout.readline()
        assert line.startswith("pydistributed_worker:")
        port, host = line.strip().split(":", 1)[1].split("#")
        assert int(port) > 0
        assert host == "127.0.0.1"
        # Closing stdin (the master is gone) makes the worker exit.
        process.stdin.close()
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_process_messages_refuses_a_peer_without_the_cookie() -> None:
    import socket
    import threading

    import pydistributed as dist

    ours, theirs = socket.socketpair()
    server = threading.Thread(target=dist.process_messages, args=(ours, ours), daemon=True)
    server.start()
    theirs.sendall(b"PYDIST\x00\x01" + bytes(32) + bytes(32))
    theirs.settimeout(10)
    received = b""
    while chunk := theirs.recv(1024):
        received += chunk
    # It sent its own hello and proof, then hung up on our wrong proof.
    assert received[:8] == b"PYDIST\x00\x01"
    server.join(10)
    assert not server.is_alive()
    theirs.close()


def test_process_messages_needs_streams() -> None:
    import pytest

    import pydistributed as dist

    with pytest.raises(TypeError):
        dist.process_messages(object(), object())
    with pytest.raises(ValueError):
        dist.process_messages(0, 1, incoming=False)


def test_machine_file_lines_are_read_as_julia_reads_them(tmp_path: Path) -> None:
    from pydistributed.__main__ import load_machine_file

    path = tmp_path / "machines"
    path.write_text("# comment\nnode1\n\n2*alice@node2:2222 10.0.0.5\nauto * node3\n")
    assert load_machine_file(str(path)) == [
        "node1",
        ("alice@node2:2222 10.0.0.5", 2),
        ("node3", "auto"),
    ]


def test_without_a_script_the_program_comes_from_stdin() -> None:
    program = textwrap.dedent(
        """
        import pydistributed as dist
        def square(x):  # defined in __main__: shipped by value
            return x * x
        print("squares", dist.pmap(square, range(4)))
        print("workers", len(dist.workers()), dist is globals()["dist"])
        """
    )
    result = subprocess.run(
        [sys.executable, "-m", "pydistributed", "-p", "2"],
        input=program,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "squares [0, 1, 4, 9]" in result.stdout
    assert "workers 2 True" in result.stdout
