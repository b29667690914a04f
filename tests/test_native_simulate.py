"""simulate() solving natively (the model and hodec's solver loops compiled to C): against scipy on hand-written
right-hand sides and exact solutions, against the torch solvers, per-sample params, per-member grids, batched
initial states, float32 models; the automatic choice (native only where no gradient, coupling, event, dose or
slot needs the torch solvers), native=True's refusals, HODEC_NATIVE=0, and `hodec simulate` end to end."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import hodec
from hodec import solvers
from hodec.cli import main as cli_main
from hodec.compiler import load_text
from hodec.runtime import Coupling, Doses, native
from hodec.solvers.native import NativeUnavailable, library

from benchmarks.cases import CASES
from benchmarks.peers import hodec_model, reference

pytestmark = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None, reason="no C compiler")

pytestmark = [pytestmark, pytest.mark.usefixtures("no_grad")]
PK = hodec.compile("specs/pk_two_compartment.hode")
MM = hodec.compile("specs/michaelis_menten.hode")
SIR = """model SIRPlain
param beta = 0.3 positive
param gamma = 0.1 positive
state S = 0.99
state I = 0.01
state R = 0
reaction infection: S + I -> 2 I ; beta * S * I
reaction recovery: I -> R ; gamma * I
"""
INFUSION = ([0.0, 1.0, 6.0, 7.5], [100.0, 0.0, 40.0, 0.0], "previous")  # 100 mg/h for 1 h, 40 mg/h for 1.5 h


@pytest.fixture
def no_grad():
    """Every test runs without gradients (native solves have none) unless it enables them itself."""
    with torch.no_grad():
        yield


@pytest.fixture
def paths(monkeypatch):
    """The solver paths simulate() takes, in call order: 'native', 'sensitivities' (native, with gradients) or
    'torch'."""
    seen = []
    native_solve, torch_solve, sensitive = native.solve_native, solvers.solve, native.solve_sensitivities

    def on_native(*args, **kwargs):
        seen.append("native")
        return native_solve(*args, **kwargs)

    def on_sensitivities(*args, **kwargs):
        seen.append("sensitivities")
        return sensitive(*args, **kwargs)

    def on_torch(*args, **kwargs):
        seen.append("torch")
        return torch_solve(*args, **kwargs)

    monkeypatch.setattr(native, "solve_native", on_native)
    monkeypatch.setattr(native, "solve_sensitivities", on_sensitivities)
    monkeypatch.setattr(solvers, "solve", on_torch)
    return seen


def relative_error(ys, ref) -> float:
    """max over components of max_t |y - ref| / max_t |ref| (each component against its own peak)."""
    ys, ref = np.asarray(ys), np.asarray(ref)
    scale = np.abs(ref).max(axis=0)
    return float((np.abs(ys - ref).max(axis=0) / np.where(scale > 0, scale, 1.0)).max())


# ---------------------------------------------------------------- PK: exact solution of a linear model
def pk_exact(ts, CL=5.0, V1=20.0, Q=10.0, V2=50.0):
    """Piecewise: y' = A y + b(t) with b constant between the infusion's knots: y(t) = e^{A s} y0 + A^-1 (e^{A s}
    - I) b over each piece."""
    A = np.array([[-CL / V1 - Q / V1, Q / V2], [Q / V1, -Q / V2]])
    knots, rates, _ = INFUSION
    edges = [*knots, np.inf]
    out, y, start = [], np.zeros(2), 0.0
    pieces = [(lo, hi, rate) for lo, hi, rate in zip(edges[:-1], edges[1:], rates)]
    for t in ts:
        while t > pieces[0][1]:
            lo, hi, rate = pieces.pop(0)
            y = _pk_piece(A, y, hi - start, rate)
            start = hi
        out.append(_pk_piece(A, y, t - start, pieces[0][2]))
    return np.array(out)


def _pk_piece(A, y, s, rate):
    E = expm(A * s)
    return E @ y + np.linalg.solve(A, (E - np.eye(2)) @ np.array([rate, 0.0]))


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "rodas5p", "rodas4", "auto"])
def test_pk_infusion_table_matches_the_exact_solution(method):
    m = PK.model_class()().double()
    ts = torch.linspace(0.0, 24.0, 49)
    ys = m.simulate(ts, inputs={"infusion": INFUSION}, method=method, rtol=1e-10, atol=1e-12, native=True)
    assert ys.dtype == torch.float64 and ys.shape == (49, 2)
    assert relative_error(ys, pk_exact(ts.numpy())) < 1e-7


def test_pk_per_sample_params_each_member_its_exact_solution(paths):
    CL = torch.tensor([3.0, 5.0, 8.0, 12.0], dtype=torch.float64)
    V1 = torch.tensor([15.0, 20.0, 30.0, 25.0], dtype=torch.float64)
    m = PK.model_class()(CL=CL, V1=V1).double()
    ts = torch.linspace(0.0, 24.0, 25)
    ys = m.simulate(ts, inputs={"infusion": INFUSION}, rtol=1e-10, atol=1e-12)
    assert paths == ["native"] and ys.shape == (25, 4, 2)
    for b in range(4):
        assert relative_error(ys[:, b], pk_exact(ts.numpy(), CL=float(CL[b]), V1=float(V1[b]))) < 1e-7


def test_member_values_table_is_read_per_member():
    m = PK.model_class()().double()
    p = m.parameter_values().detach()
    table = p.expand(3, p.shape[0]).clone()
    CL = [2.0, 5.0, 9.0]
    table[:, m.param_names.index("CL")] = torch.tensor(CL, dtype=torch.float64)
    ts = torch.linspace(0.0, 12.0, 13)
    with m.member_values(table):
        ys = m.simulate(ts, y0=torch.zeros(3, 2, dtype=torch.float64), inputs={"infusion": INFUSION},
                        rtol=1e-10, atol=1e-12, native=True)
    for b in range(3):
        assert relative_error(ys[:, b], pk_exact(ts.numpy(), CL=CL[b])) < 1e-7


def test_input_columns_per_member():
    """A signal with a column per member (values [K, B], as hodec fit binds a group's inputs)."""
    m = PK.model_class()().double()
    rates = torch.tensor([[100.0, 50.0], [0.0, 0.0]], dtype=torch.float64)
    ts = torch.linspace(0.0, 12.0, 13)
    ys = m.simulate(ts, y0=torch.zeros(2, 2, dtype=torch.float64),
                    inputs={"infusion": ([0.0, 1.0], rates, "previous")}, rtol=1e-10, atol=1e-12, native=True)
    single = pk_exact(ts.numpy())  # (100 for 1 h, 40 for 1.5 h from t = 6): compare the first hour's effect only
    assert relative_error(ys[:, 1] * 2, ys[:, 0]) < 1e-8  # linear in the infusion
    assert relative_error(ys[:7, 0], single[:7]) < 1e-7  # before the second infusion starts at t = 6


# ---------------------------------------------------------------- scipy on hand-written right-hand sides
def mm_rhs(t, y, kf=2.0, kr=1.0, kcat=0.5):
    E, S, ES, P = y
    bind = kf * E * S - kr * ES
    cat = kcat * ES
    return [-bind + cat, -bind, bind - cat, cat]


def sir_rhs(t, y, beta=0.3, gamma=0.1):
    S, I, R = y
    return [-beta * S * I, beta * S * I - gamma * I, gamma * I]


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "rodas5p", "auto"])
@pytest.mark.parametrize("which", ["mm", "sir"])
def test_against_scipy(which, method):
    cls, rhs, y0, t_end = ((MM.model_class(), mm_rhs, [0.1, 10.0, 0.0, 0.0], 60.0) if which == "mm" else
                           (load_text(SIR, "sir_plain.hode"), sir_rhs, [0.99, 0.01, 0.0], 150.0))
    ts = np.linspace(0.0, t_end, 31)
    ref = solve_ivp(rhs, (0, t_end), y0, method="DOP853", t_eval=ts, rtol=1e-12, atol=1e-14).y.T
    ys = cls().double().simulate(torch.tensor(ts), method=method, rtol=1e-9, atol=1e-12, native=True)
    assert relative_error(ys, ref) < 1e-6


