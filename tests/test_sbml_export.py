"""Issue 17: `hodec export SPEC --sbml OUT.xml`. Reference: `hodec import` of the written SBML (an independent
reader: libsbml's parser, the importer's own MathML printer) compiled again; its vector field at random states and
params must equal the original's, its simulations too."""
from __future__ import annotations

from pathlib import Path

import libsbml
import pytest
import torch

import hodec
from hodec.cli import main
from hodec.compiler import compile_text
from hodec.interop.sbml import import_sbml

SPECS = Path(__file__).resolve().parent.parent / "specs"
EXPORTABLE = ["double_pendulum", "lorenz", "lotka_volterra", "michaelis_menten", "pk_oral"]
REFUSED = {"bergman": "input 'meal'", "double_pendulum_neural": "neural slot 'U'", "lorenz_blackbox": "neural slot",
           "lotka_volterra_blackbox": "neural slot", "lotka_volterra_graybox": "neural slot 'U'",
           "pk_two_compartment": "input 'infusion'", "sir": "neural slot 'correction'", "uva_padova": "input 'meal'"}
# Every construct the exporter maps: a concentration in a param-sized and in a let-sized compartment, a der term
# on a state that reactions change and on a concentration that none changes, a reversible reaction, functions
# reading params and calling later ones, the functions .hode defines beyond MathML's (sigmoid, softplus, hill,
# log10, sqrt, root), if, `when` events assigning params (one true at the start, where it does not fire).
FEATURES = """model Features
param k = 0.7
param K = 2
param V = 3
param W0 = 1.5
param g = 0.4
param thr = 1.8
function twice(x, c) = 2 * sat(x) * c
function sat(x) = x / (K + x)
let W = 2 * W0
state A = 2 in V
state B = 0.5 in W
state C = 1
state D = A + C
state E = 1.5 in V
reaction r1: A <-> 2 B ; k * A - g * B^2
reaction r2: B -> C ; twice(B, k) + hill(B, K, 2)
der C = sigmoid(A) - softplus(C - 3) + log10(1 + B)
der B = 0.1 * sqrt(A) - root(3, C) * 0.01
der D = -g * D + if(A > 1, 0.1, log(2 + C)) + t / 100
der E = -k * E + 0.05 * D
when C > thr: D += 1, g = g / 2
when A > 1.5: k = 2 * k
at t = 0.5, 1.5: C -= 0.2
observe total = A * V + B * W + C
"""


def _roundtrip(tmp_path, spec: Path):
    out = tmp_path / (spec.stem + ".xml")
    assert main(["export", str(spec), "--sbml", str(out)]) == 0
    doc = libsbml.readSBMLFromFile(str(out))
    doc.checkConsistency()  # libsbml's validator: SBML's rules (a function reads only its arguments, ...)
    errors = [doc.getError(i) for i in range(doc.getNumErrors())]
    assert [e.getMessage() for e in errors if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR] == []
    original = hodec.compile(spec)
    imported = compile_text(import_sbml(out).text, spec.stem + "_imported.hode")
    return original.model_class()().double(), imported.model_class()().double()


def _compare_forward(a, b, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(5):
        values = {n: float(v) * (0.5 + float(torch.rand((), generator=gen, dtype=torch.float64)))
                  for n, v in a.params().items() if n in b.param_names}
        a.set_params(values)
        b.set_params(values)
        y = 0.1 + 2 * torch.rand(len(a.state_names), generator=gen, dtype=torch.float64)
        order = [a.state_names.index(n) for n in b.state_names]
        t = torch.tensor(0.7, dtype=torch.float64)
        with torch.no_grad():
            fa, fb = a(t, y), b(t, y[order])
        torch.testing.assert_close(fb, fa[order], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", EXPORTABLE)
def test_import_of_export_has_the_same_vector_field(tmp_path, name):
    a, b = _roundtrip(tmp_path, SPECS / f"{name}.hode")
    assert sorted(a.state_names) == sorted(b.state_names)
    _compare_forward(a, b)


def _simulate_both(a, b, t_end: float):
    # no output at an event time: there `at t = T` reports the value after the event, the imported `when t >= T`
    # the value before it (both then continue from the value after)
    ts = torch.linspace(0.0, t_end, 37, dtype=torch.float64)
    with torch.no_grad():
        ya = a.simulate(ts, rtol=1e-10, atol=1e-12)
        yb = b.simulate(ts, rtol=1e-10, atol=1e-12)
    order = [a.state_names.index(n) for n in b.state_names]
    torch.testing.assert_close(yb, ya[:, order], rtol=1e-6, atol=1e-8)
    return ya


def test_pk_oral_doses_survive_the_round_trip(tmp_path):
    a, b = _roundtrip(tmp_path, SPECS / "pk_oral.hode")
    ya = _simulate_both(a, b, 60.0)
    assert float(ya[0, a.state_names.index("depot")]) == pytest.approx(100.0)  # the dose at t = 0 fired


def test_compartments_functions_events_round_trip(tmp_path):
    spec = tmp_path / "features.hode"
    spec.write_text(FEATURES)
    a, b = _roundtrip(tmp_path, spec)
    _compare_forward(a, b)
    _simulate_both(a, b, 4.0)


@pytest.mark.parametrize("spec, t_end", [("pk_oral", 60.0), ("features", 4.0)])
def test_libroadrunner_simulates_the_export_as_hodec_simulates_the_spec(tmp_path, spec, t_end):
    """An independent simulator (libroadrunner, CVODE) of the written SBML against hodec on the original spec."""
    roadrunner = pytest.importorskip("roadrunner")
    path = SPECS / f"{spec}.hode" if spec != "features" else tmp_path / "features.hode"
    if spec == "features":
        path.write_text(FEATURES)
    out = tmp_path / "out.xml"
    assert main(["export", str(path), "--sbml", str(out)]) == 0
    rr = roadrunner.RoadRunner(str(out))
    rr.integrator.relative_tolerance, rr.integrator.absolute_tolerance = 1e-10, 1e-12
    compilation = hodec.compile(path)
    model = compilation.model_class()().double()
    species = [s.name for s in compilation.model.states]  # not the params events assign (states of the module)
    rr.timeCourseSelections = ["time", *(f"[{name}]" for name in species)]
    reference = torch.tensor(rr.simulate(0.0, t_end, 37))
    with torch.no_grad():
        ys = model.simulate(reference[:, 0], rtol=1e-10, atol=1e-12)
    columns = [model.state_names.index(name) for name in species]
    torch.testing.assert_close(ys[:, columns], reference[:, 1:], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_what_sbml_cannot_hold_is_refused(tmp_path, capsys, name):
    out = tmp_path / "out.xml"
    assert main(["export", str(SPECS / f"{name}.hode"), "--sbml", str(out)]) == 1
    err = capsys.readouterr().err
    assert REFUSED[name] in err and f"{name}.hode:" in err and "Traceback" not in err
    assert not out.exists()


def test_a_spec_with_errors_exits_1_and_writes_nothing(tmp_path, capsys):
    spec = tmp_path / "bad.hode"
    spec.write_text("model Bad\nstate x = 1\nder x = -k * x\n")
    out = tmp_path / "bad.xml"
    assert main(["export", str(spec), "--sbml", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad.hode:3:" in err and "'k'" in err and "Traceback" not in err
    assert not out.exists()
