"""The pipeline as named passes: read → parse → build (checks) → lower (SymPy) → render (Jinja2)."""
from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

from .errors import HodecError
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
        raise HodecError(f"line {line}: the file is not valid UTF-8 (byte 0x{data[err.start]:02x})",
                         str(path)) from None


def analyse(source: str, filename: str = "<spec>") -> Model:
    return build_model(parse(source, filename))


def symbolic(source: str, filename: str = "<spec>") -> SymbolicModel:
    return lower(analyse(source, filename))


def compile_source(source: str, filename: str = "<spec>") -> str:
    from .codegen.module import render_module

    return render_module(symbolic(source, filename))


def compile_file(path: str | Path) -> str:
    return compile_source(read_source(path), Path(path).name)


_LOADED: dict[str, type] = {}


def load(path: str | Path) -> type:
    """Compile a spec in memory and return its model class (cached by the spec's content)."""
    source = read_source(path)
    key = hashlib.sha256((Path(path).name + "\0" + source).encode()).hexdigest()[:16]
    if key not in _LOADED:
        _LOADED[key] = load_source(compile_source(source, Path(path).name), f"hodec_generated_{key}")
    return _LOADED[key]


def load_source(code: str, module_name: str) -> type:
    """Execute generated code as a module registered in sys.modules (so models pickle), return its Model."""
    module = types.ModuleType(module_name)
    module.__file__ = f"<{module_name}>"
    exec(compile(code, module.__file__, "exec"), module.__dict__)
    sys.modules[module_name] = module
    return module.Model