def test_batched_initial_states_and_per_member_grids():
    """y0 [2, 3, n] and ts [T, 2, 3]: each member from its own state, output at its own times."""
    m = load_text(SIR, "sir_plain.hode")().double()
    rng = np.random.default_rng(0)
    I0 = rng.uniform(0.001, 0.05, size=(2, 3))
    y0 = np.stack([1 - I0, I0, np.zeros_like(I0)], -1)
    starts = rng.uniform(0.0, 5.0, size=(2, 3))
    ts = starts + np.linspace(0.0, 100.0, 11)[:, None, None] * rng.uniform(0.5, 1.0, size=(2, 3))
    ys = m.simulate(torch.tensor(ts), y0=torch.tensor(y0), rtol=1e-10, atol=1e-12, native=True)
    assert ys.shape == (11, 2, 3, 3)
    for i in range(2):
        for j in range(3):
            ref = solve_ivp(sir_rhs, (ts[0, i, j], ts[-1, i, j]), y0[i, j], method="DOP853", t_eval=ts[:, i, j],
                            rtol=1e-12, atol=1e-14).y.T
            assert relative_error(ys[:, i, j], ref) < 1e-7


def test_uva_padova_against_the_benchmark_reference():
    """UVA/Padova with its meal and insulin tables (held inputs) against scipy DOP853 at rtol 1e-12 on the
    benchmark's hand-written right-hand side, integrated piece by piece between the input jumps."""
    case = CASES["uva"]()
    model, y0 = hodec_model(case, 1)
    ts = torch.tensor(case.ts)
    for method in ("tsit5", "auto", "rodas5p"):
        ys = model.simulate(ts, y0=y0, method=method, rtol=1e-10, atol=1e-10, native=True)
        assert relative_error(ys, reference(case, 0, 1)) < 1e-6, method


