"""The public surface: ``pydistributed.__all__`` against the API contract (API.md)."""

from __future__ import annotations

import inspect
import os
import re
import sys
from pathlib import Path

import pytest

import pydistributed as dist

# The sections of API.md this test holds the package to.
SECTIONS = (
    "Processes",
    "Remote calls and references",
    "Pools and parallel patterns",
    "Cluster manager interface",
)
# Names of those sections that are not built yet.
NOT_YET: frozenset[str] = frozenset()


def api_md() -> Path:
    candidates = [
        Path(os.environ.get("PYDISTRIBUTED_API_MD", "")),
        Path(__file__).resolve().parents[2] / "shared" / "API.md",
        Path("/work/shared/API.md"),
    ]
    for path in candidates:
        if path.is_file():
            return path
    pytest.skip("API.md not found")


def table_names(text: str, section: str) -> list[str]:
    """The names in the first column of the table of ``## section``."""
    match = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {section!r} in API.md"
    names = []
    for line in match.group(1).splitlines():
        if not line.startswith("|") or line.startswith("|---") or line.startswith("| Python"):
            continue
        first = line.split(" | ")[0]
        for code in re.findall(r"`([^`]+)`", first):
            name = re.match(r"@?([A-Za-z_]\w*)", code)
            assert name, code
            names.append(name.group(1))
    return names


def contract_names() -> set[str]:
    text = api_md().read_text()
    return {name for section in SECTIONS for name in table_names(text, section)}


def test_parser_reads_the_tables() -> None:
    names = contract_names()
    assert {"addprocs", "rmprocs", "myid", "remotecall_fetch", "Future", "WorkerConfig"} <= names
    assert {"nprocs", "nworkers", "launch", "manage", "kill", "connect", "LocalManager"} <= names
    assert {"pmap", "WorkerPool", "everywhere", "distributed", "sync"} <= names
    assert NOT_YET - names <= set(), f"stale exceptions: {sorted(NOT_YET - names)}"


def test_all_is_a_tuple_of_unique_existing_names() -> None:
    assert isinstance(dist.__all__, tuple)
    assert len(set(dist.__all__)) == len(dist.__all__)
    missing = [name for name in dist.__all__ if not hasattr(dist, name)]
    assert not missing


def test_contract_names_are_exported() -> None:
    expected = contract_names() - NOT_YET
    missing = sorted(expected - set(dist.__all__))
    assert not missing, f"names of API.md missing from pydistributed.__all__: {missing}"
    for name in expected:
        assert getattr(dist, name) is not None


def test_public_names_have_docstrings() -> None:
    undocumented = [
        name
        for name in dist.__all__
        if (inspect.isfunction(getattr(dist, name)) or inspect.isclass(getattr(dist, name)))
        and not inspect.getdoc(getattr(dist, name))
    ]
    assert not undocumented


def test_public_classes_have_the_public_module() -> None:
    classes = [name for name in dist.__all__ if inspect.isclass(getattr(dist, name))]
    assert {"Future", "RemoteException", "ClusterManager", "RRID", "WorkerConfig"} <= set(classes)
    for name in classes:
        assert getattr(dist, name).__module__ == "pydistributed", name


def test_signatures_take_the_callable_positionally() -> None:
    for name in ("remotecall", "remotecall_fetch", "remotecall_wait", "remote_do"):
        params = list(inspect.signature(getattr(dist, name)).parameters.values())
        assert [p.kind for p in params[:2]] == [inspect.Parameter.POSITIONAL_ONLY] * 2, name
        assert params[2].kind is inspect.Parameter.VAR_POSITIONAL
        assert params[3].kind is inspect.Parameter.VAR_KEYWORD


def test_default_addprocs_params() -> None:
    params = dist.default_addprocs_params()
    keys = {"topology", "dir", "exename", "exeflags", "env", "lazy", "enable_threaded_blas"}
    assert keys <= set(params)
    assert params["exename"] == sys.executable
    assert params["dir"] == os.getcwd()
    assert params["topology"] == "all_to_all"
    assert params["lazy"] is True


def test_worker_config_fields() -> None:
    fields = (
        "io",
        "host",
        "port",
        "count",
        "exename",
        "exeflags",
        "userdata",
        "tunnel",
        "multiplex",
        "forward",
        "bind_addr",
        "sshflags",
        "max_parallel",
        "connect_at",
        "process",
        "ospid",
        "environ",
        "ident",
        "connect_idents",
        "enable_threaded_blas",
    )
    config = dist.WorkerConfig()
    for field in fields:
        assert getattr(config, field) is None, field


def test_rrid_is_a_named_tuple() -> None:
    rrid = dist.RRID(2, 5)
    assert rrid == (2, 5)
    assert (rrid.whence, rrid.id) == (2, 5)
    future = dist.Future()
    assert dist.remoteref_id(future) == dist.RRID(future.whence, future.id)
