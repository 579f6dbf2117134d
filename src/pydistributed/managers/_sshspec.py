"""Machine specifications and the remote command line of SSH workers.

``"[user@]host[:port] [bind_addr[:port]]"`` parsed into a :class:`Machine`, and the command
string ssh runs on the remote login shell (POSIX sh or csh), every word quoted for it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ("SHELLS", "Machine", "parse_machine", "remote_command")

SHELLS = ("posix", "csh")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class Machine:
    """One parsed machine specification ``"[user@]host[:port] [bind_addr[:port]]"``."""

    host: str
    user: str | None = None
    port: int | None = None
    bind_addr: str | None = None
    bind_port: int | None = None

    @property
    def destination(self) -> str:
        """What ssh is told to connect to: ``user@host`` or ``host``."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def bind_to(self) -> str:
        """The worker's ``--bind-to`` argument (every interface without a bind_addr)."""
        host = self.bind_addr or "0.0.0.0"
        if self.bind_port is None:
            return host
        return f"[{host}]:{self.bind_port}" if ":" in host else f"{host}:{self.bind_port}"


def _host_port(text: str, spec: str) -> tuple[str, int | None]:
    def invalid(why: str) -> ValueError:
        return ValueError(f"invalid machine specification {spec!r}: {why}")

    if text.startswith("["):  # IPv6 in brackets (RFC 2732)
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise invalid("bad IPv6 address")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_or_empty = text.partition(":")
        if ":" in port_text_or_empty:
            raise invalid("an IPv6 address with a port must be in brackets")
        port_text = port_text_or_empty if colon else None
    if not host:
        raise invalid("no host")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise invalid(f"bad port {port_text!r}")
    return host, int(port_text)


def parse_machine(spec: str) -> Machine:
    """Parse ``"[user@]host[:port] [bind_addr[:port]]"``.

    Raises:
        ValueError: the specification is malformed (empty, bad port, more than two parts).
    """
    if not isinstance(spec, str):
        raise TypeError(f"a machine specification is a string, not {type(spec).__name__}")
    parts = spec.split()
    if not 1 <= len(parts) <= 2:
        raise ValueError(
            f"invalid machine specification {spec!r}: "
            "expected '[user@]host[:port] [bind_addr[:port]]'"
        )
    user, at, address = parts[0].rpartition("@")
    if at and not user:
        raise ValueError(f"invalid machine specification {spec!r}: empty user")
    host, port = _host_port(address, spec)
    bind_addr, bind_port = _host_port(parts[1], spec) if len(parts) == 2 else (None, None)
    return Machine(host, user or None, port, bind_addr, bind_port)


def _csh_quote(text: str) -> str:
    # Single quotes protect everything in csh except ``!`` (history) and newlines.
    body = text.replace("'", "'\\''").replace("!", "\\!").replace("\n", "\\\n")
    return f"'{body}'"


def remote_command(shell: str, argv: Sequence[str], dir: str | None, env: dict[str, str]) -> str:
    """The command string ssh runs on the remote host's login shell.

    ``posix`` (sh, bash, zsh, ...): ``sh -l -c 'cd -- DIR; export K=V; exec ARGV'``; ``csh``
    (csh, tcsh): ``cd``/``setenv`` lines then ``exec``. As in Julia, a ``dir`` that does not
    exist there is reported on the worker's output and the worker starts in the login
    directory.

    Raises:
        ValueError: unknown shell, or an environment variable name that is not an identifier.
    """
    for name in env:
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name {name!r}")
    if shell == "posix":
        lines = [f"cd -- {shlex.quote(dir)}"] if dir else []
        lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items()]
        lines.append("exec " + shlex.join(argv))
        return "sh -l -c " + shlex.quote("\n".join(lines))
    if shell == "csh":
        lines = [f"cd {_csh_quote(dir)}"] if dir else []
        lines += [f"setenv {name} {_csh_quote(value)}" for name, value in env.items()]
        lines.append("exec " + " ".join(_csh_quote(arg) for arg in argv))
        return "\n".join(lines)
    raise ValueError(
        f"shell must be one of {', '.join(map(repr, SHELLS))}, not {shell!r} "
        "(Windows cmd.exe workers are not supported)"
    )