@pytest.mark.parametrize("method", ["tsit5", "dopri5", "rodas5p", "rodas4"])
def test_the_same_method_as_the_torch_solvers(method):
    """The same tableau and controller in C and in torch: the two solves agree far below the tolerance."""
    m = MM.model_class()().double()
    ts = torch.linspace(0.0, 60.0, 31)
    a = m.simulate(ts, method=method, rtol=1e-7, atol=1e-10, native=True, stats=(sa := {}))
    b = m.simulate(ts, method=method, rtol=1e-7, atol=1e-10, native=False, stats=(sb := {}))
    assert relative_error(a, b) < 1e-9
    assert sa["steps"] == pytest.approx(sb["steps"], abs=2)


# ---------------------------------------------------------------- float32, errors
def test_float32_model_solves_in_double_and_rounds():
    ts = torch.linspace(0.0, 24.0, 25)
    m32 = PK.model_class()().float()
    ys = m32.simulate(ts, inputs={"infusion": INFUSION}, rtol=1e-10, atol=1e-12, native=True)
    assert ys.dtype == torch.float32
    exact = pk_exact(ts.double().numpy())
    assert relative_error(ys.double(), exact) < 1e-6  # float32 rounding of the result, not of the solve
    with pytest.raises(solvers.SolverError):  # (a float32 solve could not reach rtol 1e-10)
        m32.simulate(ts, inputs={"infusion": INFUSION}, rtol=1e-10, atol=1e-12, native=False, max_steps=2000)


def test_failures_name_the_state_and_time():
    """x' = x², x(0) = 1 blows up at t = 1 (x = 1 / (1 - t))."""
    blowup = load_text("model Blowup\nstate x = 1\nstate y = 0\nder x = x * x\nder y = 1\n", "blowup.hode")()
    with pytest.raises(solvers.StepSizeUnderflow) as err:
        blowup.double().simulate(torch.linspace(0.0, 2.0, 5), method="tsit5", native=True)
    message = str(err.value)
    assert "step size underflow at t = 1.0000" in message and "batch member 0" in message and "; x (= " in message


# ---------------------------------------------------------------- the automatic choice
def test_no_grad_goes_native_grad_goes_native_with_sensitivities(paths):
    m = PK.model_class()().double()
    ts = torch.linspace(0.0, 24.0, 25)
    ys = m.simulate(ts, inputs={"infusion": INFUSION})  # (the tests run under no_grad)
    assert paths == ["native"]
    with torch.enable_grad():
        grad = m.simulate(ts, inputs={"infusion": INFUSION})  # the params are nn.Parameters: gradients wanted
        assert paths == ["native", "sensitivities"] and grad.requires_grad
        for p in m.parameters():
            p.requires_grad_(False)
        m.simulate(ts, inputs={"infusion": INFUSION})  # nothing requires grad: native
        y0 = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        m.simulate(ts, y0=y0, inputs={"infusion": INFUSION})
        m.simulate(ts, y0=y0, method="rodas5p", inputs={"infusion": INFUSION})  # no stiff sensitivities: torch
    assert paths == ["native", "sensitivities", "native", "sensitivities", "torch"]
    assert torch.equal(ys, grad.detach())  # the same steps: the same values


