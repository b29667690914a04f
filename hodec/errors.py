"""Diagnostics: every user-facing failure is a HodecError carrying one or more located messages."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Optional


@dataclass(frozen=True)
class Span:
    """A source range, 1-based lines and columns, end column exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Optional[Span] = None
    hint: Optional[str] = None

    def render(self, filename: Optional[str], source: Optional[str]) -> str:
        if filename is None:  # not about a file (a command-line option, a runtime call): named after the tool
            filename = "hodec" if self.span is None else "<spec>"
        if self.span is None:
            head = f"{filename}: error: {self.message}"
        else:
            head = f"{filename}:{self.span.line}:{self.span.column}: error: {self.message}"
        lines = [head]
        if self.span is not None and source is not None:
            lines.extend(_excerpt(source, self.span))
        if self.hint:
            lines.append(f"  {self.hint}")
        return "\n".join(lines)


def _excerpt(source: str, span: Span) -> list[str]:
    text_lines = source.split("\n")  # as the parser counts lines: not splitlines(), which also breaks at \f, \x1c...
    if not 1 <= span.line <= len(text_lines):
        return []
    text = text_lines[span.line - 1].rstrip("\r").replace("\t", " ")
    if not text.strip():
        return []  # nothing to point at (an empty file)
    end = span.end_column if span.end_line == span.line else len(text) + 1
    width = max(1, min(end, len(text) + 1) - span.column)
    return [f"    {text}", "    " + " " * (span.column - 1) + "^" * width]


class HodecError(Exception):
    """A user error: bad spec, bad data, bad option. The CLI prints it and exits with code 1."""

    def __init__(self, diagnostics: Iterable[Diagnostic] | str, filename: Optional[str] = None,
                 source: Optional[str] = None):
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic(diagnostics)]
        self.diagnostics = sorted(diagnostics, key=_position)
        self.filename = filename
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render(self.filename, self.source) for d in self.diagnostics)


def _position(d: Diagnostic):
    return (0, 0) if d.span is None else (d.span.line, d.span.column)


def did_you_mean(name: str, candidates: Iterable[str]) -> Optional[str]:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None
