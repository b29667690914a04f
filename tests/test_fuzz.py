"""Robustness: whatever the text, hodec.compile_source returns code that compiles as Python or raises HodecError.

Three generators (hypothesis, bounded to well under a minute together): soups of the language's tokens; random
edits (characters, tokens, lines) of the valid specs in specs/ (or of embedded ones when specs/ is empty); and
random well-formed statements over declared names, which reach SymPy and code generation. Every crash they
found is kept below as a regular regression test.
"""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hodec
from hodec import HodecError
from hodec.compiler import load_source

SPECS_DIR = Path(__file__).resolve().parents[1] / "specs"

EMBEDDED_SPECS = {
    "hybrid_sir": '''model SIR "hybrid SIR"
# comment line
param beta = 0.3 positive "transmission"
param gamma = 0.1 in (0.02, 0.5)
param N = 1000 fixed
input u
compartment S = N - 5
compartment I = 5
compartment R = 0
let force = beta * I / N
reaction infection: S + I -> 2 I ; force * S
reaction recovery: I -> R ; gamma * I keep
neural correction(S, I, u) -> S, I hidden 8 8 activation tanh
observe prevalence = I / N
''',
    "enzyme": '''model Enzyme
param kf = 2 positive
param kr = 1 positive
param kcat = 0.5 positive
state E = 0.1
state S = 10
state ES = 0
state P = 0
reaction binding: E + S <-> ES ; kf * E * S - kr * ES
reaction catalysis: ES -> E + P ; kcat * ES
let Km = (kr + kcat) / kf
observe mm = kcat * 0.1 * S / (Km + S)
''',
    "functions": '''model Functions
param a = 1.5
param b = -0.5 fixed
input drive
state x = a ^ 2
state y = max(a, 1)
neural g(v, w) hidden 4 positive
der x = -x + g(x, y) * if(t > 1 and not drive < 0, drive, 0) keep
der y = hill(x, a, 2) - sigmoid(y) + min(abs(b), softplus(x), 3)
observe total = x + y
''',
}


def valid_specs() -> dict:
    """The specs of specs/ (at test time: another engineer adds to it), else the embedded ones."""
    found = {p.name: p.read_text(encoding="utf-8") for p in sorted(SPECS_DIR.glob("*.hode"))}
    return found or dict(EMBEDDED_SPECS)


SPECS = valid_specs()


def check_compiles_or_fails_cleanly(text: str):
    """The property: Python code that compiles, or a HodecError that renders with sensible locations."""
    try:
        code = hodec.compile_source(text, "fuzz.hode")
    except HodecError as err:
        rendered = err.render()
        assert rendered.startswith("fuzz.hode")
        assert err.diagnostics
        n_lines = text.count("\n") + 1
        for d in err.diagnostics:
            assert d.message
            if d.span is not None:
                assert 1 <= d.span.line <= n_lines and d.span.column >= 1, (d, text)
        return None
    compile(code, "<generated>", "exec")
    return code


# ---------------------------------------------------------------- the valid specs themselves
@pytest.mark.parametrize("name", sorted(SPECS))
def test_valid_specs_compile(name):
    assert check_compiles_or_fails_cleanly(SPECS[name]) is not None


@pytest.mark.parametrize("name", sorted(EMBEDDED_SPECS))
def test_embedded_specs_compile(name):
    assert check_compiles_or_fails_cleanly(EMBEDDED_SPECS[name]) is not None


# ---------------------------------------------------------------- (a) token soups
KEYWORDS = ["model", "param", "input", "compartment", "state", "let", "reaction", "der", "neural", "observe", "in",
            "fixed", "positive", "keep", "hidden", "activation", "and", "or", "not", "if"]
NAMES = ["A", "B", "S", "I", "k", "x", "u", "f", "r", "o", "t", "M", "exp", "min", "max", "hill", "log", "sqrt",
         "sigmoid", "softplus", "tanh", "relu", "_z9", "paramz"]
NUMBERS = ["0", "1", "2", "0.5", ".5", "3.", "1e3", "1e-3", "1e999", "2E+2", "1.2.3", "007", "32"]
PUNCTUATION = ["+", "-", "*", "/", "^", "**", "(", ")", ",", ":", ";", "->", "<->", "=", "==", "<", "<=", ">",
               ">=", "!=", '"doc"', '"', "#comment", "$", "@", "\t", "\r\n"]