def test_environment_turns_the_automatic_choice_off(paths, monkeypatch):
    m = PK.model_class()().double()
    monkeypatch.setenv("HODEC_NATIVE", "0")
    m.simulate([0.0, 1.0], inputs={"infusion": INFUSION})
    m.simulate([0.0, 1.0], inputs={"infusion": INFUSION}, native=True)
    assert paths == ["torch", "native"]


@pytest.mark.parametrize("case, words", [
    ("slot", ["neural slot 'correction'", "other than its declared MLP"]),
    ("events", ["events"]),
    ("doses", ["doses"]),
    ("coupling", ["coupling"]),
    ("grad", ["gradients", "the time grid requires grad"]),  # (params and y0: forward sensitivities)
    ("method", ["ros34pw2" if "ros34pw2" not in native.NAMES else "bosh3", "native methods"]),
    ("callable", ["input 'infusion'", "callable"]),
    ("adjoint", ["adjoint=True"]),
    ("backward", ["time grid decreases"]),
])
def test_refusals_fall_back_to_torch_or_name_the_reason(case, words, paths):
    ts = torch.linspace(0.0, 3.0, 4)
    kwargs = {}
    if case == "slot":
        m = hodec.compile("specs/sir.hode").model_class()().double()
        m.slot_modules[0].net = torch.nn.Sequential(torch.nn.Linear(2, 2)).double()  # a user's network
    elif case == "events":
        m = load_text("model Pulse\nparam k = 1 positive\nstate x = 1\nder x = -k * x\nat t = 2: x += 1\n",
                      "pulse.hode")().double()
    else:
        m = PK.model_class()().double()
        m.set_inputs({"infusion": INFUSION})
    if case == "doses":
        kwargs["doses"] = Doses(torch.tensor([1.0]), torch.tensor([5.0]), torch.tensor([0]))
    if case == "coupling":
        m.set_coupling(Coupling(m, ["central"], lambda t: torch.full((1,), 5.0, dtype=torch.float64), 2.0), 0.5)
    if case == "method":
        kwargs["method"] = words[0]
    if case == "callable":
        m.set_inputs({"infusion": lambda t: 100.0 * (t < 1)})
    if case == "adjoint":
        kwargs["adjoint"] = True
    if case == "grad":
        ts = ts.clone().requires_grad_()
    if case == "backward":  # the torch solvers integrate backward from ts[0]
        ts = ts.flip(0)
        kwargs["y0"] = torch.tensor([50.0, 10.0], dtype=torch.float64)
    with torch.enable_grad() if case == "grad" else contextlib.nullcontext():
        if case not in ("method", "adjoint"):  # (bosh3 is torchdiffeq's; an adjoint solve needs gradients)
            m.simulate(ts, **kwargs)
            assert paths[-1] == "torch" or case == "doses" or case == "events"
        with pytest.raises(hodec.HodecError) as err:
            m.simulate(ts, native=True, **kwargs)
    message = str(err.value)
    assert "simulate(native=True): " in message and all(w in message for w in words), message
    assert "native" not in paths


def test_compile_is_the_torch_solvers_option_and_does_not_keep_a_solve_there(paths):
    m = PK.model_class()().double()
    m.simulate([0.0, 1.0], inputs={"infusion": INFUSION}, compile=True, max_steps=1000, stats={})
    assert paths == ["native"]


class Older(PK.model_class()):
    """A class generated before native solving: no C source."""
    native_source = None
    native_unsupported = None


class Doubled(PK.model_class()):
    """A subclass whose field is not the generated one the C source prints."""

    def forward(self, t, y):
        return 2 * super().forward(t, y)


@pytest.mark.parametrize("cls, reason", [(Older, "carries no C source"), (Doubled, "forward is overridden")])
def test_a_class_whose_c_source_is_missing_or_not_its_field_stays_on_torch(cls, reason, paths):
    m = cls().double()
    m.set_inputs({"infusion": INFUSION})
    m.simulate([0.0, 1.0])
    with pytest.raises(hodec.HodecError, match=reason):
        m.simulate([0.0, 1.0], native=True)
    assert paths == ["torch"]


