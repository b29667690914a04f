"""Issue 17: `hodec import` (SBML → .hode). References: the SBML Test Suite's own expected results (independent
simulators' values, ../shared/data/sbml_test_suite), MathML semantics written out by hand, and the refusals that
name the SBML element (never a silently different model)."""
from __future__ import annotations

import math

import libsbml
import pytest
import torch

from benchmarks.conformance import SBML_SUITE, case_model, run_case
from hodec.cli import main
from hodec.compiler import compile_text
from hodec.errors import HodecError
from hodec.interop.algebraic import solve_linear
from hodec.interop.mathml import Printer, Unsupported
from hodec.interop.sbml import import_sbml

needs_suite = pytest.mark.skipif(not SBML_SUITE.is_dir(), reason="the SBML Test Suite is not in ../shared/data")


# ---------------------------------------------------------------- suite cases against their expected results
@needs_suite
@pytest.mark.parametrize("case", [
    "00001",  # one reaction, species in amounts in a compartment
    "00010",  # reversible pair of reactions, three species
    "00026",  # an event (trigger S1 < 0.1)
    "00029",  # assignment rules only (no state)
    "00031",  # a rate rule
    "00036",  # initial assignments
    "00051",  # a compartment whose size follows a rate rule (species as amounts)
    "00054",  # two compartments of different sizes
    "00060",  # hasOnlySubstanceUnits species
    "00078",  # function definitions with assignment rules
    "00100",  # a compartment of 0 dimensions
    "00975",  # a species conversionFactor
    "01124",  # a hierarchical model (comp package), flattened
    "01248",  # rateOf
    "01460",  # rateOf a kinetic law's local parameter (0)
    "00039",  # an algebraic rule, linear in the variable it determines
    "00532",  # an algebraic rule determining a species
    "00928",  # a trigger true from the start with initialValue="false" fires at 0 (an event without id)
    "00929",  # a trigger true from the start (time >= 0) never fires
    "00968",  # level 2 stoichiometryMath on a species reference with an id
    "01234",  # an initial assignment without math has no effect
    "01236",  # a rate rule without math has no effect
    "01237",  # an event assignment without math has no effect
    "01238",  # an event without trigger never fires
    "01506",  # an event resizing a compartment and assigning a rate-ruled concentration there
    "01497",  # a function definition returning a condition, called with conditions (inlined)
    "00930",  # two events with one trigger and priorities: the lower priority's assignments win
])
def test_suite_case_matches_its_expected_results(case):
    result = run_case(SBML_SUITE / case, timeout=120)
    assert result.status == "pass", result.reason


