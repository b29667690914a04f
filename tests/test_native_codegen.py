"""Issue 15, the model as C for the native solvers (hodec/codegen/native.py): hodec_rhs, hodec_jac, hodec_dfdt and
hodec_dfdp, built by hodec.solvers.native.library and called through its exports (hodec_eval, hodec_dfdp), against
the generated torch module's forward, torch.func.jacrev of forward in y and in the parameter vector, and
torch.autograd's derivative of forward in t (inputs bound as linear signals, their values and slopes given to the C
by hand); on every spec in specs/, on fuzzed specs, and on the benchmark networks against the hand-written
mass-action field and derivatives."""
from __future__ import annotations

import ctypes
import itertools
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import hodec
from hodec.codegen.native import comment, native_source
from hodec.compiler import compile_source, load_source
from hodec.runtime.native import weights
from hodec.solvers.native import library
from benchmarks.networks import random_network
from test_fuzz import expressions  # random well-formed expressions over given names

f64 = torch.float64
SPECS = sorted((Path(__file__).resolve().parents[1] / "specs").glob("*.hode"))
_counter = itertools.count()
T, TIMES = 2.5, torch.linspace(0, 10, 11, dtype=f64)  # t inside the segment [2, 3] of every input's samples


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HODEC_CACHE", str(tmp_path / "native"))


def model_from(source: str, name: str = "test.hode"):
    code = compile_source(source, name)
    return load_source(code, f"hodec_test_native_codegen_{next(_counter)}")().double()


