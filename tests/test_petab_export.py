"""Issue 17: `hodec export SPEC --petab DIR`. Reference: the problem read back by `hodec petab evaluate`'s reader
(hodec.interop.petab: the SBML through `hodec import`, networks through the PEtab-SciML reader, placed by the
hybridization and mapping tables) compiled again; its vector field, observables and noise scales at random states
and params must equal the original spec's (its slots holding the weights written); the tables against
hand-written rows of the specs' declarations."""
from __future__ import annotations

import math
import re
from pathlib import Path

import libsbml
import pytest
import torch

import hodec
from hodec.cli import main
from hodec.compiler import compile_text
from hodec.interop.petab.evaluate import evaluate_problem
from hodec.interop.petab.mapping import SlotNet, build
from hodec.interop.petab.problem import read_problem
from hodec.interop.petab.write import fit_files
from hodec.interop.petab_export import write_petab
from test_sbml_export import FEATURES

SPECS = Path(__file__).resolve().parent.parent / "specs"
REFUSED = {"bergman": "input 'meal'", "pk_two_compartment": "input 'infusion'", "uva_padova": "input 'meal'"}
# Every way a slot output reaches a state's rate: a concentration that reactions change (a reaction of the output
# times the size), a state with der terms and no reaction (its rate rule), a state only the slot changes; an
# activation with arguments (the tanh GELU) and `positive`; time as an argument (PEtab's `time`); all four noise
# models, one scale reading its own observable and a let of params.
HYBRID = """model Hybrid
param k = 0.7 in (0.1, 3)
param V = 2 positive
param g = -0.4
param s0 = 0.2 fixed
let scale = s0 * V
state A = 1.5 in V
state B = 0.5
state C = 0.3
state D = 1
reaction r1: A -> B ; k * A * V
der C = -g * C + 0.1 * A
neural U(A, B, C) -> A, C, D hidden 6 5 activation gelu_tanh positive
neural W(D, t) -> B hidden 3 activation softsign
observe a = A ~ normal(scale + 0.1 * a)
observe b = B ~ laplace(s0)
observe c = C + D ~ lognormal(0.3)
observe d = D ~ loglaplace(exp(-V) / 2)
observe e = A * B
"""
# the SBML export's spec of every construct (compartments sized by a param and by a let, functions, events): a
# param-sized compartment is a PEtab parameter's initial assignment
WRITTEN = {"hybrid": HYBRID, "features": FEATURES}


def _spec(tmp_path, name: str) -> Path:
    if name in WRITTEN:
        path = tmp_path / f"{name}.hode"
        path.write_text(WRITTEN[name])
        return path
    return SPECS / f"{name}.hode"


def _original(path: Path, seed: int = 3):
    """The spec's model with slot weights drawn larger than the initialisation's, so that the networks matter."""
    model = hodec.compile(path).model_class()().double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for slot in model.slot_modules:
            for tensor in slot.parameters():
                tensor.copy_(torch.randn(tensor.shape, generator=gen, dtype=torch.float64))
    return model


def _read_back(out: Path):
    hybrid = build(read_problem(out / "problem.yaml"))
    slots = {name: SlotNet(hybrid.nets[net], index, element)
             for name, (net, index, element) in hybrid.slots.items()}
    return (hybrid.model_class(slots=slots) if slots else hybrid.model_class()).double(), hybrid


