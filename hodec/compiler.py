"""The pipeline as named passes: read → parse → build (checks) → lower (SymPy) → render (Jinja2)."""
from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

from .errors import Diagnostic, HodecError, Span
from .model import Model, build_model
from .symbolic.lower import SymbolicModel, lower
from .syntax.parser import parse


def read_source(path: str | Path) -> str:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HodecError(f"no such file: {path}", str(path)) from None
    except IsADirectoryError:
        raise HodecError(f"is a directory, not a spec file: {path}", str(path)) from None
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


def analyse(source: str, filename: str = "<spec>") -> Model:
    return build_model(parse(source, filename))


def symbolic(source: str, filename: str = "<spec>") -> SymbolicModel:
    model = analyse(source, filename)
    try:
        return lower(model)
    except HodecError as err:  # located at an expression, but raised without the file
        raise HodecError(err.diagnostics, filename, source) from None


def compile_source(source: str, filename: str = "<spec>", gates: bool = False) -> str:
    from .codegen.module import render_module

    return render_module(symbolic(source, filename), gates=gates)


def compile_file(path: str | Path, gates: bool = False) -> str:
    return compile_source(read_source(path), Path(path).name, gates=gates)


_LOADED: dict[str, type] = {}


def load(path: str | Path, gates: bool = False) -> type:
    """Compile a spec in memory and return its model class (cached by the spec's content)."""
    return load_text(read_source(path), Path(path).name, gates)


def load_text(source: str, filename: str = "<spec>", gates: bool = False) -> type:
    key = hashlib.sha256(f"{filename}\0{gates}\0{source}".encode()).hexdigest()[:16]
    if key not in _LOADED:
        _LOADED[key] = load_source(compile_source(source, filename, gates), f"hodec_generated_{key}")
    return _LOADED[key]


def load_source(code: str, module_name: str) -> type:
    """Execute generated code as a module registered in sys.modules (so models pickle), return its Model."""
    module = types.ModuleType(module_name)
    module.__file__ = f"<{module_name}>"
    exec(compile(code, module.__file__, "exec"), module.__dict__)
    sys.modules[module_name] = module
    return module.Model
