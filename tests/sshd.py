"""A private OpenSSH server for tests: own keys and config, key-only login, optionally in a
network namespace of its own (a separate "host" reached over a veth pair)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from support import live_parents

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
IP = shutil.which("ip") or ("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else None)


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def keygen(path: Path) -> None:
    _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path))


def descendants(root: int) -> list[int]:
    """Live (non-zombie) processes below ``root``."""
    parent = live_parents()
    found: list[int] = []
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, pp in parent.items() if pp == pid]
        found += children
        frontier += children
    return found


class Sshd:
    """``sshd -D -e`` with its own host key, client key and config, listening on
    ``address:port`` (inside network namespace ``netns`` when given)."""

    def __init__(self, workdir: Path, address: str = "127.0.0.1", netns: str | None = None):
        self.dir = workdir
        self.address = address
        self.netns = netns
        self.port = 2222 if netns else _free_port(address)
        self.key = workdir / "client_key"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Sshd:
        assert SSHD is not None, "sshd is not installed"
        self.dir.mkdir(parents=True, exist_ok=True)
        keygen(self.dir / "host_key")
        keygen(self.key)
        shutil.copy(self.key.with_suffix(".pub"), self.dir / "authorized_keys")
        config = self.dir / "sshd_config"
        config.write_text(
            f"Port {self.port}\n"
            f"ListenAddress {self.address}\n"
            f"HostKey {self.dir / 'host_key'}\n"
            f"PidFile {self.dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "AllowTcpForwarding yes\n"
            "UseDNS no\n"
            "MaxStartups 50\n"
            "MaxSessions 50\n"
            "LogLevel ERROR\n"
        )
        # Debian's sshd wants its privilege-separation directory.
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        prefix = [IP or "ip", "netns", "exec", self.netns] if self.netns else []
        self.process = subprocess.Popen(
            [*prefix, SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                out = self.process.stdout.read().decode() if self.process.stdout else ""
                raise RuntimeError(f"sshd exited: {out}")
            try:
                socket.create_connection((self.address, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("sshd did not start listening") from None
                time.sleep(0.05)

    @property
    def sshflags(self) -> tuple[str, ...]:
        """Client options logging in with the generated key, no host-key prompts."""
        return (
            "-F",
            "/dev/null",
            "-i",
            str(self.key),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
        )

    def spec(self, bind: str | None = None) -> str:
        """Machine spec ``root@ADDRESS:PORT [bind]`` of this server."""
        user = os.environ.get("USER") or "root"
        host = f"{user}@{self.address}:{self.port}"
        return f"{host} {bind}" if bind else host

    def sessions(self) -> list[int]:
        """Processes running under this sshd (sessions and what they run)."""
        return descendants(self.process.pid) if self.process else []

    def wait_idle(self, timeout: float = 10.0) -> list[int]:
        """Wait until no session is left; return those still there after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := self.sessions()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def stop(self) -> None:
        if self.process is None:
            return
        for pid in self.sessions():
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None


def _free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        port: int = probe.getsockname()[1]
        return port


class Netns:
    """A network namespace joined to this one by a veth pair: this side ``outer``, the
    namespace side ``inner`` (a /24 of 10.x), loopback up inside."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.name = f"pydtest{tag}"
        self.veth = f"pydv{tag}"
        # A /24 of its own per test process (several may run at once on one machine).
        subnet = f"10.{200 + tag // 250 % 50}.{tag % 250}"
        self.outer = f"{subnet}.1"
        self.inner = f"{subnet}.2"

    @staticmethod
    def unavailable() -> str | None:
        """Why namespaces cannot be made here, or None."""
        if IP is None:
            return "iproute2 (ip) is not installed"
        if os.geteuid() != 0:
            return "network namespaces need root"
        return None

    def create(self) -> Netns:
        ip = IP or "ip"
        self.delete()
        try:
            _run(ip, "netns", "add", self.name)
            _run(ip, "link", "add", self.veth, "type", "veth", "peer", "name", self.veth + "n")
            _run(ip, "link", "set", self.veth + "n", "netns", self.name)
            _run(ip, "addr", "add", f"{self.outer}/24", "dev", self.veth)
            _run(ip, "link", "set", self.veth, "up")
            inside = (ip, "netns", "exec", self.name, ip)
            _run(*inside, "addr", "add", f"{self.inner}/24", "dev", self.veth + "n")
            _run(*inside, "link", "set", self.veth + "n", "up")
            _run(*inside, "link", "set", "lo", "up")
        except (subprocess.CalledProcessError, OSError) as exc:
            self.delete()
            err = getattr(exc, "stderr", b"") or b""
            raise RuntimeError(f"cannot create network namespace: {exc} {err.decode()}") from exc
        return self

    def delete(self) -> None:
        ip = IP or "ip"
        for argv in ((ip, "link", "del", self.veth), (ip, "netns", "del", self.name)):
            subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


if __name__ == "__main__":  # manual check: python tests/sshd.py
    import tempfile

    server = Sshd(Path(tempfile.mkdtemp())).start()
    print(server.spec(), " ".join(server.sshflags))
    try:
        subprocess.run(["ssh", *server.sshflags, "-p", str(server.port), "root@127.0.0.1", "id"])
    finally:
        server.stop()
    sys.exit(0)
