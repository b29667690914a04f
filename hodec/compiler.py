"""The pipeline as named passes — read → parse → build (checks) → lower (SymPy) → render (Jinja2) → load — kept in
one object, a Compilation, so that every later step (training, sparsify, graph edits, drawing) reuses the results
instead of reading the text again.

A Compilation is made once per (file name, source text) and cached by content: `hodec.compile(path)` twice, or
`hodec.load(path)` after `hodec.compile(path)`, parse and check the spec once. Errors name the spec's path as the
user gave it; the generated code names only the file name, so it does not depend on where the spec lies.
"""
from __future__ import annotations

import builtins
import hashlib
import os
import stat
import sys
import types
from functools import cached_property
from pathlib import Path
from typing import Optional

from .errors import Diagnostic, HodecError, Span
from .model import Model, build_model
from .symbolic.lower import SymbolicModel, lower
from .syntax import ast
from .syntax.parser import parse

MAX_SPEC_BYTES = 16 * 2**20  # a spec is text written by a person; a larger "spec" is some other file


class Compilation:
    """One spec through the compiler: source, AST, checked model and symbolic model (computed when made, so a
    Compilation always holds a valid spec), and on demand the interaction graph, the generated code and the
    model class (each computed once)."""

    def __init__(self, source: str, filename: str = "<spec>", path: Optional[str] = None):
        self.source = source
        self.filename = filename  # what the generated code records
        self.path = path or filename  # what errors name
        with self._located():
            self.ast: ast.SpecFile = parse(source, filename)
            self.model: Model = build_model(self.ast)
            self.symbolic: SymbolicModel = lower(self.model)
        self._code: dict = {}
        self._classes: dict = {}

    @cached_property
    def graph(self):
        """The interaction graph (networkx; imported here so that `hodec compile` does not pay for networkx)."""
        from .graph.extract import interaction_graph

        return interaction_graph(self.symbolic)

    @cached_property
    def digest(self) -> str:
        return _digest(self.filename, self.source)

    def code(self, gates: bool = False) -> str:
        """The generated module's source; `gates` compiles in one sparsity gate per prunable edge."""
        if gates not in self._code:
            from .codegen.module import render_module  # Jinja2 is only needed once code is generated

            with self._located():
                self._code[gates] = render_module(self.symbolic, gates=gates)
        return self._code[gates]

    def model_class(self, gates: bool = False) -> type:
        """The generated model class, executed in memory as a module registered in sys.modules (so models
        pickle)."""
        if gates not in self._classes:
            name = f"hodec_generated_{self.digest}{'_gates' if gates else ''}"
            self._classes[gates] = load_source(self.code(gates), name)
        return self._classes[gates]

    def derived(self, source: str) -> "Compilation":
        """The compilation of an edited version of this spec (a pruned or transformed text), under the same
        file name and path."""
        return compile_text(source, self.filename, self.path)

    def _located(self):
        return _Relocate(self)


class _Relocate:
    """Re-raise a HodecError of the passes at the spec's path, with its text (lowering raises without them)."""

    def __init__(self, compilation: Compilation):
        self.c = compilation

    def __enter__(self):
        return self

    def __exit__(self, kind, err, tb):
        if isinstance(err, HodecError) and err.filename in (None, self.c.filename) and self.c.path:
            raise HodecError(err.diagnostics, self.c.path, err.source or self.c.source) from None
        return False


_CACHE: dict[str, Compilation] = {}


def _digest(filename: str, source: str) -> str:
    return hashlib.sha256(f"{filename}\0{source}".encode()).hexdigest()[:16]


def compile_text(source: str, filename: str = "<spec>", path: Optional[str] = None) -> Compilation:
    """The (cached) Compilation of a spec's text. `filename` is recorded in the generated code; `path` (default:
    filename) is what errors name."""
    key = _digest(filename, source)
    hit = _CACHE.get(key)
    if hit is None or hit.path != (path or filename):
        hit = _CACHE[key] = Compilation(source, filename, path)
    return hit


def compile(spec, *, source: Optional[str] = None) -> Compilation:  # noqa: A001 - hodec.compile is the API
    """The Compilation of a spec file (its text read here, or given as `source`)."""
    path = str(spec)
    text = read_source(spec) if source is None else source
    return compile_text(text, Path(path).name, path)


def read_source(path: str | Path) -> str:
    """A spec file's text. Refuses what cannot be a spec before reading it: a folder, a FIFO or device (reading
    one would hang or never end), a file over MAX_SPEC_BYTES, bytes that are not UTF-8."""
    path = Path(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise HodecError(f"no such file: {path}", str(path)) from None
    except OSError as err:
        raise HodecError(f"cannot read {path}: {err.strerror}", str(path)) from None
    if stat.S_ISDIR(info.st_mode):
        raise HodecError(f"is a directory, not a spec file: {path}", str(path))
    if not stat.S_ISREG(info.st_mode):
        raise HodecError(f"not a regular file (a device, FIFO or socket), not a spec file: {path}", str(path))
    if info.st_size > MAX_SPEC_BYTES:
        raise HodecError(f"{info.st_size} bytes is too large for a spec file (at most {MAX_SPEC_BYTES})", str(path))
    try:
        data = path.read_bytes()
    except OSError as err:
        raise HodecError(f"cannot read {path}: {err.strerror}", str(path)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        column = len(data[line_start:err.start].decode("utf-8", errors="replace")) + 1
        raise HodecError([Diagnostic(f"the file is not valid UTF-8 (byte 0x{data[err.start]:02x})",
                                     Span(line, column, line, column + 1))],
                         str(path), data.decode("utf-8", errors="replace")) from None


# ---------------------------------------------------------------- shorthands over the cache
def analyse(source: str, filename: str = "<spec>") -> Model:
    return compile_text(source, filename).model


def symbolic(source: str, filename: str = "<spec>") -> SymbolicModel:
    return compile_text(source, filename).symbolic


def compile_source(source: str, filename: str = "<spec>", gates: bool = False) -> str:
    return compile_text(source, filename).code(gates)


def compile_file(path: str | Path, gates: bool = False) -> str:
    return compile(path).code(gates)


def load(path: str | Path, gates: bool = False) -> type:
    """Compile a spec in memory and return its model class (cached by the spec's content)."""
    return compile(path).model_class(gates)


def load_text(source: str, filename: str = "<spec>", gates: bool = False) -> type:
    return compile_text(source, filename).model_class(gates)


def load_source(code: str, module_name: str) -> type:
    """Execute generated code as a module registered in sys.modules (so models pickle), return its Model."""
    module = types.ModuleType(module_name)
    module.__file__ = f"<{module_name}>"
    exec(builtins.compile(code, module.__file__, "exec"), module.__dict__)
    sys.modules[module_name] = module
    return module.Model