def bind_inputs(model, seed: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Each input a linear signal over TIMES; returns the inputs' values and slopes at T, computed by hand."""
    g = torch.Generator().manual_seed(seed)
    u, du = [], []
    for name in model.input_names:
        values = torch.rand(len(TIMES), generator=g, dtype=f64) + 0.5
        model.set_inputs({name: (TIMES, values)})
        u.append(values[2] + (T - 2) * (values[3] - values[2]))
        du.append(values[3] - values[2])
    return torch.tensor(u, dtype=f64), torch.tensor(du, dtype=f64)


def row(model) -> torch.Tensor:
    """The model's p as its C reads it: the params, then any neural slots' weights."""
    p = model.parameter_values().detach()
    w = weights(model)
    return (p if w is None else torch.cat([p, w])).contiguous()


def evaluate(model, y: torch.Tensor, u: torch.Tensor, du: torch.Tensor) -> tuple:
    """(dy, J, df) of the model's C at (T, y), its params and the inputs' values u and slopes du."""
    lib = library(model.native_source)
    n = len(model.state_names)
    p = row(model)
    dy, J, df = torch.empty(n, dtype=f64), torch.empty(n, n, dtype=f64), torch.empty(n, dtype=f64)
    J.fill_(float("nan"))  # every entry must be written
    args = [y.contiguous(), p, u.contiguous(), du.contiguous(), dy, J, df]
    lib.hodec_eval(T, *(ctypes.c_void_p(a.data_ptr()) for a in args))
    return dy, J, df


def dfdp(model, y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """hodec_dfdp of the model's C [n, P] (the library exports it)."""
    p = row(model)
    D = torch.full((len(model.state_names), len(model.parameter_values())), float("nan"), dtype=f64)  # all written
    call = library(model.native_source).hodec_dfdp
    call.argtypes = [ctypes.c_double] + [ctypes.c_void_p] * 4
    call(T, *(a.data_ptr() for a in (y.contiguous(), p, u.contiguous(), D)))
    return D


def parameter_jacobian(model, y: torch.Tensor) -> torch.Tensor:
    """jacrev of forward with respect to the constrained parameter vector (parameter_values' columns)."""
    t = torch.tensor(T, dtype=f64)

    def field(p):
        with model.member_values(p[None]):
            return model.forward(t, y[None])[0]

    return torch.func.jacrev(field)(model.parameter_values().detach()).detach()


def references(model, y: torch.Tensor) -> tuple:
    """forward, jacrev of forward in y, and the derivative of forward in t by autograd (through the signals)."""
    t = torch.tensor(T, dtype=f64)
    with torch.no_grad():
        dy = model.forward(t, y)
    J = torch.func.jacrev(lambda s: model.forward(t, s))(y)
    df = torch.func.jacrev(lambda s: model.forward(s, y))(t)
    return dy, J.detach(), df.detach()


def random_states(model, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = model.initial_state().detach().reshape(-1)[:len(model.state_names)].abs() + 0.5
    return scale * (0.5 + torch.rand(len(model.state_names), generator=g, dtype=f64))


def warnings_of(source: str, tmp_path: Path) -> str:
    """What `cc -std=c99 -Wall -Wextra` says about the source (with a caller of its three functions)."""
    path = tmp_path / f"check{next(_counter)}.c"
    path.write_text(source + "void call(double t, const double *y, const double *p, const double *u, const double *du,"
                    " double *dy, double *J, double *df) { hodec_rhs(t, y, p, u, dy); hodec_jac(t, y, p, u, J); "
                    "hodec_dfdt(t, y, p, u, du, df); }\n")
    result = subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fsyntax-only",
                             str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stderr


# ---------------------------------------------------------------- every spec
@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_every_spec_against_forward_jacrev_and_autograd_in_t(path, tmp_path):
    model = hodec.compile(path).model_class()().double()
    if model.events_table:
        assert model.native_source is None and model.native_unsupported.startswith("events (line ")
        return
    assert model.native_unsupported is None
    assert warnings_of(model.native_source, tmp_path) == ""
    u, du = bind_inputs(model)
    for seed in range(3):
        y = random_states(model, seed)
        got = (*evaluate(model, y, u, du), dfdp(model, y, u))
        want = (*references(model, y), parameter_jacobian(model, y))
        for k, (g, w) in enumerate(zip(got, want)):
            assert torch.isfinite(w).all()
            if model.slots_table and k:  # with neural slots the derivatives are central differences
                torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-7 * (1 + w.abs().amax().item() if w.numel() else 1))
            else:
                torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_the_reference_sees_time_and_inputs():
    """The dfdt reference is not trivially zero: the PK infusion enters dcentral/dt, UVA/Padova reads inputs."""
    for stem, nonzero in (("pk_two_compartment", 1), ("uva_padova", 3)):
        model = hodec.compile(SPECS[[p.stem for p in SPECS].index(stem)]).model_class()().double()
        bind_inputs(model)
        _, _, df = references(model, random_states(model))
        assert int((df != 0).sum()) >= nonzero


def test_parameters_are_read_in_parameter_values_order():
    """Params of each kind (free, positive, bounded, fixed, declared interleaved): p[i] is the i-th column of
    parameter_values(), which is not the declaration order."""
    model = model_from("model M\nparam a = 2 fixed\nparam b = 3 in (0, 10)\nparam c = 5 positive\nparam d = 7\n"
                       "state x = 1\nder x = a + 10 * b + 100 * c + 1000 * d\n")
    assert [row[0] for row in model.parameters_table] == ["d", "c", "b", "a"]
    dy, _, _ = evaluate(model, torch.ones(1, dtype=f64), torch.zeros(0, dtype=f64), torch.zeros(0, dtype=f64))
    assert dy.tolist() == [2 + 30 + 500 + 7000]


def test_gates_and_unsupported_models_give_a_reason():
    sm = hodec.compile(SPECS[[p.stem for p in SPECS].index("lotka_volterra")]).symbolic
    assert native_source(sm, gates=True) == (None, "sparsity gates (a module compiled with gates)")
    assert native_source(sm)[1] is None
    kept = compile_source("model K\nparam k = 1\nstate A = 1\nreaction r: A -> ; k * A keep\n", "k.hode", gates=True)
    assert "native_unsupported = None" in kept  # no gate to compile: the gated module is native too
    model = model_from("model E\nparam k = 1\nstate A = 1\nder A = -k * A\nwhen A < 0.5: A = 1\n")
    assert model.native_source is None and model.native_unsupported == "events (line 5: when A < 0.5: A = 1)"


# ---------------------------------------------------------------- the semantics of each function
SEMANTICS = """model S
param k = 0.5 positive
param K = 2 positive
param n = 3 positive
input u
state A = 1
state B = 2 in V
param V = 4 positive
let r = hill(A, K, n) + sigmoid(A - B) + softplus(30 * A) + softplus(B - 3)
let q = quotient(B * 7, A + 1) + quotient(-B * 7, A + 1) + rem(-B * 7, A + 1)
der A = r + q + log10(A) + min(A, B, 1.5) + max(A, u)
let s = sec(A) + acot(B) + tanh(A) + abs(A - B) + floor(A * 3) + ceil(B) + asinh(u) + factorial(A)
der B = if(A > 1 and not B < 0.5 or t > 2, exp(-k * t), cos(u * A)) + A^3 + B^-2 + A^0.7 + sqrt(B) + 1 / sqrt(A) + s
reaction flux: A -> B ; k * A * B / (K + A)
"""


@pytest.mark.parametrize("seed", range(4))
def test_every_function_matches_torch(seed):
    """... and ∂f/∂p, a compartment's size among the params (the quotient rule) included."""
    model = model_from(SEMANTICS)
    u, du = bind_inputs(model, seed)
    y = torch.rand(2, generator=torch.Generator().manual_seed(seed), dtype=f64) * 3 + 0.2
    got = (*evaluate(model, y, u, du), dfdp(model, y, u))
    for g, w in zip(got, (*references(model, y), parameter_jacobian(model, y))):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)


def test_nan_where_torch_is_nan():
    """Outside a formula's domain (log of a negative number, a NaN argument of min) the C is NaN as torch is; the
    domain terms SymPy's simplification would lose (issue 14) are kept."""
    model = model_from("model D\nstate A = 1\nstate B = 1\nder A = min(log(A), 2)\nder B = exp(log(B))\n")
    y = torch.tensor([-1.0, -2.0], dtype=f64)
    dy, _, _ = evaluate(model, y, torch.zeros(0, dtype=f64), torch.zeros(0, dtype=f64))
    want = model.forward(torch.tensor(T, dtype=f64), y)
    assert torch.isnan(want).all() and torch.isnan(dy).all()


# ---------------------------------------------------------------- fuzzed specs
@st.composite
def reaction_specs(draw):
    """Mass-action, Hill and piecewise reactions between three states (one in a compartment), with lets, an
    input, t, and random expressions of the fuzz tests (without neural calls). The params' values differ from each
    other and from the literals: min and max of equal values have no derivative (torch splits it, SymPy not)."""
    lines = ["model F", "param k1 = 0.6 positive", "param k2 = 2.5 in (0, 5)", "param K = 1.7 positive",
             "param n = 3 fixed", "param V = 3.5 positive", "input u", "state A = k1 + 1", "state B = 2",
             "state C = 0.5 in V"]
    names = ["k1", "k2", "K", "n", "A", "B", "C", "u", "t"]
    for i in range(draw(st.integers(0, 2))):
        lines.append(f"let v{i} = {draw(expressions(tuple(names)))}")
        names.append(f"v{i}")
    laws = {"mass": "k1 * {a} * {b}", "hill": "k2 * hill({a}, K, n)", "if": "if({a} > K, k1 * {a}, k2 * {b})",
            "random": None}
    pairs = [("A", "B"), ("B", "C"), ("C", "A"), ("A", "C")]
    for i in range(draw(st.integers(1, 4))):
        a, b = draw(st.sampled_from(pairs))
        law = draw(st.sampled_from(sorted(laws)))
        rate = draw(expressions(tuple(names), allow_neural=False)) if law == "random" else laws[law].format(a=a, b=b)
        arrow = draw(st.sampled_from(["->", "<->", "-> 2"]))
        lines.append(f"reaction r{i}: {a} {arrow} {b} ; {rate}")
    if draw(st.booleans()):
        lines.append(f"der C = {draw(expressions(tuple(names), allow_neural=False))}")
    return "\n".join(lines) + "\n"


def compare_where_defined(got: tuple, want: tuple, symbolic: torch.Tensor):
    """(dy, J, df, D) against the references: the field NaN only where torch's is (torch's is NaN in more places:
    its dense accumulation, flux @ S, spreads one NaN flux to every state, as NaN * 0 is NaN) and close wherever
    torch's is finite; the derivatives close where both are finite: d(0^x)/dx is 0^x log 0, NaN, as hodec's
    symbolic jacobian() has it (test_compiler_state_jacobian), where torch's pow backward gives 0; so J is also
    finite wherever the module's jacobian() (`symbolic`) is."""
    assert not (torch.isnan(got[0]) & ~torch.isnan(want[0])).any()
    for g, w in zip(got, want):
        finite = torch.isfinite(w) & (torch.isfinite(g) if g is not got[0] else True)
        torch.testing.assert_close(g[finite], w[finite], rtol=1e-9, atol=1e-11)
    assert torch.isfinite(got[1])[torch.isfinite(symbolic)].all()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(reaction_specs(), st.integers(0, 2 ** 31 - 1))
def test_fuzzed_reaction_specs(text, seed):
    """Without the literal 1e30: terms of 1e30 that cancel leave what their sum's order rounds away, and the two
    sides sum in different orders."""
    assume("1e30" not in text)
    try:
        model = model_from(text)
    except hodec.HodecError:
        return
    assert model.native_unsupported is None, model.native_unsupported
    u, du = bind_inputs(model, seed % 1000)
    y = 3 * torch.rand(3, generator=torch.Generator().manual_seed(seed), dtype=f64) - 0.5
    compare_where_defined((*evaluate(model, y, u, du), dfdp(model, y, u)),
                          (*references(model, y), parameter_jacobian(model, y)),
                          model.jacobian(torch.tensor(T, dtype=f64), y).detach())


# ---------------------------------------------------------------- the benchmark networks
def mass_action(net, y: torch.Tensor) -> tuple:
    """The network's field and Jacobian written by hand from its reactions (no hodec code involved)."""
    dy, J = torch.zeros(net.n_states, dtype=f64), torch.zeros(net.n_states, net.n_states, dtype=f64)
    for k, ins, outs in zip(net.rates, net.reactants, net.products):
        rate = k * torch.prod(y[list(ins)])
        partial = {s: k * torch.prod(y[[o for o in ins if o != s]]) for s in ins}
        for target, sign in [(s, -1.0) for s in ins] + [(s, 1.0) for s in outs]:
            dy[target] += sign * rate
            for s, d in partial.items():
                J[target, s] += sign * d
    return dy, J


@pytest.mark.parametrize("size", [(100, 300), (1000, 3000)], ids=["N100", "N1000"])
def test_benchmark_networks_against_the_hand_written_field(size):
    net = random_network(*size)
    model = model_from(net.hode, "net.hode")
    start = time.perf_counter()
    library(model.native_source)
    print(f"N={size[0]}: C source {len(model.native_source)} bytes, library built in "
          f"{time.perf_counter() - start:.1f} s")
    y = torch.tensor(net.initial, dtype=f64) * (1 + 0.1 * torch.rand(net.n_states, dtype=f64))
    dy, J, df = evaluate(model, y, torch.zeros(0, dtype=f64), torch.zeros(0, dtype=f64))
    want_dy, want_J = mass_action(net, y)
    torch.testing.assert_close(dy, want_dy, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(J, want_J, rtol=1e-12, atol=1e-14)
    assert torch.equal(df, torch.zeros_like(df)) and "#define HODEC_AUTONOMOUS 1" in model.native_source
    D = torch.zeros(net.n_states, net.n_reactions, dtype=f64)  # d rate_r / d k_r = the product of its reactants
    for r, (ins, outs) in enumerate(zip(net.reactants, net.products)):
        for target, sign in [(s, -1.0) for s in ins] + [(s, 1.0) for s in outs]:
            D[target, r] += sign * torch.prod(y[list(ins)])
    torch.testing.assert_close(dfdp(model, y, torch.zeros(0, dtype=f64)), D, rtol=1e-12, atol=1e-14)
    if size[0] == 1000:  # numerous fluxes of one shape are loops over tables, not thousands of statements
        assert model.native_source.count("\n") < 20_000 and "for (int k = 0; k < 9027; ++k)" in model.native_source


# ---------------------------------------------------------------- names cannot change the C
EVIL = 'x */ #define HODEC_N 99 /* y\\n"\' ??/'


def strip_comments(source: str) -> str:
    return re.sub(r"/\*.*?\*/", "", source)


def test_names_and_doc_strings_cannot_change_the_c(tmp_path):
    """A doc string and a file name with a comment end, a define, quotes, a backslash, a newline and a trigraph
    only change comments: the code without its comments is the same, and it compiles warning-free."""
    spec = 'model M{doc}\nparam k = 0.5\nstate A = 1\nreaction r: A -> ; k * A\n'
    plain = model_from(spec.format(doc=""), "plain.hode").native_source
    evil = model_from(spec.format(doc=' "' + EVIL.replace('"', "'").replace("\\n", "") + '"'),
                      "e*/vil\n\"name\".hode").native_source
    assert plain != evil and strip_comments(plain) == strip_comments(evil)
    assert warnings_of(evil, tmp_path) == ""
    assert all(line.count("/*") == line.count("*/") for line in evil.splitlines())


@pytest.mark.parametrize("text", [EVIL, "a*/b/*c", "*/*/", "new\nline\rreturn\x00nul", "tab\tµ\u2028"])
def test_a_comment_is_one_closed_line(text):
    code = comment(text)
    assert "\n" not in code and "\r" not in code and code.isascii() and code.isprintable()
    assert code.startswith("/* ") and code.endswith(" */") and "*/" not in code[3:-3] and "/*" not in code[3:-3]


def test_the_source_is_deterministic():
    path = SPECS[[p.stem for p in SPECS].index("uva_padova")]
    first = native_source(hodec.compiler.Compilation(path.read_text(), path.name).symbolic)
    again = native_source(hodec.compiler.Compilation(path.read_text(), path.name).symbolic)
    assert first == again and first[0] is not None