TOKEN = st.sampled_from(KEYWORDS + NAMES + NUMBERS + PUNCTUATION + ["\n"] * 6)


@st.composite
def token_soups(draw):
    tokens = draw(st.lists(TOKEN, max_size=40))
    separators = draw(st.lists(st.sampled_from([" ", " ", "", "\n"]), min_size=len(tokens), max_size=len(tokens)))
    text = "".join(t + s for t, s in zip(tokens, separators))
    if draw(st.booleans()):
        text = "model M\n" + text
    return text


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token_soups())
def test_token_soup(text):
    check_compiles_or_fails_cleanly(text)


LINE_TOKEN = TOKEN.filter(lambda t: "\n" not in t)  # one strategy (validated once), not one per draw


@st.composite
def statement_soups(draw):
    """Lines that start with a statement keyword followed by a soup: more of them get past the first token."""
    lines = ["model M"]
    for _ in range(draw(st.integers(0, 6))):
        keyword = draw(st.sampled_from(KEYWORDS[1:10]))
        rest = draw(st.lists(LINE_TOKEN, max_size=10))
        lines.append(" ".join([keyword, *rest]))
    return "\n".join(lines) + "\n"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(statement_soups())
def test_statement_soup(text):
    check_compiles_or_fails_cleanly(text)


# ---------------------------------------------------------------- (b) edits of valid specs
_TOKENS = re.compile(r"\s+|[A-Za-z_]\w*|\d+\.?\d*(?:[eE][+-]?\d+)?|<->|->|\*\*|<=|>=|==|!=|\"[^\"\n]*\"|#[^\n]*|.")


def _pieces(text: str, unit: str) -> list:
    if unit == "char":
        return list(text)
    if unit == "line":
        return text.split("\n")
    return _TOKENS.findall(text)


def _join(pieces: list, unit: str) -> str:
    return "\n".join(pieces) if unit == "line" else "".join(pieces)


@st.composite
def edited_specs(draw):
    text = SPECS[draw(st.sampled_from(sorted(SPECS)))]
    for _ in range(draw(st.integers(1, 4))):
        unit = draw(st.sampled_from(["char", "token", "line"]))
        pieces = _pieces(text, unit)
        if not pieces:
            break
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "replace"]))
        i = draw(st.integers(0, len(pieces) - 1))
        j = draw(st.integers(0, len(pieces) - 1))
        if op == "delete":
            del pieces[i]
        elif op == "duplicate":
            pieces.insert(j, pieces[i])
        elif op == "swap":
            pieces[i], pieces[j] = pieces[j], pieces[i]
        else:  # replace with a token of the language
            pieces[i] = draw(TOKEN)
        text = _join(pieces, unit)
    return text


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_specs())
def test_edited_spec(text):
    check_compiles_or_fails_cleanly(text)


# ---------------------------------------------------------------- (c) well-formed statements over declared names
FUNCTIONS = {"exp": 1, "log": 1, "sqrt": 1, "abs": 1, "sin": 1, "cos": 1, "tanh": 1, "sigmoid": 1, "softplus": 1,
             "floor": 1, "ceil": 1, "min": 2, "max": 3, "hill": 3, "nf": 2}
LITERALS = ["0", "1", "2", "0.5", "1e-3", "100", "1e30"]


@functools.lru_cache(maxsize=None)  # each strategy built (and validated by hypothesis) once, not once per draw
def expressions(names: tuple, allow_neural=True, depth=3):
    leaves = st.sampled_from(list(names) + LITERALS)
    functions = {f: n for f, n in FUNCTIONS.items() if allow_neural or f != "nf"}

    def extend(inner):
        binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "^"]), inner).map(" ".join)
        calls = {f: st.lists(inner, min_size=n, max_size=n).map(lambda args, f=f: f"{f}({', '.join(args)})")
                 for f, n in functions.items()}
        call = st.sampled_from(sorted(functions)).flatmap(calls.__getitem__)
        condition = st.tuples(inner, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), inner,
                              st.sampled_from(["", " and A > 0", " or not 1 < 2"])).map(
            lambda c: f"{c[0]} {c[1]} {c[2]}{c[3]}")
        branch = st.tuples(condition, inner, inner).map(lambda c: f"if({c[0]}, {c[1]}, {c[2]})")
        return st.one_of(binary, call, branch, inner.map(lambda e: f"-({e})"))

    return st.recursive(leaves, extend, max_leaves=6)


