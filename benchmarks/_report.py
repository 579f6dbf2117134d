"""The machine description and the output files (terminal text, Markdown, JSON)."""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from benchmarks._summary import Check
from benchmarks._table import Table, render_markdown, render_text

PACKAGES = ("pydistributed", "cloudpickle", "numpy", "loky", "distributed", "ray", "ipyparallel")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def _machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, "
        f"{m['platform']}, {m['date']}, load average at start {m['loadavg_at_start'][0]}"
    )


def _versions_line(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v or 'not installed'}" for k, v in m["versions"].items())


def render_terminal(machine: dict[str, Any], tables: list[Table], summary: list[Check]) -> str:
    parts = [f"Machine: {_machine_line(machine)}", f"Versions: {_versions_line(machine)}"]
    parts += [render_text(t) for t in tables]
    parts.append("Summary of targets\n" + "\n".join(c.line() for c in summary))
    return "\n\n".join(parts)


def write(
    out_dir: Path,
    machine: dict[str, Any],
    config: dict[str, Any],
    tables: list[Table],
    summary: list[Check],
    sessions: list[dict[str, Any]],
    duration: float,
) -> tuple[Path, Path]:
    """Write ``latest.md`` and ``latest.json`` into ``out_dir``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md = [
        "# pydistributed benchmarks",
        "",
        f"- Machine: {_machine_line(machine)}",
        f"- Versions: {_versions_line(machine)}",
        f"- Mode: {'quick' if config['quick'] else 'full'}, run took {duration:.0f} s",
        "",
    ]
    for table in tables:
        md += [render_markdown(table), ""]
    md += ["### Summary of targets", "", "| status | target | numbers |", "|---|---|---|"]
    md += [f"| {c.status} | {c.target} | {c.detail} |" for c in summary]
    md_path, json_path = out_dir / "latest.md", out_dir / "latest.json"
    md_path.write_text("\n".join(md) + "\n")
    doc = {
        "machine": machine,
        "config": config,
        "duration_s": round(duration, 1),
        "tables": [t.as_dict() for t in tables],
        "summary": [c.as_dict() for c in summary],
        "sessions": sessions,
    }
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    return md_path, json_path
