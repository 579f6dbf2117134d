"""SSHManager against real OpenSSH servers: one on loopback, one in a network namespace of
its own (a separate "host" reached over a veth pair). Workers run the test venv's python
(the hosts share this filesystem)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import pydistributed as dist
from pydistributed._cluster import PGRP
from pydistributed.managers._sshspec import Machine, parse_machine, remote_command
from sshd import SSHD, Netns, Sshd, keygen

pytestmark = pytest.mark.timeout(60)


def _need_sshd() -> None:
    if SSHD is None:
        message = "sshd is not installed (scripts/test.sh installs openssh-server as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def loopback_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    _need_sshd()
    server = Sshd(tmp_path_factory.mktemp("sshd")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def netns() -> Iterator[Netns]:
    why = Netns.unavailable()
    if why:
        pytest.skip(f"no separate host: {why}")
    try:
        ns = Netns().create()
    except RuntimeError as exc:
        pytest.skip(f"no separate host: {exc}")
    yield ns
    ns.delete()


@pytest.fixture(scope="module")
def netns_sshd(netns: Netns, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    _need_sshd()
    server = Sshd(tmp_path_factory.mktemp("sshd-ns"), netns.inner, netns.name).start()
    yield server
    server.stop()


def _idle_after(server: Sshd) -> Iterator[Sshd]:
    before = dist.workers()
    yield server
    assert dist.workers() == before, "test left workers in the cluster"
    # Sessions end as their workers exit; a multiplexing master lingers a few seconds.
    left = server.wait_idle(10)
    assert not left, f"ssh sessions or workers left on the server: {left}"


@pytest.fixture
def host(loopback_sshd: Sshd) -> Iterator[Sshd]:
    """The loopback server; checks that no session or worker is left on it afterwards."""
    yield from _idle_after(loopback_sshd)


@pytest.fixture
def remote(netns_sshd: Sshd) -> Iterator[Sshd]:
    """The server in its own network namespace, checked like ``host``."""
    yield from _idle_after(netns_sshd)


def _add(server: Sshd, machines: list[object], **kw: object) -> list[int]:
    options: dict[str, object] = {"sshflags": server.sshflags, "exename": sys.executable}
    options.update(kw)
    return dist.addprocs(machines, **options)


def _netns_id() -> str:
    return os.readlink("/proc/self/ns/net")


def _peer_caller() -> Callable[[int], tuple[int, str]]:
    # Nested, so shipped by value: the remote hosts do not have the tests on their sys.path.
    def call_peer(pid: int) -> tuple[int, str]:
        probe = lambda: (dist.myid(), os.readlink("/proc/self/ns/net"))  # noqa: E731
        return dist.remotecall_fetch(probe, pid)

    return call_peer


_call_peer = _peer_caller()


# -- specifications and commands (no ssh) -------------------------------------------------


def test_parse_machine() -> None:
    assert parse_machine("node1") == Machine("node1")
    assert parse_machine("alice@node1:2222") == Machine("node1", "alice", 2222)
    assert parse_machine("node1 10.0.0.5") == Machine("node1", bind_addr="10.0.0.5")
    assert parse_machine("a@b@node1:22  10.0.0.5:9000") == Machine(
        "node1", "a@b", 22, "10.0.0.5", 9000
    )
    assert parse_machine("[::1]:2200 [fe80::1]:9000") == Machine("::1", None, 2200, "fe80::1", 9000)
    assert parse_machine("node1 10.0.0.5:9000").bind_to == "10.0.0.5:9000"
    assert parse_machine("node1 [::1]").bind_to == "::1"
    assert parse_machine("node1 [::1]:9000").bind_to == "[::1]:9000"
    assert parse_machine("node1").bind_to == "0.0.0.0"
    assert parse_machine("bob@node1").destination == "bob@node1"
    for bad in (
        "",
        "   ",
        "node1:0",
        "node1:65536",
        "node1:ssh",
        "::1:22",
        "n ::1",
        "@node1",
        "a b c",
    ):
        with pytest.raises(ValueError, match="invalid machine specification"):
            parse_machine(bad)


def test_manager_counts_machines() -> None:
    manager = dist.SSHManager(["a", ("a", 2), ("b", "auto"), ("b", 3), ("c", "auto"), "c"])
    # As in Julia: counts add up; a number after "auto" replaces it, "auto" replaces a number.
    assert manager.machines == {"a": 3, "b": 3, "c": 1}
    assert dist.SSHManager([("d", 2), ("d", "auto")]).machines == {"d": "auto"}
    with pytest.raises(ValueError, match="count"):
        dist.SSHManager([("a", -1)])
    with pytest.raises(ValueError, match="count"):
        dist.SSHManager([("a", "many")])
    with pytest.raises(ValueError, match="invalid machine"):
        dist.SSHManager(["a:99999"])


def test_default_params() -> None:
    params = dist.default_addprocs_params(dist.SSHManager(["a"]))
    assert params["exename"] == "python3"
    assert params["shell"] == "posix"
    assert params["max_parallel"] == 10
    assert params["tunnel"] is False
    assert params["multiplex"] is False
    assert dist.default_addprocs_params()["exename"] == sys.executable


def test_bad_keywords_raise_before_any_ssh() -> None:
    with pytest.raises(ValueError, match="shell"):
        dist.addprocs(["nowhere.invalid"], shell="wincmd")
    with pytest.raises(ValueError, match="environment variable"):
        dist.addprocs(["nowhere.invalid"], env={"A-B": "1"})
    with pytest.raises(ValueError, match="max_parallel"):
        dist.addprocs(["nowhere.invalid"], max_parallel=0)


def test_posix_command_quotes_everything(tmp_path: Path) -> None:
    odd = tmp_path / "dir with 'quotes' and $dollar"
    odd.mkdir()
    env = {"PYD_ODD": "a b'c\"$HOME`x`\nline2"}
    code = "import os; print(os.getcwd()); print(repr(os.environ['PYD_ODD']))"
    command = remote_command("posix", [sys.executable, "-c", code], str(odd), env)
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=30)
    assert out.stdout.splitlines() == [str(odd), repr(env["PYD_ODD"])], out.stderr


@pytest.mark.skipif(shutil.which("csh") is None, reason="csh is not installed")
def test_csh_command_quotes_everything(tmp_path: Path) -> None:
    env = {"PYD_ODD": "a b'c\"$HOME!x\nline2"}
    code = "import os; print(os.getcwd()); print(repr(os.environ['PYD_ODD']))"
    command = remote_command("csh", [sys.executable, "-c", code], str(tmp_path), env)
    out = subprocess.run(["csh", "-c", command], capture_output=True, text=True, timeout=30)
    assert out.stdout.splitlines() == [str(tmp_path), repr(env["PYD_ODD"])], out.stderr


# -- workers on the loopback server ---------------------------------------------------------


def test_two_workers_calls_and_cleanup(host: Sshd) -> None:
    pids = _add(host, [(host.spec(), 2)])
    try:
        assert len(pids) == 2
        assert set(pids) <= set(dist.workers())
        ospids = [dist.remotecall_fetch(os.getpid, p) for p in pids]
        # The workers run under the ssh server, not as children of this process.
        assert set(ospids) <= set(host.sessions())
        assert dist.remotecall_fetch(sum, pids[0], [1, 2, 3]) == 6
        # Worker to worker, both directions (each dials the other directly).
        a, b = pids
        assert dist.remotecall_fetch(lambda q: dist.remotecall_fetch(dist.myid, q), a, b) == b
        assert dist.remotecall_fetch(lambda q: dist.remotecall_fetch(dist.myid, q), b, a) == a
        # Same host as the master.
        assert set(dist.procs(a)) >= {1, a, b}
        config = PGRP.workers[a].config
        assert config is not None
        assert config.tunnel is False
        assert config.host == "127.0.0.1"
    finally:
        dist.rmprocs(pids, waitfor=20)
    for config_pid in ospids:
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{config_pid}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{config_pid}")


def test_auto_count_and_max_parallel(host: Sshd) -> None:
    pids = _add(host, [(host.spec(), "auto")], max_parallel=1)
    try:
        assert len(pids) == (os.cpu_count() or 1)
        assert [dist.remotecall_fetch(dist.myid, p) for p in pids] == pids
    finally:
        dist.rmprocs(pids, waitfor=20)


def test_env_and_dir(host: Sshd, tmp_path: Path) -> None:
    pids = _add(host, [host.spec()], env={"PYD_SSH_VAR": "x y'z"}, dir=str(tmp_path))
    try:
        got = dist.remotecall_fetch(
            lambda: (os.getcwd(), os.environ.get("PYD_SSH_VAR"), os.environ["OMP_NUM_THREADS"]),
            pids[0],
        )
        assert got == (str(tmp_path), "x y'z", "1")
        # interrupt() reaches SSH workers too (over their cluster connection).
        call = dist.remotecall(time.sleep, pids[0], 30)
        time.sleep(0.3)
        dist.interrupt(pids[0])
        with pytest.raises(dist.RemoteException) as info:
            call.fetch(timeout=20)
        assert isinstance(info.value.exception, KeyboardInterrupt)
    finally:
        dist.rmprocs(pids, waitfor=20)


def test_multiplex_shares_one_connection(host: Sshd) -> None:
    pids = _add(host, [(host.spec(), 3)], multiplex=True)
    try:
        assert [dist.remotecall_fetch(dist.myid, p) for p in pids] == pids
        connections = [
            p
            for p in host.sessions()
            if Path(f"/proc/{p}/cmdline").read_bytes().startswith(b"sshd")
        ]
        assert len(connections) == 1
    finally:
        dist.rmprocs(pids, waitfor=20)


def test_tunnel(host: Sshd) -> None:
    pids = _add(host, [(host.spec("127.0.0.1"), 2)], tunnel=True)
    try:
        for pid in pids:
            config = PGRP.workers[pid].config
            assert config is not None
            assert config.forward is not None
            local, target, port = config.forward.split(":")
            assert (target, int(port)) == ("127.0.0.1", config.port)
            assert int(local) != config.port
        a, b = pids
        assert dist.remotecall_fetch(lambda q: dist.remotecall_fetch(dist.myid, q), a, b) == b
    finally:
        dist.rmprocs(pids, waitfor=20)


def test_killed_session_removes_the_worker(host: Sshd) -> None:
    pids = _add(host, [(host.spec(), 2)])
    try:
        victim, other = pids
        call = dist.remotecall(time.sleep, victim, 30)
        config = PGRP.workers[victim].config
        assert config is not None
        config.process.kill()
        with pytest.raises(dist.ProcessExitedException):
            call.fetch(timeout=20)
        deadline = time.monotonic() + 10
        while victim in dist.workers() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victim not in dist.workers()
        assert dist.remotecall_fetch(dist.myid, other) == other
    finally:
        dist.rmprocs(pids, waitfor=20)


MASTER = """
import json, os, sys
import pydistributed as dist
machines, options, how = json.loads(sys.argv[1])
pids = dist.addprocs([tuple(m) if isinstance(m, list) else m for m in machines], **options)
print(json.dumps([dist.remotecall_fetch(os.getpid, p) for p in pids]), flush=True)
sys.stdin.readline()  # until the test says go
"""


@pytest.mark.parametrize("how", ["exits", "killed"])
def test_master_exit_stops_everything(host: Sshd, how: str) -> None:
    options = {"sshflags": list(host.sshflags), "exename": sys.executable, "tunnel": True}
    argument = json.dumps([[[host.spec(), 2]], options, how])
    master = subprocess.Popen(
        [sys.executable, "-c", MASTER, argument],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert master.stdout is not None
        ospids = json.loads(master.stdout.readline())
        assert len(ospids) == 2
        assert set(ospids) <= set(host.sessions())
        assert master.stdin is not None
        if how == "killed":
            master.kill()
        else:
            master.stdin.write("go\n")
            master.stdin.flush()
        assert master.wait(20) in (0, -9)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
        for stream in (master.stdin, master.stdout):
            if stream is not None:
                stream.close()
    # Workers, their sessions, tunnels and ssh clients all end once the master is gone.
    assert not host.wait_idle(15)
    deadline = time.monotonic() + 10
    while (left := _ssh_clients(host)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left


def _ssh_clients(server: Sshd) -> list[int]:
    """ssh client processes using this server's key."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if str(server.key).encode() in cmdline and b"sshd" not in cmdline:
                found.append(int(entry))
    return found