@st.composite
def generated_models(draw):
    lines = ["model Gen", "param k = 0.5 positive", "param q = 2 in (0, 5)", "param z = -1 fixed", "input u",
             "state A = k + 1", "state B = 2", "neural nf(a, b) hidden 3"]
    static = ["k", "q", "z"]
    dynamic = static + ["A", "B", "u", "t"]
    lets = []
    for i in range(draw(st.integers(0, 2))):
        lines.append(f"let v{i} = {draw(expressions(tuple(dynamic + lets)))}")
        lets.append(f"v{i}")
    if draw(st.booleans()):
        lines.append(f"state C = {draw(expressions(tuple(static), allow_neural=False))}")
    names = tuple(dynamic + lets)
    if draw(st.booleans()):
        lines.append(f"reaction r: A -> 2 B ; {draw(expressions(names))}")
    if draw(st.booleans()):
        lines.append(f"reaction back: B <-> 0 ; {draw(expressions(names))} keep")
    lines.append(f"der A = {draw(expressions(names))}")
    if draw(st.booleans()):
        lines.append("neural res(A, keep u) -> B hidden 2")
    for i in range(draw(st.integers(0, 2))):
        lines.append(f"observe o{i} = {draw(expressions(names))}")
    return "\n".join(lines) + "\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_models())
def test_generated_model(text):
    check_compiles_or_fails_cleanly(text)


# ---------------------------------------------------------------- regressions found by fuzzing
H = "model M\nparam k = 0.5\nstate A = 1\n"


def _message(source: str) -> str:
    with pytest.raises(HodecError) as info:
        hodec.compile_source(source, "r.hode")
    return info.value.render().splitlines()[0]


REGRESSIONS = [
    # SymPy computed these powers exactly and never finished
    (H + "der A = 9^9^9\n", "r.hode:4:9: error: this constant expression is out of the range of double-precision "
                             "numbers (about 1e308)"),
    (H + "der A = 10^-100000000\n", "r.hode:4:9: error: this constant expression is out of the range of "
                                     "double-precision numbers (about 1e308)"),
    (H + "der A = hill(2, 3, 1e9)\n", "r.hode:4:9: error: this constant expression is out of the range of "
                                       "double-precision numbers (about 1e308)"),
    # RecursionError in the tree transformer and the passes after it
    (H + "der A = " + " + ".join(["A"] * 5000) + "\n",
     "r.hode:4:9: error: expression nested too deeply (more than 100 levels); split it into smaller parts with "
     "'let'"),
    (H + "der A = " + "- " * 3000 + "1\n",
     "r.hode:4:9: error: expression nested too deeply (more than 100 levels); split it into smaller parts with "
     "'let'"),
    # OverflowError from mpmath: tanh of exp(1e300)
    (H + "let r = tanh(exp(1e300))\n", "r.hode:4:14: error: this constant expression is out of the range of "
                                        "double-precision numbers (about 1e308)"),
    # ValueError 'zoo is not comparable' in Min
    (H + "observe g = min(1/0, sqrt(k))\n", "r.hode:4:17: error: division by zero"),
    (H + "der A = min(1/(A-A), 1)\n", "r.hode:4:13: error: this expression has no finite real value once "
                                      "simplified (like a division by zero or log(0))"),
    # TypeError 'Cannot convert complex to float' in code generation
    (H + "der A = log(0 * A)\n", "r.hode:4:9: error: this expression has no finite real value once simplified "
                                 "(like a division by zero or log(0))"),
    (H + "der A = sqrt(-1 + 0*A)\n", "r.hode:4:9: error: this expression has no finite real value once simplified "
                                     "(like a division by zero or log(0))"),
    (H + "der A = log(-1)\n", "r.hode:4:9: error: log(-1) is undefined in real numbers"),
    # TypeError 'Invalid comparison of non-real' in SymPy relationals
    (H + "der A = if(-1 >= log(-exp(A)), 1, 2)\n", "r.hode:4:18: error: this expression has no finite real value "
                                                   "once simplified (like a division by zero or log(0))"),
    (H + "let v = -1e-3\nobserve o = if(sqrt(v) >= t / 2, 1, 2)\n",
     "r.hode:5:16: error: sqrt(-0.001) is undefined in real numbers"),
    (H + "let v0 = 1\nlet v1 = log(min(v0, -0))\nobserve o0 = -if(100 >= v1, t, 0)\n",
     "r.hode:5:10: error: log(-0) is undefined in real numbers"),
    # ValueError 'nan is not comparable' once the observation Jacobian inlined a let that SymPy reduced to 0; a let
    # that folds to a number is now read as that number, so hill(0, 0, 1e30) is reported where it is written
    (H + "let v0 = k - k\nobserve o = max(-1, hill(-v0, 1 * v0, 1e30))\n",
     "r.hode:5:21: error: this expression has no finite real value once simplified (like a division by zero or "
     "log(0))"),
    # a keyword glued to a name was split: 'paramz = 1' declared a param 'z'
    (H + "paramz = 1\n", "r.hode:4:1: error: unknown statement keyword 'paramz'"),
]