@needs_suite
@pytest.mark.parametrize("case, element", [
    ("00184", "<algebraicRule>: an algebraic rule that is not linear"),
    ("00071", "<event id=\"event1\">: events with a <delay>"),
    ("00870", "fast reactions"),
    ("01212", "<priority> is supported only as a number"),
    ("00937", "delay (the value of an expression at an earlier time)"),
])
def test_refusals_name_the_sbml_element(case, element, tmp_path, capsys):
    out = tmp_path / "m.hode"
    assert main(["import", str(case_model(SBML_SUITE / case)), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert element in err and "cannot import" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


@needs_suite
def test_imported_spec_passes_hodec_check(tmp_path, capsys):
    out = tmp_path / "m.hode"
    assert main(["import", str(case_model(SBML_SUITE / "00078")), "-o", str(out)]) == 0
    assert main(["check", str(out)]) == 0
    assert "function" in out.read_text()


# ---------------------------------------------------------------- bad input
def test_malformed_xml_is_a_located_error_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.xml"
    bad.write_text('<?xml version="1.0"?>\n<sbml xmlns="http://www.sbml.org/sbml/level3/version2/core" level="3"'
                   ' version="2">\n  <model id="m">\n    <listOfParameters>\n  </model>\n</sbml>\n')
    assert main(["import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:" in err and "error" in err and "Traceback" not in err
    assert err.split(":")[1].strip().isdigit()  # file:line:col
    assert not (tmp_path / "bad.hode").exists()


def test_missing_file_and_not_sbml(tmp_path, capsys):
    assert main(["import", str(tmp_path / "none.xml")]) == 1
    assert "no such file" in capsys.readouterr().err
    other = tmp_path / "other.xml"
    other.write_text("<html><body/></html>\n")
    assert main(["import", str(other)]) == 1
    assert "Traceback" not in capsys.readouterr().err


# ---------------------------------------------------------------- models built here: names, math, semantics
def _document(build) -> str:
    doc = libsbml.SBMLDocument(3, 2)
    m = doc.createModel()
    m.setId("m")
    c = m.createCompartment()
    c.setId("cell"), c.setSize(2.0), c.setConstant(True)
    build(m)
    return libsbml.writeSBMLToString(doc)


def _param(m, ident, value, constant=True):
    p = m.createParameter()
    p.setId(ident), p.setValue(value), p.setConstant(constant)
    return p


def _species(m, ident, concentration, amount_only=False):
    s = m.createSpecies()
    s.setId(ident), s.setCompartment("cell"), s.setInitialConcentration(concentration)
    s.setHasOnlySubstanceUnits(amount_only), s.setBoundaryCondition(False), s.setConstant(False)
    return s


def _import(tmp_path, build):
    path = tmp_path / "model.xml"
    path.write_text(_document(build))
    return import_sbml(path)


def test_reserved_ids_are_renamed_with_the_id_in_a_comment(tmp_path):
    def build(m):
        _param(m, "t", 0.5)
        _param(m, "exp", 2.0)
        _species(m, "x", 1.0)
        r = m.createRateRule()
        r.setVariable("x"), r.setMath(libsbml.parseL3Formula("t * exp * x"))

    imported = _import(tmp_path, build)
    assert imported.names["t"] == "t_" and imported.names["exp"] == "exp_"
    assert "param t_ = 0.5 fixed  # SBML id 't'" in imported.text
    assert "der x = t_ * exp_ * x" in imported.text
    compile_text(imported.text, "m.hode")


def test_reaction_in_a_compartment_follows_sbml_semantics(tmp_path):
    """A -> B at rate k*A*cell (amount per time) in a compartment of size 2: d[A]/dt = -k [A], the concentration
    decays at k whatever the size; B's amount is the size times its concentration."""
    def build(m):
        _param(m, "k", 0.7)
        _species(m, "A", 3.0)
        _species(m, "B", 0.0)
        r = m.createReaction()
        r.setId("conv"), r.setReversible(False)
        ref = r.createReactant()
        ref.setSpecies("A"), ref.setStoichiometry(1), ref.setConstant(True)
        ref = r.createProduct()
        ref.setSpecies("B"), ref.setStoichiometry(1), ref.setConstant(True)
        r.createKineticLaw().setMath(libsbml.parseL3Formula("k * A * cell"))

    imported = _import(tmp_path, build)
    text = imported.text + f"observe nB = {imported.value('B', 'amount')}\n"
    model = compile_text(text, "m.hode").model_class()().double()
    ts = torch.tensor([0.0, 1.0, 2.5], dtype=torch.float64)
    with torch.no_grad():
        ys = model.simulate(ts, rtol=1e-11, atol=1e-13)
        amounts = model.observe(ys, ts)[:, 0]
    want_a = [3.0 * math.exp(-0.7 * t) for t in ts.tolist()]
    assert ys[:, 0].tolist() == pytest.approx(want_a, rel=1e-8)
    assert amounts.tolist() == pytest.approx([2.0 * (3.0 - a) for a in want_a], rel=1e-8, abs=1e-12)


def _print(xml_body: str, condition=False) -> str:
    node = libsbml.readMathMLFromString(f'<math xmlns="http://www.w3.org/1998/Math/MathML">{xml_body}</math>')
    printer = Printer(lambda n: (n, 9), {})
    return printer.condition_text(node) if condition else printer.number_text(node)


@pytest.mark.parametrize("mathml, hode", [
    ("<apply><log/><ci>x</ci></apply>", "log10(x)"),  # MathML's log without logbase is base 10
    ("<apply><ln/><ci>x</ci></apply>", "log(x)"),
    ("<apply><log/><logbase><cn>2</cn></logbase><ci>x</ci></apply>", "log(x) / log(2)"),
    ("<apply><root/><ci>x</ci></apply>", "sqrt(x)"),
    ("<apply><root/><degree><cn>3</cn></degree><ci>x</ci></apply>", "root(3, x)"),
    ("<apply><minus/><ci>x</ci><apply><minus/><ci>y</ci><cn>1</cn></apply></apply>", "x - (y - 1)"),
    ("<apply><divide/><ci>x</ci><apply><times/><ci>y</ci><cn>2</cn></apply></apply>", "x / (y * 2)"),
    ("<apply><power/><apply><minus/><ci>x</ci></apply><cn>2</cn></apply>", "(-x)^2"),
    ("<apply><minus/><apply><power/><ci>x</ci><cn>2</cn></apply></apply>", "-x^2"),
    ("<apply><plus/><ci>x</ci><ci>y</ci><cn>1</cn></apply>", "x + y + 1"),
    ("<apply><times/></apply>", "1"),
    ("<csymbol encoding=\"text\" definitionURL=\"http://www.sbml.org/sbml/symbols/time\">time</csymbol>", "t"),
    ("<piecewise><piece><cn>1</cn><apply><lt/><ci>x</ci><cn>2</cn></apply></piece><otherwise><cn>3</cn>"
     "</otherwise></piecewise>", "piecewise(1, x < 2, 3)"),
    ("<apply><times/><ci>x</ci><apply><gt/><ci>y</ci><cn>0</cn></apply></apply>", "x * piecewise(1, y > 0, 0)"),
])
def test_mathml_prints_as_written(mathml, hode):
    assert _print(mathml) == hode


@pytest.mark.parametrize("mathml, hode", [
    ("<apply><lt/><ci>x</ci><ci>y</ci><cn>3</cn></apply>", "x < y and y < 3"),  # n-ary comparisons chain
    ("<apply><or/><apply><and/><apply><gt/><ci>x</ci><cn>1</cn></apply><apply><gt/><ci>y</ci><cn>1</cn></apply>"
     "</apply><apply><not/><apply><lt/><ci>x</ci><cn>0</cn></apply></apply></apply>",
     "x > 1 and y > 1 or not x < 0"),
    ("<apply><and/><apply><or/><apply><gt/><ci>x</ci><cn>1</cn></apply><apply><gt/><ci>y</ci><cn>1</cn></apply>"
     "</apply><apply><gt/><ci>x</ci><cn>0</cn></apply></apply>", "(x > 1 or y > 1) and x > 0"),
])
def test_conditions_print_with_hode_precedence(mathml, hode):
    assert _print(mathml, condition=True) == hode


@pytest.mark.parametrize("mathml, what", [
    ('<apply><csymbol encoding="text" definitionURL="http://www.sbml.org/sbml/symbols/delay">delay</csymbol>'
     '<ci>x</ci><cn>1</cn></apply>', "delay"),
    ("<infinity/>", "infinities"),
])
def test_unsupported_math_is_refused(mathml, what):
    with pytest.raises(Unsupported, match=what):
        _print(mathml)


def _event(m, ident: str, trigger: str, target: str, value: str, initial_value: bool = True):
    ev = m.createEvent()
    ev.setId(ident), ev.setUseValuesFromTriggerTime(True)
    t = ev.createTrigger()
    t.setMath(libsbml.parseL3Formula(trigger)), t.setInitialValue(initial_value), t.setPersistent(True)
    a = ev.createEventAssignment()
    a.setVariable(target), a.setMath(libsbml.parseL3Formula(value))
    return ev


def test_an_event_at_a_time_and_a_refused_event_delay(tmp_path):
    def build(m, delay=False):
        _species(m, "x", 1.0)
        ev = _event(m, "dose", "time >= 2.5", "x", "x + 1")
        if delay:
            ev.createDelay().setMath(libsbml.parseL3Formula("1"))

    assert "at t = 2.5: x = x + 1  # event 'dose'" in _import(tmp_path, build).text
    with pytest.raises(HodecError, match='<event id="dose">: events with a <delay>'):
        _import(tmp_path, lambda m: build(m, delay=True))


def test_initial_value_false_fires_at_the_start(tmp_path):
    """SBML's trigger initialValue="false": true at t = 0 fires then (an `at t = 0` guarded by the trigger)."""
    def build(m):
        _species(m, "x", 1.0)
        _event(m, "e", "x > 0.5", "x", "x + 10", initial_value=False)

    imported = _import(tmp_path, build)
    model = compile_text(imported.text, "m.hode").model_class()().double()
    with torch.no_grad():
        ys = model.simulate(torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=1e-10, atol=1e-12)
    assert ys[:, 0].tolist() == pytest.approx([11.0, 11.0])


@pytest.mark.parametrize("rule, variable, solution", [
    ("(k3 + 1) * S1 + -1 * T", "S1", "T/(k3 + 1)"),
    ("-1 * S1 + T + add(X0, X1)", "S1", "T + add(X0, X1)"),  # a call not reading the variable stays a call
    ("x * y - 1 + x", "x", "1/(y + 1)"),
])
def test_algebraic_rules_solved_for_their_variable(rule, variable, solution):
    assert solve_linear(rule, variable) == solution


@pytest.mark.parametrize("rule, why", [
    ("x^2 - y", "degree 2"),
    ("exp(x) - 2", "not linear"),
    ("add(x, 1) + x - y", "not linear"),
    ("piecewise(1, x < 2, 3) - y", "a condition"),
])
def test_algebraic_rules_that_need_a_dae_solver_are_refused(rule, why):
    with pytest.raises(Unsupported, match=why):
        solve_linear(rule, "x")


@needs_suite
def test_default_output_is_beside_the_model(tmp_path, capsys):
    model = tmp_path / "case.xml"
    model.write_bytes(case_model(SBML_SUITE / "00001").read_bytes())
    assert main(["import", str(model)]) == 0
    text = (tmp_path / "case.hode").read_text()
    assert "reaction reaction1: S1 -> S2 ; compartment_ * k1 * S1" in text
    assert "param compartment_ = 1 fixed  # SBML id 'compartment'" in text


def test_a_piecewise_of_conditions_is_a_condition():
    text = _print("<piecewise><piece><apply><gt/><ci>x</ci><cn>1</cn></apply><apply><lt/><ci>y</ci><cn>0</cn>"
                  "</apply></piece><otherwise><apply><gt/><ci>y</ci><cn>2</cn></apply></otherwise></piecewise>",
                  condition=True)
    assert text == "((y < 0) and (x > 1) or not (y < 0) and (y > 2))"


def test_events_with_one_trigger_read_the_values_at_the_trigger(tmp_path):
    """SBML computes simultaneous events' assignments from the values at the trigger: y gets x's old value."""
    def build(m):
        _param(m, "x", 3.0, constant=False)
        _param(m, "y", 0.0, constant=False)
        _event(m, "E1", "time > 3.5", "x", "7")
        _event(m, "E2", "time > 3.5", "y", "x")

    imported = _import(tmp_path, build)
    assert "at t = 3.5: x = 7, y = x  # events 'E1', 'E2'" in imported.text
    model = compile_text(imported.text, "m.hode").model_class()().double()
    with torch.no_grad():
        ys = model.simulate(torch.tensor([0.0, 5.0], dtype=torch.float64), rtol=1e-10, atol=1e-12)
    assert ys[-1].tolist() == pytest.approx([7.0, 3.0])


@needs_suite
def test_an_xml_declaration_without_encoding_is_read(tmp_path):
    """XML's default encoding is UTF-8; libsbml calls its absence an error, but the model reads as written."""
    model = tmp_path / "m.xml"
    model.write_text(case_model(SBML_SUITE / "00001").read_text().replace(' encoding="UTF-8"', ""))
    assert "reaction reaction1: S1 -> S2" in import_sbml(model).text
