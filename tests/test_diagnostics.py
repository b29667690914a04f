"""Golden diagnostics: each bad spec, its exact first error line, the caret under the offending token, the hints.

Every expected line was read from the compiler and checked by hand for a correct message and location (the
column of the token at fault). The CLI must turn each into exit code 1 without a Python traceback.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hodec
from hodec import HodecError
from hodec.cli import main
from hodec.model.model import ACTIVATIONS

REPO = Path(__file__).resolve().parents[1]

# Lines 1-4 of most cases; the error is then on line 5 or later.
H = "model M\nparam k = 0.5\nstate A = 1\nstate B = 0\n"

# (id, source, first line of the rendered error for a file named spec.hode)
CASES = [
    # ---- syntax
    ("missing-rate", H + "reaction r: A -> B ;\n",
     "spec.hode:5:21: error: unexpected end of line; expected an expression"),
    ("missing-semicolon", H + "reaction r: A -> B k * A\n",
     "spec.hode:5:20: error: unexpected 'k'; expected '+' or ';'"),
    ("bad-token", H + "der A = k * * A\n",
     "spec.hode:5:13: error: unexpected '*'; expected an expression"),
    ("unclosed-paren", H + "der A = (k * A\n",
     "spec.hode:5:15: error: unexpected end of line; expected ')'"),
    ("stray-character", H + "der A = k $ A\n",
     "spec.hode:5:11: error: unexpected character '$'"),
    ("bad-number-two-dots", H + "param q = 1.2.3\n",
     "spec.hode:5:11: error: malformed number '1.2.3'"),
    ("bad-number-exponent", H + "der A = 1e\n",
     "spec.hode:5:9: error: malformed number '1e'"),
    ("plus-at-end-of-line", H + "der A = 1 +\n",
     "spec.hode:5:12: error: unexpected end of line; expected an expression"),
    ("plus-at-end-of-file", H + "der A = 1 +",
     "spec.hode:5:12: error: unexpected end of line; expected an expression"),
    ("missing-equals", H + "let v k * A\n",
     "spec.hode:5:7: error: unexpected 'k'; expected '='"),
    ("unknown-statement", H + "variable q = 1\n",
     "spec.hode:5:1: error: unknown statement keyword 'variable'"),
    ("keyword-prefix-is-not-a-keyword", H + "paramz q = 1\n",
     "spec.hode:5:1: error: unknown statement keyword 'paramz'"),
    ("glued-keyword-would-declare-z", H + "paramz = 1\n",
     "spec.hode:5:1: error: unknown statement keyword 'paramz'"),
    ("unterminated-string", 'model M "doc\n',
     "spec.hode:1:9: error: unterminated string (a string ends with '\"' on the same line)"),
    ("chained-comparison", H + "der A = if(A < 1 < 2, 1, 2)\n",
     "spec.hode:5:18: error: comparisons cannot be chained; write e.g. 'a < b and b < c'"),
    ("param-value-is-an-expression", "model M\nparam k = 2 * 3\n",
     "spec.hode:2:13: error: unexpected '*'; expected 'fixed' or 'in' or 'positive' or a string or end of line"),
    ("negative-hidden-width", H + "neural f(x) hidden -3\n",
     "spec.hode:5:20: error: unexpected '-'; expected an integer"),
    ("tab-counts-one-column", "model M\n\tparam k = $\n",
     "spec.hode:2:12: error: unexpected character '$'"),
    ("crlf-line-endings", "model M\r\nparam k = $\r\n",
     "spec.hode:2:11: error: unexpected character '$'"),
    ("number-overflow", H + "der A = 1e999\n",
     "spec.hode:5:9: error: number '1e999' is out of range"),
    ("number-overflow-param", "model M\nparam k = 1e999\n",
     "spec.hode:2:11: error: number '1e999' is out of range"),
    ("lone-number-side", H + "reaction r: 2 -> A ; k\n",
     "spec.hode:5:13: error: a reaction side is species or 0; a lone number must be 0"),
    # ---- names
    ("undefined-name", "model M\nparam gamma = 0.1\nstate I = 1\nder I = -gama * I\n",
     "spec.hode:4:10: error: undefined name 'gama'"),
    ("param-vs-state", H + "state k = 1\n",
     "spec.hode:5:7: error: 'k' is already declared (as a param on line 2)"),
    ("observe-S-equals-S", H + "observe A = A\n",
     "spec.hode:5:9: error: 'A' is already declared (as a state on line 3)"),
    ("duplicate-reaction", H + "reaction r: A -> B ; k\nreaction r: B -> A ; k\n",
     "spec.hode:6:10: error: 'r' is already declared (as a reaction on line 5)"),
    ("reserved-if", H + "param if = 1\n",
     "spec.hode:5:7: error: 'if' is reserved and cannot be used as a name"),
    ("reserved-t", H + "state t = 0\n",
     "spec.hode:5:7: error: 't' is reserved and cannot be used as a name"),
    ("reserved-exp", H + "let exp = 1\n",
     "spec.hode:5:5: error: 'exp' is reserved and cannot be used as a name"),
    ("reserved-keyword", H + "param model = 1\n",
     "spec.hode:5:7: error: 'model' is reserved and cannot be used as a name"),
    ("unknown-function", H + "der A = -exq(A)\n",
     "spec.hode:5:10: error: unknown function 'exq'"),
    ("missing-model", "param k = 1\n",
     "spec.hode:1:1: error: missing 'model NAME' statement"),
    ("two-models", "model M\nmodel N\n",
     "spec.hode:2:1: error: second 'model' statement (the model is already named 'M')"),
    # ---- arity and kinds of names
    ("min-one-argument", H + "der A = min(A)\n",
     "spec.hode:5:9: error: 'min' takes at least 2 arguments, got 1"),
    ("hill-two-arguments", H + "der A = hill(A, k)\n",
     "spec.hode:5:9: error: 'hill' takes 3 arguments, got 2"),
    ("exp-two-arguments", H + "der A = exp(A, k)\n",
     "spec.hode:5:9: error: 'exp' takes 1 argument, got 2"),
    ("neural-function-arity", H + "neural f(x) hidden 4\nder A = f(A, B)\n",
     "spec.hode:6:9: error: 'f' takes 1 argument, got 2"),
    ("call-residual-slot", H + "neural r(A) -> A\nder B = r(A)\n",
     "spec.hode:6:9: error: 'r' is a residual slot (it adds to states) and cannot be called; "
     "declare it without '->' to call it"),
    ("call-a-param", H + "der A = k(A)\n",
     "spec.hode:5:9: error: 'k' is a param, not a function"),
    ("reaction-as-value", H + "reaction r: A -> B ; k * A\nobserve o = r\n",
     "spec.hode:6:13: error: 'r' is a reaction, not a value that can be used in an expression"),
    ("observable-as-value", H + "observe o = A\nobserve p = o * 2\n",
     "spec.hode:6:13: error: 'o' is an observable, not a value that can be used in an expression"),
    ("neural-function-as-value", H + "neural f(x)\nder A = f\n",
     "spec.hode:6:9: error: 'f' is a neural slot, not a value that can be used in an expression"),
    # ---- types
    ("boolean-where-number", H + "der A = A > 1\n",
     "spec.hode:5:9: error: expected a number here, found a condition (comparison, and, or, not)"),
    ("number-as-condition", H + "der A = if(A, 1, 2)\n",
     "spec.hode:5:12: error: expected a condition here, found a number"),
    # ---- values
    ("positive-zero", "model M\nparam k = 0 positive\n",
     "spec.hode:2:11: error: positive param 'k' needs a value > 0, got 0"),
    ("positive-negative", "model M\nparam k = -1 positive\n",
     "spec.hode:2:11: error: positive param 'k' needs a value > 0, got -1"),
    ("outside-bounds", "model M\nparam k = 3 in (0, 2)\n",
     "spec.hode:2:11: error: value 3 of 'k' is not strictly inside (0, 2)"),
    ("on-the-bound", "model M\nparam k = 2 in (0, 2)\n",
     "spec.hode:2:11: error: value 2 of 'k' is not strictly inside (0, 2)"),
    ("empty-bounds", "model M\nparam k = 1 in (2, 0)\n",
     "spec.hode:2:17: error: empty bounds (2, 0) for 'k': lower must be < upper"),
    ("unknown-activation", H + "neural f(x) activation tanhh\n",
     "spec.hode:5:24: error: unknown activation 'tanhh' (one of " + ", ".join(ACTIVATIONS) + ")"),
    # ---- neural sizes (issue 14: accepted, then forward could not allocate)
    ("hidden-too-wide", H + "neural f(A) -> A hidden 1000000000\n",
     "spec.hode:5:1: error: hidden layer widths of 'f' must be at most 65536"),
    ("neural-too-many-weights", H + "neural f(A) -> A hidden 60000 60000\n",
     "spec.hode:5:1: error: neural slots up to 'f' have 3,600,240,001 weights, more than the limit of 100,000,000"),
    # 36,024,001 + 36,024,001 + 36,030,001 weights and biases (1 or 2 inputs -> 6000 -> 6000 -> 1)
    ("neural-weights-summed-over-slots", H + "neural f(A) -> A hidden 6000 6000\nneural g(B) -> B hidden 6000 6000\n"
     "neural h(A, B) hidden 6000 6000\n",
     "spec.hode:7:1: error: neural slots up to 'h' have 108,078,003 weights, more than the limit of 100,000,000"),
    ("hidden-not-an-integer", H + "neural f(A) -> A hidden 1e20\n",
     "spec.hode:5:25: error: malformed number '1e20'"),
    ("constant-power-overflow", H + "der A = 9^9^9\n",
     "spec.hode:5:9: error: this constant expression is out of the range of double-precision numbers (about 1e308)"),
    ("constant-division-by-zero", H + "der A = A / 0\n",
     "spec.hode:5:9: error: division by zero"),
    ("constant-outside-domain", H + "let v = -1\nder A = sqrt(v)\n",
     "spec.hode:6:9: error: sqrt(-1) is undefined in real numbers"),
    ("simplifies-to-log-zero", H + "der A = 2 * log(0 * A)\n",
     "spec.hode:5:13: error: this expression has no finite real value once simplified "
     "(like a division by zero or log(0))"),
    ("nested-too-deeply", H + "der A = " + " + ".join(["A"] * 150) + "\n",
     "spec.hode:5:9: error: expression nested too deeply (more than 100 levels); "
     "split it into smaller parts with 'let'"),
    # ---- structure
    ("neural-arg-not-state-input-t", H + "neural r(A, k) -> A\n",
     "spec.hode:5:13: error: a residual slot argument must be a state, an input or t; 'k' is a param"),
    ("neural-output-not-state", H + "neural r(A) -> k\n",
     "spec.hode:5:16: error: a residual slot output must be a state; 'k' is a param"),
    ("neural-repeated-argument", H + "neural r(A, A) -> A\n",
     "spec.hode:5:13: error: repeated argument 'A'"),
    ("neural-no-arguments", H + "neural f()\n",
     "spec.hode:5:8: error: neural slot 'f' needs at least one argument"),
    ("der-of-param", H + "der k = 1\n",
     "spec.hode:5:5: error: the target of 'der' must be a state; 'k' is a param"),
    ("der-of-input", H + "input u\nder u = 1\n",
     "spec.hode:6:5: error: the target of 'der' must be a state; 'u' is an input"),
    ("two-ders", H + "der A = 1\nder A = 2\n",
     "spec.hode:6:5: error: second 'der' for 'A' (first on line 5); write one equation with all terms"),
    ("reaction-both-sides-empty", H + "reaction r: -> ; k\n",
     "spec.hode:5:10: error: reaction 'r' has no reactants and no products"),
    ("reaction-zero-to-zero", H + "reaction r: 0 -> 0 ; k\n",
     "spec.hode:5:10: error: reaction 'r' has no reactants and no products"),
    ("coefficient-of-a-param", H + "param P = 1\nreaction r: A -> 2 P ; k\n",
     "spec.hode:6:20: error: a reaction species must be a state; 'P' is a param"),
    ("zero-coefficient", H + "reaction r: 0 A -> B ; k\n",
     "spec.hode:5:13: error: the coefficient of 'A' must be positive, got 0"),
    ("initial-cycle", H + "state C = 2 * D\nstate D = C\n",
     "spec.hode:5:11: error: initial values refer to each other in a cycle: C -> D -> C"),
    ("initial-uses-input", H + "input u\nstate C = u\n",
     "spec.hode:6:11: error: an initial value is an expression of params and states (their initial values); 'u' is "
     "an input"),
    ("initial-uses-t", H + "state C = t\n",
     "spec.hode:5:11: error: an initial value is an expression of params and states (their initial values); 't' is "
     "the time"),
    ("initial-calls-neural", H + "neural f(x)\nstate C = f(k)\n",
     "spec.hode:6:11: error: an initial value cannot call a neural slot"),
    ("initial-uses-dynamic-let", H + "input u\nlet v = A * u\nstate C = v\n",
     "spec.hode:7:11: error: let 'v' depends on inputs, t or neural slots, so it cannot be used in an initial "
     "value"),
    # ---- initial values finite with the params' values (issue 14)
    ("initial-divides-by-zero-param", "model M\nparam z = 0\nstate x = 1/z\n",
     "spec.hode:3:11: error: the initial value of 'x' is not a finite number with the params at their values (z = 0)"),
    ("initial-overflows", "model M\nparam z = 800\nlet w = exp(z)\nstate x = 2 * w\n",
     "spec.hode:4:11: error: the initial value of 'x' is not a finite number with the params at their values"),
    ("initial-log-of-zero-param", "model M\nparam z = 0\nstate x = log(z) + 1\n",
     "spec.hode:3:11: error: the initial value of 'x' is not a finite number with the params at their values (z = 0)"),
    ("let-cycle", H + "let a = b\nlet b = a\n",
     "spec.hode:5:5: error: lets refer to each other in a cycle: a -> b -> a"),
]

# (id, source, the hint line under the excerpt)
HINTS = [
    ("gama", "model M\nparam gamma = 0.1\nstate I = 1\nder I = -gama * I\n", "  did you mean 'gamma'?"),
    ("exq", H + "der A = -exq(A)\n", "  did you mean 'exp'?"),
    ("tanhh", H + "neural f(x) activation tanhh\n", "  did you mean 'tanh'?"),
    ("paramz", H + "paramz q = 1\n", "  did you mean 'param'?"),
    ("variable", H + "variable q = 1\n",
     "  a statement starts with model, param, input, compartment, state, let, reaction, der, neural, observe, at, "
     "when or function"),
    ("output Bb", H + "neural r(A) -> Bb\n", "  did you mean 'B'?"),
    ("neural value", H + "neural f(x)\nder A = f\n", "  call it: f(x)"),
    ("missing model", "param k = 1\n", "  start the file with e.g. 'model MyModel'"),
    ("condition", H + "der A = A > 1\n", "  conditions are only allowed as the first argument of if(...), the even "
                  "arguments of piecewise(...) and after 'when'"),
]

_POSITION = re.compile(r"^spec\.hode:(\d+):(\d+): error: ")


def _error(source: str) -> HodecError:
    with pytest.raises(HodecError) as info:
        hodec.compile_source(source, "spec.hode")
    return info.value


def test_the_table_is_large_and_unique():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("source, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_first_error_line(source, expected):
    err = _error(source)
    rendered = err.render().splitlines()
    assert rendered[0] == expected
    # the caret under the source line starts at the reported column
    line, column = map(int, _POSITION.match(rendered[0]).groups())
    source_line = source.split("\n")[line - 1].rstrip("\r").replace("\t", " ")
    if source_line.strip():
        assert rendered[1] == "    " + source_line
        assert rendered[2].index("^") == 4 + column - 1
    # no Python-internal wording leaks into a user message
    text = err.render()
    for word in ("Token(", "Tree(", "_NL", "$END", "__ANON", "LPAR", "Traceback", "lark", "sympy", "zoo"):
        assert word not in text, word


@pytest.mark.parametrize("source, hint", [h[1:] for h in HINTS], ids=[h[0] for h in HINTS])
def test_hint_line(source, hint):
    assert _error(source).render().splitlines()[-1] == hint


def test_full_rendering_of_one_error():
    assert _error("model M\nparam gamma = 0.1\nstate I = 1\nder I = -gama * I\n").render() == (
        "spec.hode:4:10: error: undefined name 'gama'\n"
        "    der I = -gama * I\n"
        "             ^^^^\n"
        "  did you mean 'gamma'?")


def test_several_semantic_errors_are_all_reported_in_line_order():
    source = ("model M\n"
              "param k = 0 positive\n"  # 2: positive param <= 0
              "state A = 1\n"
              "der A = -kk * A\n"  # 4: undefined name
              "der Q = 1\n"  # 5: der of undefined
              "observe o = exp(A, k)\n"  # 6: arity
              "let exp = 2\n")  # 7: reserved
    err = _error(source)
    heads = [line for line in err.render().splitlines() if ": error: " in line]
    assert len(err.diagnostics) == len(heads) == 5
    assert [int(_POSITION.match(h).group(1)) for h in heads] == [2, 4, 5, 6, 7]
    assert heads[1] == "spec.hode:4:10: error: undefined name 'kk'"
    assert heads[4] == "spec.hode:7:5: error: 'exp' is reserved and cannot be used as a name"


def test_several_syntax_errors_are_all_reported_one_per_line():
    source = ("model M\n"
              "param k = = 1\n"
              "state A = 1\n"
              "der A = (k\n"
              "der A = k $ 1\n"
              "observe o = 1 +\n")
    err = _error(source)
    heads = [line for line in err.render().splitlines() if ": error: " in line]
    assert heads == [
        "spec.hode:2:11: error: unexpected '='; expected '-' or a number",
        "spec.hode:4:11: error: unexpected end of line; expected ')'",
        "spec.hode:5:11: error: unexpected character '$'",
        "spec.hode:6:16: error: unexpected end of line; expected an expression",
    ]


def test_number_errors_are_all_reported():
    err = _error("model M\nparam q = 1e999\nstate A = 1\nreaction r: 2 -> A ; 1e999\n")
    assert [(d.span.line, d.span.column) for d in err.diagnostics] == [(2, 11), (4, 13), (4, 22)]


def test_glued_keyword_is_not_split():
    # 'paramz = 1' used to lex as 'param z = 1' and silently declare a param z; 'der Ax' is not 'der A x'
    assert _error("model M\nstate A = 1\nderA = 1\n").diagnostics[0].message == "unknown statement keyword 'derA'"
    err = _error(H + "reaction r: A -> B ; k keepx\n")
    assert err.render().splitlines()[0].startswith("spec.hode:5:24: error: unexpected 'keepx'")
    # while keywords that are names where a name is expected still parse (and are rejected as reserved)
    assert _error(H + "let not = 1\n").diagnostics[0].message == "'not' is reserved and cannot be used as a name"
    hodec.compile_source(H + "let notable = 1\nlet iffy = 2\nder A = if(not A > 1, notable, iffy)\n")


def test_byte_order_mark_is_accepted():
    hodec.compile_source("\ufeffmodel M\nstate A = 1\nder A = -A\n")


def test_excerpt_counts_lines_like_the_parser():
    # a form feed is whitespace in a line, not a line break: the excerpt must show the line the parser means
    err = _error("model M\nstate A = 1\x0c $\n")
    assert err.render().split("\n") == ["spec.hode:2:14: error: unexpected character '$'",
                                         "    state A = 1\x0c $",
                                         "                 ^"]


# ---------------------------------------------------------------- the command line
def _write(tmp_path, name, data) -> str:
    path = tmp_path / name
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)
    return str(path)


FILES = [  # (id, file contents or a special kind, the first line of stderr with {path} for the file)
    ("missing", None, "{path}: error: no such file: {path}"),
    ("directory", "dir", "{path}: error: is a directory, not a spec file: {path}"),
    ("non-utf8", b"model X\nparam k = \xff\n", "{path}:2:11: error: the file is not valid UTF-8 (byte 0xff)"),
    ("empty", "", "{path}:1:1: error: missing 'model NAME' statement"),
    ("only-comments", "# nothing\n# here\n", "{path}:1:1: error: missing 'model NAME' statement"),
    ("syntax", H + "der A = 1 +\n", "{path}:5:12: error: unexpected end of line; expected an expression"),
    ("semantic", H + "der A = -kk * A\n", "{path}:5:10: error: undefined name 'kk'"),
]


def _make(tmp_path, kind):
    if kind is None:
        return str(tmp_path / "missing.hode")
    if kind == "dir":
        (tmp_path / "adir.hode").mkdir()
        return str(tmp_path / "adir.hode")
    return _write(tmp_path, "spec.hode", kind)


@pytest.mark.parametrize("command", ["check", "compile"])
@pytest.mark.parametrize("kind, expected", [f[1:] for f in FILES], ids=[f[0] for f in FILES])
def test_cli_main_exit_code_and_message(tmp_path, capsys, command, kind, expected):
    path = _make(tmp_path, kind)
    assert main([command, path]) == 1
    out, err = capsys.readouterr()
    assert err.splitlines()[0] == expected.format(path=path)
    assert "Traceback" not in err and "Traceback" not in out
    assert not list(tmp_path.glob("*.py"))


@pytest.mark.parametrize("body, expected", [
    ("param z = 0\nstate x = 1/z\n", "3:11: error: the initial value of 'x' is not a finite number"),
    ("param k = 1e400\n", "2:11: error: number '1e400' is out of range"),
    ("state x = 1\nneural f(x) -> x hidden 100000\n", "3:1: error: hidden layer widths of 'f' must be at most"),
], ids=["initial-inf", "param-out-of-range", "hidden-too-wide"])
def test_cli_compile_refuses_non_finite_values_and_huge_slots(tmp_path, capsys, body, expected):
    path = _write(tmp_path, "spec.hode", "model M\n" + body)
    assert main(["compile", path, "-o", str(tmp_path / "out.py")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith(f"{path}:{expected}")
    assert not (tmp_path / "out.py").exists()


def test_cli_main_simulate_bad_spec(tmp_path, capsys):
    path = _write(tmp_path, "spec.hode", H + "der A = exp(A, k)\n")
    assert main(["simulate", path, "--t-end", "1", "--points", "3"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"{path}:5:9: error: 'exp' takes 1 argument, got 2"
    assert "Traceback" not in err


@pytest.mark.parametrize("kind, expected", [f[1:] for f in FILES], ids=[f[0] for f in FILES])
def test_cli_subprocess_exit_code_and_no_traceback(tmp_path, kind, expected):
    path = _make(tmp_path, kind)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("HODEC_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "hodec.cli", "check", path], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == expected.format(path=path)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_cli_reports_every_bad_spec_and_checks_the_good_ones(tmp_path, capsys):
    good = _write(tmp_path, "good.hode", "model G\nstate A = 1\nder A = -A\n")
    bad1 = _write(tmp_path, "bad1.hode", H + "der A = -kk * A\n")
    bad2 = _write(tmp_path, "bad2.hode", H + "der A = (A\n")
    assert main(["check", bad1, good, bad2]) == 1
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{good}: ok (1 states, 0 reactions, 0 params, 0 neural slots)"]
    heads = [line for line in err.splitlines() if ": error: " in line]
    assert heads == [f"{bad1}:5:10: error: undefined name 'kk'",
                     f"{bad2}:5:11: error: unexpected end of line; expected ')'"]