def _compare(a, b, seed=0):
    gen = torch.Generator().manual_seed(seed)
    order = [a.state_names.index(n) for n in b.state_names]
    columns = [a.observable_names.index(n) for n in b.observable_names]
    assert sorted(b.observable_names) == sorted(a.observable_names)
    # an observable without a noise model comes back normal(1), PEtab's noise model asked for
    noisy = [row for row in b.noise_table if row[0] in {name for name, _ in a.noise_table}]
    assert sorted(noisy) == sorted(a.noise_table)
    rows = [list(b.noise_table).index(row) for row in a.noise_table]
    for _ in range(5):
        values = {n: float(v) * (0.5 + float(torch.rand((), generator=gen, dtype=torch.float64)))
                  for n, v in a.params().items() if n in b.param_names}
        a.set_params(values)
        b.set_params(values)
        y = 0.1 + 2 * torch.rand(4, len(a.state_names), generator=gen, dtype=torch.float64)
        t = torch.tensor(0.7, dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(b(t, y[:, order]), a(t, y)[:, order], rtol=1e-12, atol=1e-14)
            obs_a, obs_b = a.observables(t, y), b.observables(t, y[:, order])
            torch.testing.assert_close(obs_b, obs_a[:, columns], rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(b.noise_scale(t, y[:, order], obs_b)[:, rows], a.noise_scale(t, y, obs_a),
                                       rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", [*sorted(p.stem for p in SPECS.glob("*.hode")), *WRITTEN])
def test_every_spec_reads_back_with_the_same_vector_field_or_is_refused(tmp_path, capsys, name):
    spec, out = _spec(tmp_path, name), tmp_path / "problem"
    if name in REFUSED:
        assert main(["export", str(spec), "--petab", str(out)]) == 1
        err = capsys.readouterr().err
        assert re.search(rf"{name}\.hode:\d+:\d+: error: cannot export {REFUSED[name]} to PEtab", err), err
        assert "Traceback" not in err
        assert list(tmp_path.iterdir()) == []  # no folder, no temporary left behind
        return
    original = _original(spec)
    write_petab(hodec.compile(spec), out, model=original)
    doc = libsbml.readSBMLFromFile(str(out / "model.xml"))
    doc.checkConsistency()  # libsbml's validator: SBML's own rules
    assert [doc.getError(i).getMessage() for i in range(doc.getNumErrors())
            if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR] == []
    imported, hybrid = _read_back(out)
    assert sorted(imported.state_names) == sorted(original.state_names)
    assert len(hybrid.nets) == len(original.slot_modules)
    _compare(original, imported)


def _log_density(distribution: str, y: float, mu: float, sigma: float) -> float:
    """The README's table of noise models, written out."""
    if distribution in ("lognormal", "loglaplace"):
        return _log_density(distribution[3:], math.log(y), math.log(mu), sigma) - math.log(y)
    if distribution == "normal":
        return -0.5 * math.log(2 * math.pi) - math.log(sigma) - (y - mu) ** 2 / (2 * sigma ** 2)
    return -math.log(2 * sigma) - abs(y - mu) / sigma


def test_petab_evaluate_of_the_export_with_data_gives_the_noise_models_likelihood(tmp_path):
    """The hybrid spec exported with a DATA.csv of two ids, one starting later, a value missing: `hodec petab
    evaluate`'s llh is the sum of the spec's noise densities (written out by hand, with its sigma formulas) around
    the original model's simulation of each id from its first time."""
    spec, out = _spec(tmp_path, "hybrid"), tmp_path / "p"
    original = _original(spec)
    p = original.params()
    sigmas = {"a": lambda mu: p["s0"] * p["V"] + 0.1 * mu, "b": lambda mu: p["s0"], "c": lambda mu: 0.3,
              "d": lambda mu: math.exp(-p["V"]) / 2, "e": lambda mu: 1.0}
    noise = {"a": "normal", "b": "laplace", "c": "lognormal", "d": "loglaplace", "e": "normal"}
    lines, reference = ["id,t," + ",".join(original.observable_names)], 0.0
    for label, times in (("p1", [0.0, 0.25, 0.5, 1.0]), ("p2", [0.5, 0.75, 1.0])):
        ts = torch.tensor(times, dtype=torch.float64)
        with torch.no_grad():
            obs = original.observables(ts, original.simulate(ts, rtol=1e-12, atol=1e-14))
        for k, t in enumerate(times):
            cells = []
            for j, name in enumerate(original.observable_names):
                mu, missing = float(obs[k, j]), (label, k, name) == ("p2", 1, "e")
                cells.append("" if missing else repr(1.2 * mu + 0.05))
                reference += 0.0 if missing else _log_density(noise[name], 1.2 * mu + 0.05, mu, sigmas[name](mu))
            lines.append(f"{label},{t!r}," + ",".join(cells))
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    write_petab(hodec.compile(spec), out, model=original, data=tmp_path / "data.csv")
    assert (out / "experiments.tsv").read_text().splitlines() == [
        "experimentId\ttime\tconditionId", "experiment_p1\t0.0\t", "experiment_p2\t0.5\t"]
    assert len((out / "measurements.tsv").read_text().splitlines()) == 1 + 7 * 5 - 1
    assert evaluate_problem(read_problem(out / "problem.yaml")).llh == pytest.approx(reference, rel=1e-8)


DATA_REFUSED = {"id,t,x\n1,0,1\n1,1,2\n": "column 'x' is a state",
                "id,t,prey,amt,cmt\n1,0,,5,x\n1,1,2,,\n": "trajectory 1 has doses",
                "id,t,prey,d\n1,0,1,1.5\n1,1,2,1.5\n": "trajectory 1 has per-trajectory param values"}


@pytest.mark.parametrize("text", sorted(DATA_REFUSED))
def test_data_petab_cannot_say_the_same_way_is_refused(tmp_path, capsys, text):
    spec = tmp_path / "lv.hode"
    spec.write_text((SPECS / "lotka_volterra.hode").read_text().replace("d = 1.8 positive", "d = 1.8 fixed"))
    (tmp_path / "data.csv").write_text(text)
    assert main(["export", str(spec), "--petab", str(tmp_path / "out"), "--data", str(tmp_path / "data.csv")]) == 1
    err = capsys.readouterr().err
    assert DATA_REFUSED[text] in err and "data.csv" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_tables_carry_every_param_kind_and_the_noise_models(tmp_path):
    out = tmp_path / "hybrid"
    assert main(["export", str(_spec(tmp_path, "hybrid")), "--petab", str(out)]) == 0
    assert (out / "parameters.tsv").read_text().splitlines() == [
        "parameterId\tlowerBound\tupperBound\tnominalValue\testimate",
        "k\t0.1\t3.0\t0.7\ttrue",
        "V\t0.0\tinf\t2.0\ttrue",
        "g\t-inf\tinf\t-0.4\ttrue",
        "s0\t\t\t0.2\tfalse",
        "U_parameters\t-inf\tinf\tarray\ttrue",
        "W_parameters\t-inf\tinf\tarray\ttrue"]
    assert (out / "observables.tsv").read_text().splitlines() == [
        "observableId\tobservableFormula\tnoiseFormula\tnoiseDistribution",
        "a\tobservable_a\tscale + 0.1 * a\tnormal",
        "b\tobservable_b\ts0\tlaplace",
        "c\tobservable_c\t0.3\tlog-normal",
        "d\tobservable_d\texp(-V) / 2\tlog-laplace",
        "e\tobservable_e\t1\tnormal"]
    assert (out / "hybridization.tsv").read_text().splitlines() == [
        "targetId\ttargetValue", "U_input0\tA", "U_input1\tB", "U_input2\tC", "U_A\tU_output0", "U_C\tU_output1",
        "U_D\tU_output2", "W_input0\tD", "W_input1\ttime", "W_B\tW_output0"]
    assert sorted(p.name for p in out.iterdir()) == [
        "U_network.yaml", "U_parameters.hdf5", "W_network.yaml", "W_parameters.hdf5", "hybridization.tsv",
        "mapping.tsv", "measurements.tsv", "model.xml", "observables.tsv", "parameters.tsv", "problem.yaml"]


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_the_parameter_table_lists_only_sbml_parameters(tmp_path, name):
    """PEtab's rule (petablint's check): a parameterId that is a model id is a <parameter> no rule sets; not a
    compartment (a param sizing one), not a rule's target."""
    out = tmp_path / "p"
    write_petab(hodec.compile(_spec(tmp_path, name)), out)
    model = libsbml.readSBMLFromFile(str(out / "model.xml")).getModel()
    ruled = {model.getRule(i).getVariable() for i in range(model.getNumRules())}
    parameters = {model.getParameter(i).getId() for i in range(model.getNumParameters())} - ruled
    rows = [line.split("\t") for line in (out / "parameters.tsv").read_text().splitlines()[1:]]
    listed = {row[0] for row in rows if row[3] != "array"}
    assert listed == {p.name for p in hodec.compile(_spec(tmp_path, name)).model.params}
    assert listed <= parameters


@pytest.mark.parametrize("name", ["lotka_volterra", "michaelis_menten", "pk_oral", "double_pendulum", "lorenz"])
def test_petab_write_reads_the_params_kinds_back(tmp_path, name):
    """`hodec petab write` (PEtab → hodec fit's spec) of the export declares every param as the spec does."""
    spec = SPECS / f"{name}.hode"
    write_petab(hodec.compile(spec), tmp_path / "p")
    written = compile_text(fit_files(read_problem(tmp_path / "p" / "problem.yaml")).spec, "written.hode").model
    declared = {p.name: (p.kind, p.lower, p.upper) for p in hodec.compile(spec).model.params}
    assert {p.name: (p.kind, p.lower, p.upper) for p in written.params if p.name in declared} == declared


def test_the_cli_writes_the_same_folder_twice(tmp_path):
    """Deterministic: the weights of a spec's slots are its initialisation under a fixed seed."""
    spec = SPECS / "sir.hode"
    for out in ("one", "two"):
        assert main(["export", str(spec), "--petab", str(tmp_path / out)]) == 0
    for path in (tmp_path / "one").iterdir():
        assert path.read_bytes() == (tmp_path / "two" / path.name).read_bytes(), path.name


BAD = """model Bad
param k = 1 positive
state x = 1
der x = -k * x
neural f(x) hidden 4
observe y = x ~ normal(sigmoid(k))
"""


def test_what_petab_cannot_hold_is_refused_located(tmp_path, capsys):
    spec = tmp_path / "bad.hode"
    spec.write_text(BAD)
    out = tmp_path / "out"
    assert main(["export", str(spec), "--petab", str(out)]) == 1
    err = capsys.readouterr().err
    assert "bad.hode:5:1: error: cannot export neural slot 'f' to PEtab-SciML" in err
    assert "bad.hode:6:24: error: the noise scale of 'y' uses 'sigmoid'" in err
    assert "Traceback" not in err and sorted(p.name for p in tmp_path.iterdir()) == ["bad.hode"]


RESERVED = """model Reserved
param inf = 1 positive
state time = 1
der time = -inf * time
"""
# a slot named as the problem file would have written its network where problem.yaml goes
PROBLEM_SLOT = """model ProblemSlot
state x = 1
der x = -x
neural problem(x) -> x hidden 3
"""


def test_names_petab_reads_as_its_own_are_refused(tmp_path, capsys):
    spec = tmp_path / "reserved.hode"
    spec.write_text(RESERVED)
    assert main(["export", str(spec), "--petab", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "reserved.hode:2:1: error: cannot export 'inf' to PEtab" in err
    assert "reserved.hode:3:1: error: cannot export 'time' to PEtab" in err
    assert not (tmp_path / "out").exists()


def test_a_slot_named_problem_keeps_the_problem_file(tmp_path):
    spec = tmp_path / "slot.hode"
    spec.write_text(PROBLEM_SLOT)
    original = _original(spec)
    write_petab(hodec.compile(spec), tmp_path / "p", model=original)
    _compare(original, _read_back(tmp_path / "p")[0])


def test_a_folder_that_holds_files_is_not_replaced(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["export", str(SPECS / "lorenz.hode"), "--petab", str(out)]) == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    out_empty = tmp_path / "empty"
    out_empty.mkdir()
    assert main(["export", str(SPECS / "lorenz.hode"), "--petab", str(out_empty)]) == 0
    assert (out_empty / "problem.yaml").is_file()


@pytest.mark.parametrize("name", ["double_pendulum", "lorenz", "lotka_volterra", "michaelis_menten", "pk_oral",
                                  "features"])
def test_petab_linter_accepts_the_export(tmp_path, name):
    """petab's own v2 linter (not a hodec dependency: skipped where it is not installed) on the specs without
    slots (it does not know PEtab-SciML's array parameters)."""
    petab = pytest.importorskip("petab.v2")
    write_petab(hodec.compile(_spec(tmp_path, name)), tmp_path / "p")
    problem = petab.Problem.from_yaml(tmp_path / "p" / "problem.yaml")
    assert not problem.validate().has_errors()


def test_petab_evaluate_reads_an_export_without_measurements(tmp_path, capsys):
    """The export's measurement table is empty: the llh is 0 and every gradient 0 (was an internal error: the
    llh had nothing to differentiate)."""
    assert main(["export", str(SPECS / "sir.hode"), "--petab", str(tmp_path / "p")]) == 0
    (tmp_path / "out").mkdir()
    assert main(["petab", "evaluate", str(tmp_path / "p" / "problem.yaml"), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "result.yaml").read_text().split() == ["llh:", "0.0"]
    assert (tmp_path / "out" / "grad_mech.tsv").read_text().splitlines() == [
        "parameterId\tvalue", "beta\t0.0", "gamma\t0.0", "I0\t0.0"]


def test_the_cli_writes_sbml_and_petab_together_and_asks_for_one(tmp_path, capsys):
    spec = str(SPECS / "lorenz.hode")
    assert main(["export", spec]) == 1
    assert "give --sbml OUT.xml, --petab DIR or both" in capsys.readouterr().err
    assert main(["export", spec, "--sbml", str(tmp_path / "m.xml"), "--petab", str(tmp_path / "p")]) == 0
    assert (tmp_path / "m.xml").is_file() and (tmp_path / "p" / "problem.yaml").is_file()
    assert main(["export", str(SPECS / "sir.hode"), "--sbml", str(tmp_path / "s.xml"), "--petab",
                 str(tmp_path / "s")]) == 1  # SBML has no slots: nothing of either is written
    assert "neural slot 'correction'" in capsys.readouterr().err
    assert not (tmp_path / "s.xml").exists() and not (tmp_path / "s").exists()
