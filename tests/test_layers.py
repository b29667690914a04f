"""The package reads as the pipeline: no module imports a layer above its own (imports inside functions
included), so that each layer can be understood, tested and replaced on its own."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hodec"
BASE = {"errors", "files", "resources", "version", "tables"}
# Each layer and the layers it may import (the base modules are open to all).
ALLOWED = {
    "syntax": set(),
    "model": {"syntax"},
    "symbolic": {"syntax", "model"},
    "graph": {"syntax", "model", "symbolic"},  # spec-level analysis and spec-to-spec edits, beside codegen
    "codegen": {"syntax", "model", "symbolic"},
    "solvers": set(),  # hodec's own ODE solvers: a generic numerical library (torch only), under the runtime
    "runtime": {"solvers"},  # what generated modules import: nothing of the compiler
    "compiler": {"syntax", "model", "symbolic", "codegen", "graph"},
    "training": {"syntax", "model", "symbolic", "graph", "solvers", "runtime", "compiler"},
    # importers and exporters of outside formats (SBML, PEtab, PEtab-SciML): build on everything but the cli
    "interop": {"syntax", "model", "symbolic", "graph", "codegen", "solvers", "runtime", "compiler", "training"},
    "cli": {"syntax", "model", "symbolic", "graph", "codegen", "solvers", "runtime", "compiler", "training",
            "interop"},
    "__init__": {"compiler", "training"},
    "__main__": {"cli"},
}


def _layer(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path):
    """(line, the hodec layer imported) for every import of a hodec module in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: no import at run time
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = list(base) + (node.module.split(".") if node.module else [])
                names = [target + [a.name] for a in node.names] if not node.module or len(target) == 1 else [target]
            else:
                names = [node.module.split(".")] if node.module else []
            for name in names:
                if name and name[0] == "hodec" and len(name) > 1:
                    yield node.lineno, name[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name.split(".")
                if name[0] == "hodec" and len(name) > 1:
                    yield node.lineno, name[1]


def _is_type_checking(test) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


FILES = sorted(p for p in PACKAGE.rglob("*.py") if "_data" not in p.parts)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_layer_imports_a_layer_above_it(path):
    layer = _layer(path)
    if layer in BASE:
        allowed = BASE
    else:
        allowed = ALLOWED[layer] | BASE | {layer}
    bad = [(line, target) for line, target in _imports(path) if target not in allowed]
    assert not bad, f"{path.relative_to(PACKAGE)} imports a layer above it: {bad}"


def test_every_package_has_a_layer():
    layers = {_layer(p) for p in FILES}
    assert layers <= set(ALLOWED) | BASE, layers - set(ALLOWED) - BASE