# -- failed launches --------------------------------------------------------------------------


def _assert_launch_fails(host: Sshd, machines: list[object], text: str, **kw: object) -> None:
    before = dist.workers()
    started = time.monotonic()
    with pytest.raises(dist.LaunchError) as info:
        _add(host, machines, **kw)
    assert text in str(info.value)
    assert time.monotonic() - started < 20
    assert dist.workers() == before


def test_bad_port_fails(host: Sshd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYDISTRIBUTED_WORKER_TIMEOUT", "10")
    _assert_launch_fails(host, ["127.0.0.1:1"], "Connection refused")


def test_failed_login_fails(host: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    flags = list(host.sshflags)
    flags[flags.index("-i") + 1] = str(tmp_path / "stranger")
    _assert_launch_fails(host, [host.spec()], "Permission denied", sshflags=flags)


def test_bad_exename_fails(host: Sshd) -> None:
    _assert_launch_fails(host, [(host.spec(), 2)], "/no/such/python", exename="/no/such/python")


def test_auto_with_bad_exename_fails(host: Sshd) -> None:
    _assert_launch_fails(
        host, [(host.spec(), "auto")], "/no/such/python", exename="/no/such/python"
    )


def test_python_without_pydistributed_fails(host: Sshd) -> None:
    bare = shutil.which("python3", path="/usr/bin:/bin")
    if bare is None or subprocess.run([bare, "-c", "import pydistributed"]).returncode == 0:
        pytest.skip("no python3 without pydistributed on this machine")
    _assert_launch_fails(host, [host.spec()], "No module named pydistributed", exename=bare)


def test_failed_host_fails_the_whole_launch(host: Sshd) -> None:
    # One good machine, one whose exename is wrong: nothing stays.
    _assert_launch_fails(
        host, [host.spec(), "127.0.0.1:1"], "Connection refused", exename=sys.executable
    )


def test_silent_host_times_out(host: Sshd, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # An ssh that never answers (here: one that sleeps) fails within the timeout, and the
    # host's other workers are not started once its first one failed.
    calls = tmp_path / "calls"
    silent = tmp_path / "silent-ssh"
    silent.write_text(f"#!/bin/sh\necho started >> {calls}\nexec sleep 30\n")
    silent.chmod(0o755)
    monkeypatch.setenv("PYDISTRIBUTED_WORKER_TIMEOUT", "1.5")
    _assert_launch_fails(
        host, [(host.spec(), 3)], "did not report its address within 1.5 s", ssh=str(silent)
    )
    assert calls.read_text().split() == ["started"]


# -- a separate host: a network namespace -----------------------------------------------------


def test_separate_host_direct(remote: Sshd, host: Sshd, netns: Netns) -> None:
    # One worker inside the namespace, bound to its veth address; one on this host bound to
    # our end of the veth, so that each can dial the other.
    pids = _add(remote, [remote.spec(netns.inner)])
    pids += _add(host, [host.spec(netns.outer)])
    try:
        inside, outside = pids
        assert PGRP.workers[inside].host == netns.inner
        assert _call_peer(inside)[1] != _netns_id()
        assert _call_peer(outside)[1] == _netns_id()
        assert dist.remotecall_fetch(_call_peer, inside, outside) == (outside, _netns_id())
        assert dist.remotecall_fetch(_call_peer, outside, inside)[0] == inside
        assert dist.procs(inside) == [inside]
        assert inside not in dist.procs(outside)
    finally:
        dist.rmprocs(pids, waitfor=20)


@pytest.mark.parametrize("multiplex", [False, True])
def test_separate_host_tunnel(remote: Sshd, netns: Netns, multiplex: bool) -> None:
    # Bound to 127.0.0.1 inside the namespace: only the tunnel reaches these workers.
    pids = _add(remote, [(remote.spec("127.0.0.1"), 2)], tunnel=True, multiplex=multiplex)
    try:
        a, b = pids
        assert _call_peer(a)[1] != _netns_id()
        # The two workers share their host's loopback, so they reach each other directly.
        assert dist.remotecall_fetch(_call_peer, a, b)[0] == b
        config = PGRP.workers[a].config
        assert config is not None
        assert config.forward is not None
        assert config.forward.endswith(f":127.0.0.1:{config.port}")
    finally:
        dist.rmprocs(pids, waitfor=20)
