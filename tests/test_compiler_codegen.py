"""The generated code as a reader meets it (issue 13 defect 11) and the code generator's layering (issue 13:
codegen imports neither hodec/__init__ for the version nor the graph package for the edges)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import hodec
from hodec.compiler import symbolic

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.hode"))


def _methods(code: str) -> dict:
    cls = next(n for n in ast.parse(code).body if isinstance(n, ast.ClassDef))
    return {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}


def _source_lines(code: str, method) -> list[str]:
    return code.splitlines()[method.lineno - 1:method.end_lineno]


@pytest.mark.parametrize("gates", [False, True])
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_generated_methods_have_no_unused_locals(spec, gates):
    code = hodec.compile_source(spec.read_text(), spec.name, gates=gates)
    for name, method in _methods(code).items():
        stored = {n.id for n in ast.walk(method) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        loaded = {n.id for n in ast.walk(method) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        assert stored - {"_"} <= loaded, (spec.name, name, sorted(stored - loaded))  # `_`: unbind's discards


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_flux_state_and_observable_is_named_in_a_comment(spec):
    """Each column computed by forward, initial_state and observables is labelled: a comment `# <name>: ...`
    before the fused line that computes it, or a trailing `# <name>` on its straight-line column."""
    code = hodec.compile_source(spec.read_text(), spec.name)
    sm = symbolic(spec.read_text(), spec.name)
    methods = _methods(code)
    wanted = {"forward": [f.name for f in sm.fluxes if f.kind != "slot"],
              "initial_state": [s.name for s in sm.model.states],
              "observables": [o.name for o in sm.model.observables]}
    for method, names in wanted.items():
        comments = [line.split("#", 1)[1].strip() for line in _source_lines(code, methods[method]) if "#" in line]
        labels = {c.split(":", 1)[0] for c in comments}
        missing = [n for n in names if n not in labels]
        assert not missing, (spec.name, method, missing)


def test_uva_padova_fused_lines_show_their_formulas():
    code = hodec.compile_source((ROOT / "specs" / "uva_padova.hode").read_text(), "uva_padova.hode")
    forward = "\n".join(_source_lines(code, _methods(code)["forward"]))
    # a reaction of the gut: the fused product line that computes it is preceded by its name and its formula
    assert "# der_qsto1.0: -kmax*qsto1" in forward
    assert "# der_qgut.1: -kabs*qgut" in forward
    initial = "\n".join(_source_lines(code, _methods(code)["initial_state"]))
    assert "# Gp: Gpb" in initial and "# qsto1: 0" in initial


def test_codegen_reaches_neither_the_package_init_nor_the_graph_package():
    script = (
        "import sys, hodec.codegen.module as m\n"
        "from hodec.compiler import symbolic\n"
        "src = 'model M\\nparam k = 1\\nstate x = 1\\nstate y = 0\\nreaction r: x -> y ; k * x\\n'\n"
        "code = m.render_module(symbolic(src), gates=True)\n"
        "assert \"('x', 'y', 'reaction', 'r')\" in code, code\n"
        "print(sorted(n for n in sys.modules if n.startswith('hodec.graph')))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
    module_source = (ROOT / "hodec" / "codegen" / "module.py").read_text()
    assert "from .. import __version__" not in module_source and "import graph" not in module_source
    assert "from ..graph" not in module_source
