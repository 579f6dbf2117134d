"""Result tables: raw values for JSON, formatted text for the terminal and Markdown."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Cell = float | int | str | None


@dataclass(frozen=True)
class Column:
    """A column name and the ``str.format`` pattern for its numbers."""

    name: str
    fmt: str = "{}"

    def format(self, value: Cell) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        return self.fmt.format(value)


@dataclass
class Table:
    """One table of a family; the first column labels the rows."""

    key: str
    title: str
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def formatted(self) -> list[list[str]]:
        return [[c.format(v) for c, v in zip(self.columns, row, strict=True)] for row in self.rows]

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "columns": [c.name for c in self.columns],
            "rows": self.rows,
            "notes": self.notes,
        }


def _numeric(cells: list[str]) -> bool:
    return all(not c or c[0].isdigit() or c[0] in "-." for c in cells)


def _message_row(row: list[str]) -> bool:
    """A row whose only content after the label is one message (an error, "not installed")."""
    return bool(row[1]) and not row[1][0].isdigit() and not any(row[2:])


def _footnoted(rows: list[list[str]], notes: list[str]) -> list[list[str]]:
    """Replace long messages inside numeric rows by ``[k]`` references appended to ``notes``."""
    out = []
    for row in rows:
        if _message_row(row):
            out.append(row)
            continue
        new = [row[0]]
        for cell in row[1:]:
            if len(cell) > 24 and not cell[0].isdigit():
                if cell not in notes:
                    notes.append(cell)
                cell = f"see [{notes.index(cell) + 1}]"
            new.append(cell)
        out.append(new)
    return out


def render_text(table: Table) -> str:
    """Aligned plain-text rendering (numbers right-aligned; messages span the row)."""
    header = [c.name for c in table.columns]
    messages: list[str] = []
    body = _footnoted(table.formatted(), messages)
    sized = [header] + [r for r in body if not _message_row(r)]
    widths = [max(len(r[i]) for r in sized) for i in range(len(header))]
    widths[0] = max(len(r[0]) for r in [header, *body])
    right = [i > 0 and _numeric([r[i] for r in sized[1:]]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        if _message_row(cells):
            return f"{cells[0].ljust(widths[0])}  {cells[1]}"
        parts = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [table.title, line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    out += [f"  [{i}] {m}" for i, m in enumerate(messages, 1)]
    out += [f"  note: {n}" for n in table.notes]
    return "\n".join(out)


def render_markdown(table: Table) -> str:
    """GitHub-flavoured Markdown rendering."""
    body = table.formatted()
    right = [i > 0 and _numeric([r[i] for r in body]) for i in range(len(table.columns))]

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [f"### {table.title}", "", row([c.name for c in table.columns])]
    out.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
    out += [row(r) for r in body]
    if table.notes:
        out.append("")
        out += [f"- {n}" for n in table.notes]
    return "\n".join(out)