def test_no_compiler_falls_back(paths, monkeypatch, tmp_path):
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("HODEC_CACHE", str(tmp_path))
    m = load_text(SIR.replace("SIRPlain", "SIRNoCompiler"), "sir_cc.hode")().double()
    m.simulate([0.0, 1.0])
    with pytest.raises(NativeUnavailable):
        library(type(m).native_source)
    with pytest.raises(hodec.HodecError, match="no native library"):
        m.simulate([0.0, 1.0], native=True)
    assert paths == ["torch"]


# ---------------------------------------------------------------- hodec simulate
def test_cli_simulate_solves_natively(tmp_path, paths):
    out = tmp_path / "pk.csv"
    infusion = tmp_path / "infusion.csv"
    infusion.write_text("t,value\n0,100\n1,0\n6,40\n7.5,0\n")
    assert cli_main(["simulate", "specs/pk_two_compartment.hode", "--t-end", "24", "--points", "25",
                     "--input", f"infusion={infusion}", "-o", str(out)]) == 0
    assert paths == ["native"]
    table = np.loadtxt(out, delimiter=",", skiprows=1)
    # the CSV input is read with linear interpolation: compare with scipy on that reading of the table
    knots, rates = np.array([0.0, 1.0, 6.0, 7.5]), np.array([100.0, 0.0, 40.0, 0.0])

    def rhs(t, y, CL=5.0, V1=20.0, Q=10.0, V2=50.0):
        u = np.interp(t, knots, rates)
        return [u - CL / V1 * y[0] - Q / V1 * y[0] + Q / V2 * y[1], Q / V1 * y[0] - Q / V2 * y[1]]

    ref = solve_ivp(rhs, (0, 24), [0.0, 0.0], method="DOP853", t_eval=table[:, 0], rtol=1e-12, atol=1e-12,
                    max_step=0.25).y.T
    assert relative_error(table[:, 1:3], ref) < 1e-6
    np.testing.assert_allclose(table[:, 3], table[:, 1] / 20.0, rtol=1e-14)


def test_fit_trains_and_evaluates_natively(paths, tmp_path, monkeypatch):
    """hodec fit's epochs need gradients: native solves with forward sensitivities; its evaluation of each epoch
    runs without them, natively too; the reported MSEs are the torch solvers' (HODEC_NATIVE=0 keeps every solve
    on torch) to solver tolerance."""
    ts = np.linspace(0.0, 6.0, 25)
    lv = lambda t, y: [1.3 * y[0] - 0.9 * y[0] * y[1], -0.8 * y[1] + 1.8 * y[0] * y[1]]  # noqa: E731
    ys = solve_ivp(lv, (0.0, 6.0), [1.0, 0.5], t_eval=ts, rtol=1e-10, atol=1e-12).y.T
    csv = tmp_path / "data.csv"
    csv.write_text("time,prey,predators\n" + "".join(f"{t},{a},{b}\n" for t, (a, b) in zip(ts, ys)))
    spec = str(Path(__file__).resolve().parents[1] / "specs" / "lotka_volterra.hode")
    config = {"method": "vanilla", "epochs": 3, "lr": 0.02, "solver": {"rtol": 1e-7, "atol": 1e-9}}
    with torch.enable_grad():  # the module's tests run under no_grad
        native_fit = hodec.fit(spec, str(csv), config)
    assert "native" in paths and "sensitivities" in paths and "torch" not in paths
    monkeypatch.setenv("HODEC_NATIVE", "0")
    del paths[:]
    with torch.enable_grad():
        torch_fit = hodec.fit(spec, str(csv), config)
    assert set(paths) == {"torch"}
    for a, b in zip(native_fit.history, torch_fit.history):
        assert a["mse"] == pytest.approx(b["mse"], rel=1e-6)


def test_fit_inside_no_grad_still_trains(tmp_path):
    """A fit called in a caller's no_grad block (this module's tests run in one) trains: it raised autograd's
    "element 0 of tensors does not require grad" from the first backward."""
    ts = np.linspace(0.0, 4.0, 9)
    csv = tmp_path / "data.csv"
    csv.write_text("time,prey,predators\n" + "".join(f"{t},{1 + 0.1 * t},{0.5 + 0.05 * t}\n" for t in ts))
    spec = str(Path(__file__).resolve().parents[1] / "specs" / "lotka_volterra.hode")
    assert not torch.is_grad_enabled()
    result = hodec.fit(spec, str(csv), {"method": "vanilla", "epochs": 2, "lr": 0.02})
    assert len(result.history) == 2 and result.history[1]["loss"] != result.history[0]["loss"]