@pytest.mark.parametrize("source, expected", REGRESSIONS, ids=[f"case{i}" for i in range(len(REGRESSIONS))])
def test_regression_clean_error(source, expected):
    assert _message(source) == expected


def _model(source: str, name: str):
    code = check_compiles_or_fails_cleanly(source)
    assert code is not None
    return load_source(code, f"hodec_fuzz_{name}")().double()


def test_regression_softplus_sigmoid_of_numbers():
    # ValueError 'softplus(0.5) is not comparable' (Max) and TypeError 'Cannot convert complex to float' (a
    # constant table): the custom SymPy functions had no numeric value
    m = _model(H + "state B = sigmoid(0) + softplus(0)\nstate C = max(softplus(1), 0.2)\n"
                   "observe g = softplus(floor(sin(sin(1e-3))))\n", "softplus")
    y0 = m.initial_state()
    assert y0.tolist() == pytest.approx([1.0, 0.5 + math.log(2.0), math.log1p(math.e)], rel=1e-12)


def test_regression_comparison_with_an_if_inside_a_condition():
    # TypeError 'expecting bool or Boolean, not Piecewise(...)': SymPy folds the inner if into ITE(c, a, b),
    # which the printer rewrote into a Piecewise of booleans that SymPy then failed to build
    import torch

    m = _model(H + "der A = if(if(k >= 1, if(t >= if(k >= 2, 100, A), 1, 0), 1) >= 1, 10, 20)\n", "ite")
    for k, t, a, expected in [(0.5, 0.0, 1.0, 10.0),  # k < 1: the inner if is 1
                              (1.5, 2.0, 1.0, 10.0), (1.5, 0.5, 1.0, 20.0),  # 1 <= k < 2: t >= A
                              (3.0, 150.0, 1.0, 10.0), (3.0, 50.0, 1.0, 20.0)]:  # k >= 2: t >= 100
        m.set_params({"k": k})
        dy = m(torch.tensor(t, dtype=torch.float64), torch.tensor([a], dtype=torch.float64))
        assert dy.reshape(-1).tolist() == [expected], (k, t, a)


def test_regression_abs_of_a_power_in_an_observable():
    # KeyError 'atan2' and 'Unsupported: re' in the printer: SymPy cannot tell that x^(1/3) or exp((-2)^x) is
    # real, so abs() and its derivative bring in atan2, re and im
    import torch

    m = _model(H + "observe o = abs(A^(1/3))\nobserve p = 2 * abs(sqrt(A))\nobserve q = abs(exp(hill(t, -2, A)))\n"
                   "der A = -abs(exp((-2)^A))\n", "abs")
    y = torch.tensor([[8.0], [2.0]], dtype=torch.float64)
    J = m.observation_jacobian(torch.zeros(2, dtype=torch.float64), y)
    assert J[0, 0, 0].item() == pytest.approx(8.0 ** (-2.0 / 3.0) / 3.0, rel=1e-12)
    assert J[1, 1, 0].item() == pytest.approx(2.0 ** -0.5, rel=1e-12)


def test_regression_byte_order_mark():
    # '\ufeff' (written by some editors) was an unexpected character at 1:1
    assert check_compiles_or_fails_cleanly("\ufeff" + H + "der A = -k * A\n") is not None
