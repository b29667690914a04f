"""User names that collide with Python, torch, the generated code's own locals, the runtime's attributes or the
language's option keywords (in, fixed, positive, keep, hidden, activation: keywords only where an option stands)
compile to a working module in every role (model, params of each kind, input, states, let, reaction, slots, a slot's
formal argument, observables), and the model computes the same numbers as a hand formula. Docs with awkward
characters survive as Model.__doc__."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import hodec
from hodec.compiler import load_source, symbolic

NAMES = ["lambda", "self", "torch", "import", "nan", "inf", "y", "dydt", "time", "p", "u", "batch", "flux", "tmp0",
         "Model", "runtime", "super", "class", "def", "return", "None", "True", "print",
         "activation", "hidden", "positive", "fixed", "keep", "in"]
ROLES = ["model", "free", "positive", "bounded", "fixed", "input", "s1", "s2", "let", "reaction", "resid", "func",
         "arg", "obs1", "obs2"]

TEMPLATE = """
model {model} "names that mean something to Python"
param {free} = 0.7
param {positive} = 1.3 positive
param {bounded} = 0.4 in (0.1, 0.9)
param {fixed} = 2 fixed
input {input}
state {s1} = {fixed}
state {s2} = 0.5
let {let} = {free} * {s1} + {input}
reaction {reaction}: {s1} -> {s2} ; {positive} * {s1}
der {s2} = -{bounded} * {s2} + {let} * {func}({s2} / {fixed})
neural {resid}({s1}, {s2}, {input}) -> {s1} hidden 3
neural {func}({arg}) hidden 4 positive
observe {obs1} = {let} * {fixed}
observe {obs2} = {func}({s2}) + t
"""

VALUES = dict(free=-0.35, positive=0.8, bounded=0.25, fixed=1.6)
SIGNAL = ([0.0, 1.0, 3.0], [0.2, -0.4, 0.9])


def assignment(k):
    """Rotation k of the names over the roles: over all k, every name takes every role."""
    return {role: NAMES[(k + j) % len(NAMES)] for j, role in enumerate(ROLES)}


def slot(m, name, *cols):
    x = torch.stack([torch.as_tensor(c, dtype=torch.float64) for c in map(np.array, np.broadcast_arrays(*cols))], -1)
    with torch.no_grad():
        return m.slot(name)(x).numpy()


def u_at(t):
    return np.interp(t, *SIGNAL)


def hand_rhs(m, r, t, Y):
    s1, s2 = Y[..., 0], Y[..., 1]
    u = u_at(t)
    let = VALUES["free"] * s1 + u
    flow = VALUES["positive"] * s1
    resid = slot(m, r["resid"], s1, s2, np.broadcast_to(u, s1.shape))[..., 0]
    func = slot(m, r["func"], s2 / VALUES["fixed"])[..., 0]
    return np.stack([-flow + resid, flow - VALUES["bounded"] * s2 + let * func], -1)


def hand_obs(m, r, t, Y):
    s1, s2 = Y[..., 0], Y[..., 1]
    let = VALUES["free"] * s1 + u_at(t)
    return np.stack([let * VALUES["fixed"], slot(m, r["func"], s2)[..., 0] + t], -1)


@pytest.fixture(scope="module")
def compiled():
    out = {}
    for k in range(len(NAMES)):
        r = assignment(k)
        code = hodec.compile_source(TEMPLATE.format(**r), f"names_{k}.hode")
        out[k] = (r, load_source(code, f"hodec_test_names_{k}"))
    return out


def test_every_name_takes_every_role():
    for role in ROLES:
        assert {assignment(k)[role] for k in range(len(NAMES))} == set(NAMES), role


@pytest.mark.parametrize("k", range(len(NAMES)), ids=lambda k: assignment(k)["model"])
def test_names_compile_and_compute_the_hand_formula(compiled, k):
    r, cls = compiled[k]
    torch.manual_seed(k)
    m = cls(**{r[role]: v for role, v in VALUES.items()}).double()
    assert m.state_names == (r["s1"], r["s2"])
    assert m.param_names == (r["free"], r["positive"], r["bounded"], r["fixed"])
    assert m.input_names == (r["input"],)
    assert m.observable_names == (r["obs1"], r["obs2"])
    assert m.params() == pytest.approx({r[role]: v for role, v in VALUES.items()}, rel=1e-14)
    assert isinstance(m.slot(r["resid"]), torch.nn.Module) and isinstance(m.slot(r["func"]), torch.nn.Module)
    m.set_inputs({r["input"]: SIGNAL})

    rng = np.random.default_rng(k)
    Y = rng.uniform(-1.0, 2.0, size=(5, 2))
    t = 1.7
    with torch.no_grad():
        got = m(torch.tensor(t, dtype=torch.float64), torch.tensor(Y)).numpy()
    np.testing.assert_allclose(got, hand_rhs(m, r, t, Y), rtol=1e-12, atol=1e-13)

    with torch.no_grad():
        y0 = m.initial_state()
    np.testing.assert_array_equal(y0.numpy(), [VALUES["fixed"], 0.5])

    ts = np.linspace(0.0, 2.0, 5)
    with torch.no_grad():
        ys = m.simulate(torch.tensor(ts), rtol=1e-10, atol=1e-12)
        obs = m.observe(ys, torch.tensor(ts)).numpy()
    ys = ys.numpy()
    sol = solve_ivp(lambda t, y: hand_rhs(m, r, t, y[None])[0], (0.0, 2.0), [VALUES["fixed"], 0.5],
                    method="DOP853", t_eval=ts, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ys, sol.y.T, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(obs, np.stack([hand_obs(m, r, ti, ys[i]) for i, ti in enumerate(ts)]),
                               rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", NAMES)
def test_model_name_class_and_module_namespace(name):
    code = hodec.compile_source(f"model {name}\nstate x = 1\nder x = -x\n", "n.hode")
    module_name = f"hodec_test_model_named_{name}"
    cls = load_source(code, module_name)
    module = sys.modules[module_name]
    assert module.Model is cls
    assert module.torch is torch, "the model name must not shadow the module's imports"
    assert issubclass(cls, hodec.runtime.CompiledModel)
    m = cls().double()
    y = torch.tensor([[2.0], [3.0]], dtype=torch.float64)
    torch.testing.assert_close(m(torch.tensor(0.0), y), -y)


DOCS = [r"a backslash \ here", r"ends with a backslash \\", "single 'quotes' and it's", "braces {} {x} {{ y }} {%",
        "a # that is not a comment", r"all: \n \t \' ' {0} # %s \\ end", "unicode: σ ρ β — ok"]


@pytest.mark.parametrize("doc", DOCS)
def test_model_doc_survives(doc, tmp_path):
    spec = f'model Documented "{doc}"\nparam k = 1 "{doc}"\nstate x = 1 "{doc}"\ninput v "{doc}"\nder x = -k * x + v\n'
    path = tmp_path / "documented.hode"
    path.write_text(spec, encoding="utf-8")
    cls = hodec.load(path)
    assert cls.__doc__ == doc
    code = hodec.compile_file(path)
    compile(code, "generated", "exec")
    m = cls().double()
    m.set_inputs({"v": ([0.0], [0.5])})
    out = m(torch.tensor(0.0), torch.tensor([2.0], dtype=torch.float64))
    assert out.tolist() == [-1.5]


@pytest.mark.parametrize("word", ["model", "param", "input", "compartment", "state", "let", "reaction", "der",
                                  "neural", "observe", "and", "or", "not", "if", "exp", "t"])
def test_statement_and_expression_keywords_stay_reserved(word):
    with pytest.raises(hodec.HodecError, match=f"'{word}' is reserved and cannot be used as a name"):
        hodec.compile_source(f"model M\nparam {word} = 1\n", "reserved.hode")


def test_option_keywords_keep_their_meaning_beside_names_spelled_like_them():
    """`keep` marks an argument or a term only where a marker stands; elsewhere it is a name."""
    source = ("model M\nstate keep = 1\nstate hidden = 2\nparam in = 0.5 in (0, 1)\nparam positive = 2 positive\n"
              "reaction activation: keep -> hidden ; in * keep keep\nder hidden = -positive * hidden keep\n"
              "neural f(keep, keep hidden) -> keep hidden 3 activation tanh positive\n")
    sm = symbolic(source, "keywords.hode")
    slot = sm.model.slots[0]
    assert [(a.name, a.keep) for a in slot.args] == [("keep", False), ("hidden", True)]
    assert (slot.hidden, slot.activation, slot.positive) == ((3,), "tanh", True)
    assert [(f.name, f.keep) for f in sm.fluxes][:2] == [("activation", True), ("der_hidden.0", True)]
    params = {p.name: (p.kind, p.lower, p.upper) for p in sm.model.params}
    assert params == {"in": ("bounded", 0.0, 1.0), "positive": ("positive", None, None)}
    with pytest.raises(hodec.HodecError, match=r"keywords.hode:2:12: error: unexpected 'b'; expected '\)' or ','"):
        symbolic("model M\nneural f(a b)\n", "keywords.hode")
