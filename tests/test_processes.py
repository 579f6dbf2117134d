"""Adding, listing and removing processes; the worker process itself."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import pydistributed as dist
from pydistributed._cluster import PGRP
from support import (
    eventually,
    identity,
    os_pid_alive,
    ospid_of,
    stop_process,
    worker_address,
)

# exeflags that run the real worker after a delay: `python -c CODE -m pydistributed --worker ...`
# hands everything after CODE to it as sys.argv[1:].
SLOW_WORKER = (
    "-c",
    "import sys, time; time.sleep(1.5); from pydistributed.__main__ import main; "
    "sys.exit(main(sys.argv[3:]))",
)


def test_master_alone() -> None:
    assert dist.myid() == 1
    assert dist.procs() == [1]
    assert dist.workers() == [1]
    assert dist.nprocs() == 1
    assert dist.nworkers() == 1
    assert dist.procs(1) == [1]
    assert dist.addprocs(0) == []
    assert dist.procs() == [1]


def test_counts_and_ids(workers2: list[int]) -> None:
    a, b = workers2
    assert 1 < a < b
    assert dist.procs() == [1, a, b]
    assert dist.workers() == [a, b]
    assert dist.nprocs() == 3
    assert dist.nworkers() == 2
    assert dist.myid() == 1
    # Local workers are all on this host.
    assert dist.procs(a) == [1, a, b]
    assert dist.procs(1) == [1, a, b]
    assert dist.remotecall_fetch(dist.myid, a) == a
    assert dist.remotecall_fetch(dist.myid, b) == b


def test_views_from_a_worker(workers2: list[int]) -> None:
    a, b = workers2
    assert dist.remotecall_fetch(dist.nprocs, a) in (2, 3)
    assert eventually(lambda: dist.remotecall_fetch(dist.procs, a) == [1, a, b])
    assert dist.remotecall_fetch(dist.workers, b) == [a, b]
    assert dist.remotecall_fetch(dist.nworkers, b) == 2
    assert dist.remotecall_fetch(dist.procs, b, a) == [1, a, b]


def test_ids_increase_and_are_never_reused() -> None:
    first = dist.addprocs(2)
    try:
        assert first == [first[0], first[0] + 1]
        dist.rmprocs(first, waitfor=20)
        assert dist.workers() == [1]
        second = dist.addprocs(1)
        dist.rmprocs(second, waitfor=20)
    finally:
        dist.rmprocs(first, waitfor=20)
    assert second[0] > first[1]


def test_addprocs_starts_workers_in_parallel() -> None:
    t0 = time.monotonic()
    pids = dist.addprocs(3, exeflags=SLOW_WORKER)
    elapsed = time.monotonic() - t0
    try:
        assert len(pids) == 3
        assert [dist.remotecall_fetch(dist.myid, p) for p in pids] == pids
    finally:
        dist.rmprocs(pids, waitfor=20)
    # Each worker takes 1.5 s to start: one after the other would take 4.5 s.
    assert 1.5 <= elapsed < 3.5


def test_workers_inherit_sys_path_and_cwd() -> None:
    [pid] = dist.addprocs(1)
    try:
        remote_path = dist.remotecall_fetch(lambda: list(sys.path), pid)
        assert dist.remotecall_fetch(os.getcwd, pid) == os.getcwd()
    finally:
        dist.rmprocs(pid, waitfor=20)
    missing = [p for p in sys.path if p not in remote_path]
    assert not missing


def test_dir_env_exename_keywords(tmp_path: Path) -> None:
    [pid] = dist.addprocs(1, dir=str(tmp_path), env={"PYD_TEST_VAR": "x=1"}, exename=sys.executable)
    try:
        assert dist.remotecall_fetch(os.getcwd, pid) == str(tmp_path)
        assert dist.remotecall_fetch(os.getenv, pid, "PYD_TEST_VAR") == "x=1"
        assert dist.remotecall_fetch(lambda: sys.executable, pid) == sys.executable
    finally:
        dist.rmprocs(pid, waitfor=20)
    assert "PYD_TEST_VAR" not in os.environ


def test_topology_keyword() -> None:
    with pytest.raises(ValueError, match="topology"):
        dist.addprocs(1, topology="ring")
    assert dist.workers() == [1]
    pids = dist.addprocs(2, topology="master_worker")
    try:
        assert dist.remotecall_fetch(lambda: dist._cluster.PGRP.topology, pids[0]) == (
            "master_worker"
        )
        assert [dist.remotecall_fetch(dist.myid, p) for p in pids] == pids
    finally:
        dist.rmprocs(pids, waitfor=20)


def _connected_to(pid: int) -> bool:
    worker = PGRP.workers.get(pid)
    return worker is not None and worker.conn is not None and not worker.conn.closed


def test_lazy_connections() -> None:
    pids = dist.addprocs(2)
    try:
        a, b = pids
        assert not dist.remotecall_fetch(_connected_to, b, a)
        assert dist.remotecall_fetch(dist.remotecall_fetch, b, dist.myid, a) == a
        assert dist.remotecall_fetch(_connected_to, b, a)
    finally:
        dist.rmprocs(pids, waitfor=20)


def test_eager_connections() -> None:
    pids = dist.addprocs(3, lazy=False)
    try:
        a, b, c = pids
        assert dist.remotecall_fetch(_connected_to, c, a)
        assert dist.remotecall_fetch(_connected_to, c, b)
        assert dist.remotecall_fetch(_connected_to, b, a)
    finally:
        dist.rmprocs(pids, waitfor=20)


def outside_address() -> str:
    """A non-loopback address of this host (skip when there is none)."""
    for target in ("10.255.255.255", "192.168.255.255", "172.31.255.255"):
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect((target, 9))  # UDP: sends nothing, only picks a route
            address = str(probe.getsockname()[0])
        except OSError:
            continue
        finally:
            probe.close()
        if not address.startswith("127."):
            return address
    pytest.skip("this host has no non-loopback address")


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("restrict", [True, False])
def test_restrict(restrict: bool) -> None:
    outside = outside_address()
    [pid] = dist.addprocs(1, restrict=restrict)
    try:
        host, port = worker_address(pid)
        if restrict:
            assert host == "127.0.0.1"
        assert reachable("127.0.0.1", port)
        assert reachable(outside, port) is not restrict
        assert dist.remotecall_fetch(dist.myid, pid) == pid
    finally:
        dist.rmprocs(pid, waitfor=20)


# -- rmprocs --------------------------------------------------------------------------------


def test_rmprocs_master_warns_and_stays() -> None:
    with pytest.warns(UserWarning, match="1"):
        dist.rmprocs(1)
    assert dist.procs() == [1]


def test_rmprocs_ignores_unknown_pids(workers2: list[int]) -> None:
    a, b = workers2
    dist.rmprocs(10_000, a, waitfor=20)
    assert dist.workers() == [b]
    dist.rmprocs([a, 10_001], waitfor=20)
    assert dist.workers() == [b]


def test_rmprocs_and_interrupt_refuse_ids_that_are_not_ints(workers2: list[int]) -> None:
    a, _ = workers2
    for bad in (str(a), [str(a)], [a, "x"], True):
        with pytest.raises(TypeError):
            dist.rmprocs(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            dist.interrupt(bad)  # type: ignore[arg-type]
    assert dist.workers() == workers2


def test_rmprocs_forms(workers4: list[int]) -> None:
    a, b, c, d = workers4
    ospids = [ospid_of(p) for p in workers4]
    dist.rmprocs(a, b, waitfor=20)
    assert dist.workers() == [c, d]
    dist.rmprocs([c, d], waitfor=20)
    assert dist.workers() == [1]
    assert dist.nworkers() == 1
    assert eventually(lambda: not any(os_pid_alive(p) for p in ospids))
    with pytest.raises(dist.ProcessExitedException):
        dist.remotecall_fetch(dist.myid, a)


def test_rmprocs_waitfor_zero_returns_at_once(workers2: list[int]) -> None:
    a, b = workers2
    # A worker busy for a while is still removed, but the call does not wait for it.
    ospid = ospid_of(a)
    stop_process(ospid)
    try:
        t0 = time.monotonic()
        dist.rmprocs(a, waitfor=0)
        # Waiting for the stopped worker would take forever.
        assert time.monotonic() - t0 < 2
        assert a in dist.workers()
    finally:
        os.kill(ospid, signal.SIGCONT)
    assert eventually(lambda: dist.workers() == [b])


def test_rmprocs_waitfor_expires(workers2: list[int]) -> None:
    a, b = workers2
    ospid = ospid_of(a)
    stop_process(ospid)
    try:
        t0 = time.monotonic()
        with pytest.raises(Exception, match=rf"pids.*\b{a}\b"):
            dist.rmprocs(a, waitfor=0.5)
        assert 0.5 <= time.monotonic() - t0 < 3
    finally:
        os.kill(ospid, signal.SIGCONT)
    assert eventually(lambda: dist.workers() == [b])


def test_only_the_master_adds_and_removes_workers(workers2: list[int]) -> None:
    a, b = workers2
    for call, arg in ((dist.rmprocs, b), (dist.addprocs, 1)):
        with pytest.raises(dist.RemoteException) as info:
            dist.remotecall_fetch(call, a, arg)
        assert isinstance(info.value.exception, dist.DistributedError)
        assert "only the master" in str(info.value)
    assert dist.workers() == [a, b]


# -- failing launches -------------------------------------------------------------------------


def test_worker_that_exits_at_once() -> None:
    flags = ("-c", "import sys; print('boom'); sys.exit(3)")
    before = dist.procs()
    with pytest.raises(dist.LaunchError, match="boom"):
        dist.addprocs(1, exeflags=flags)
    assert dist.procs() == before


def test_worker_that_never_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDISTRIBUTED_WORKER_TIMEOUT", "2")
    flags = ("-c", "import time; print('stuck here', flush=True); time.sleep(60)")
    t0 = time.monotonic()
    with pytest.raises(dist.LaunchError, match="stuck here"):
        dist.addprocs(2, exeflags=flags)
    assert time.monotonic() - t0 < 8
    assert dist.workers() == [1]
    # The cluster still works afterwards.
    [pid] = dist.addprocs(1)
    dist.rmprocs(pid, waitfor=20)


class FailingManager(dist.ClusterManager):
    """A manager whose launch fails with a message of several lines."""

    def launch(self, params: Any, launched: Any, launch_ntfy: Any) -> None:
        raise dist.LaunchError("host unreachable\nssh: connect refused")

    def manage(self, pid: int, config: Any, op: Any) -> None:
        pass


def test_a_failing_launch_keeps_the_managers_message() -> None:
    with pytest.raises(dist.LaunchError) as caught:
        dist.addprocs(FailingManager())
    assert "launch failed: host unreachable\nssh: connect refused" in str(caught.value)
    assert dist.workers() == [1]


def test_good_and_bad_workers_in_one_addprocs(tmp_path: Path) -> None:
    # The first worker to start is good, the second prints and exits: addprocs fails and
    # removes the good one too.
    marker = tmp_path / "first"
    code = textwrap.dedent(
        f"""
        import os, sys
        try:
            fd = os.open({str(marker)!r}, os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            print("second one fails"); sys.exit(1)
        from pydistributed.__main__ import main
        sys.exit(main(sys.argv[3:]))
        """
    )
    with pytest.raises(dist.LaunchError, match="second one fails"):
        dist.addprocs(2, exeflags=("-c", code))
    assert eventually(lambda: dist.workers() == [1])


# -- the worker process ------------------------------------------------------------------------


def start_bare_worker(env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "pydistributed", "--worker", "--bind-to", "127.0.0.1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write(b"a-cookie\n")
    process.stdin.flush()
    return process, process.stdout.readline().decode()


def test_worker_prints_its_address_and_exits_on_stdin_eof() -> None:
    process, line = start_bare_worker()
    try:
        assert line.startswith("pydistributed_worker:")
        port, host = line.removeprefix("pydistributed_worker:").strip().split("#")
        assert host == "127.0.0.1"
        assert reachable(host, int(port))
        assert process.poll() is None
        assert process.stdin is not None
        process.stdin.close()
        process.wait(2)
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_worker_exits_when_no_master_connects() -> None:
    process, line = start_bare_worker({"PYDISTRIBUTED_WORKER_TIMEOUT": "0.5"})
    try:
        assert line.startswith("pydistributed_worker:")
        process.wait(3)
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            assert stream is not None
            stream.close()


MASTER_SCRIPT = """
import os, sys, time
import pydistributed as dist
ids = dist.addprocs(2)
print(*[dist.remotecall_fetch(os.getpid, i) for i in ids], flush=True)
time.sleep(60)
"""


def test_workers_exit_when_the_master_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "master.py"
    script.write_text(MASTER_SCRIPT)
    master = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    ospids: list[int] = []
    try:
        assert master.stdout is not None
        ospids = [int(p) for p in master.stdout.readline().split()]
        assert len(ospids) == 2
        assert all(os_pid_alive(p) for p in ospids)
        master.send_signal(signal.SIGKILL)
        master.wait()
        t0 = time.monotonic()
        assert eventually(lambda: not any(os_pid_alive(p) for p in ospids), timeout=2)
        assert time.monotonic() - t0 < 2
    finally:
        for p in ospids:
            if os_pid_alive(p):
                os.kill(p, signal.SIGKILL)
        master.kill()
        master.wait()
        assert master.stdout is not None
        master.stdout.close()


class RecordingManager(dist.LocalManager):
    """LocalManager that records the ``manage`` events it gets."""

    def __init__(self, np: int) -> None:
        super().__init__(np)
        self.ops: list[tuple[int, str]] = []

    def manage(self, pid: int, config: dist.WorkerConfig, op: Any) -> None:
        self.ops.append((pid, op))
        super().manage(pid, config, op)


def test_manage_gets_every_event_of_a_workers_life() -> None:
    manager = RecordingManager(1)
    [pid] = dist.addprocs(manager)
    dist.interrupt(pid)
    dist.rmprocs(pid, waitfor=20)
    eventually(lambda: len(manager.ops) == 4)
    assert manager.ops == [
        (pid, "register"),
        (pid, "interrupt"),
        (pid, "deregister"),
        (pid, "finalize"),
    ]


# A worker whose cluster connection is its own stdin/stdout: a transport of two pipes.
STDIO_WORKER = """
import sys, threading
import pydistributed as dist
stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
sys.stdout = sys.stderr  # the connection owns stdout
dist.init_worker(stdin.readline().decode().strip())
dist.process_messages(stdin, stdout, True)
threading.Event().wait()
"""


class StdioManager(dist.ClusterManager):
    """Workers reached over the pipes of their stdin and stdout, not over TCP."""

    def __init__(self) -> None:
        self.streams: dict[int, tuple[Any, Any]] = {}

    def launch(self, params: Any, launched: Any, launch_ntfy: Any) -> None:
        for _ in range(2):
            process = subprocess.Popen(
                [sys.executable, "-c", STDIO_WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert process.stdin is not None
            process.stdin.write(params["cookie"].encode() + b"\n")
            process.stdin.flush()
            with launch_ntfy:
                launched.append(dist.WorkerConfig(process=process))
                launch_ntfy.notify_all()

    def connect(self, pid: int, config: dist.WorkerConfig) -> tuple[Any, Any]:
        self.streams[pid] = (config.process.stdout, config.process.stdin)
        return self.streams[pid]

    def manage(self, pid: int, config: dist.WorkerConfig, op: Any) -> None:
        if op == "deregister":
            config.process.wait(10)


def test_a_custom_transport_of_two_pipes() -> None:
    manager = StdioManager()
    pids = dist.addprocs(manager, topology="master_worker")
    try:
        assert [dist.remotecall_fetch(dist.myid, p) for p in pids] == pids
        for pid in pids:
            reader, writer = manager.streams[pid]
            assert dist.worker_id_from_socket(reader) == pid
            assert dist.worker_id_from_socket(writer) == pid
            # On the worker, its stdin is its connection to the master (a nested function
            # is shipped by value: the worker cannot import this module).
            assert (
                dist.remotecall_fetch(lambda: dist.worker_id_from_socket(sys.stdin.buffer), pid)
                == 1
            )
        payload = bytes(range(256)) * 4096  # 1 MiB, more than one pipe buffer
        assert dist.remotecall_fetch(bytes, pids[0], payload) == payload
        assert dist.pmap(abs, range(-4, 0), pool=dist.WorkerPool(pids)) == [4, 3, 2, 1]
    finally:
        dist.rmprocs(pids, waitfor=20)
    assert dist.workers() == [1]


def test_addprocs_without_a_count_starts_one_worker_per_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # whatever this machine has
    pids = dist.addprocs()
    try:
        assert len(pids) == 2
        assert dist.workers() == pids
    finally:
        dist.rmprocs(pids, waitfor=20)


def _ask_the_master(value: Any) -> Any:
    return dist.remotecall_fetch(identity, 1, value)


def test_a_worker_that_stops_reading_does_not_stall_the_masters_engine(
    workers2: list[int],
) -> None:
    a, b = workers2
    ospid = ospid_of(a)
    stop_process(ospid)
    try:
        # A thread outside the engine sends one-way messages the stopped worker never reads:
        # they wait in the outbox for the watchdog, until the socket is full and they block.
        sender = threading.Thread(
            target=lambda: [dist.remote_do(identity, a, b"x" * 60_000) for _ in range(300)],
            daemon=True,
        )
        sender.start()
        time.sleep(0.5)
        # The master's reader runs a call that blocks without telling the library: the
        # watchdog must hand the reading role on, so b's call to the master is answered.
        dist.remotecall(time.sleep, dist.myid(), 3)
        time.sleep(0.1)
        t0 = time.monotonic()
        assert dist.remotecall_fetch(_ask_the_master, b, "answered") == "answered"
        assert time.monotonic() - t0 < 1.5
    finally:
        os.kill(ospid, signal.SIGCONT)
    sender.join(30)
    assert not sender.is_alive()
    assert dist.remotecall_fetch(identity, a, "a again") == "a again"
