"""hodec.syntax.unparse: syntax tree → .hode text, with parse(unparse(tree)) == tree up to spans."""
import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hodec.errors import Span
from hodec.syntax import ast
from hodec.syntax.parser import parse
from hodec.syntax.unparse import format_number, quote_doc, unparse, unparse_expr, unparse_statement

SPECS = sorted((Path(__file__).parent.parent / "specs").glob("*.hode"))
S = Span(1, 1, 1, 1)


def strip(node):
    """A syntax tree with every span replaced by None (so trees from different texts compare equal)."""
    if isinstance(node, Span):
        return None
    if isinstance(node, (list, tuple)):
        return type(node)(strip(x) for x in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return type(node)(**{f.name: strip(getattr(node, f.name)) for f in dataclasses.fields(node)
                             if f.name not in ("filename", "source", "errors")}) \
            if not isinstance(node, ast.SpecFile) else strip(node.statements)
    return node


def expr_of(text):
    return parse(f"model M\nlet q = {text}\n").statements[1].value


def round_trip(text):
    return unparse_expr(expr_of(text))


# ---------------------------------------------------------------- whole files
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_spec_round_trips(path):
    tree = parse(path.read_text(encoding="utf-8"), path.name)
    text = unparse(tree)
    again = parse(text, path.name)
    assert strip(again.statements) == strip(tree.statements)
    assert unparse(again) == text  # a fixed point


def test_layout_and_header():
    tree = parse("model M \"doc\"\nparam a = 1\nparam b = 2\nstate x = a\nder x = -b * x\nobserve o = x\n")
    assert unparse(tree, header=["made by\na test"]) == (
        "# made by a test\n\nmodel M \"doc\"\n\nparam a = 1\nparam b = 2\n\nstate x = a\n\nder x = -b * x\n\n"
        "observe o = x\n")


# ---------------------------------------------------------------- expressions
@pytest.mark.parametrize("text, expected", [
    ("a - (b - c)", "a - (b - c)"),
    ("(a - b) - c", "a - b - c"),
    ("a / (b * c)", "a / (b * c)"),
    ("(a / b) * c", "a / b * c"),
    ("-x^2", "-x^2"),
    ("-(x^2)", "-x^2"),
    ("(-x)^2", "(-x)^2"),
    ("a^b^c", "a^b^c"),
    ("(a^b)^c", "(a^b)^c"),
    ("a ** b", "a^b"),
    ("2^-3", "2^-3"),
    ("a * -b", "a * -b"),
    ("a - -b", "a - -b"),
    ("- -x", "- -x"),
    ("-(a + b) * c", "-(a + b) * c"),
    ("(-a) * c", "-a * c"),
    ("+x", "x"),
    ("((x))", "x"),
    ("if(a < b and not c >= d or e == f, (1 + 2), max(a, (b), c))",
     "if(a < b and not c >= d or e == f, 1 + 2, max(a, b, c))"),
    ("if((a < b) == (c < d), 1, 2)", "if((a < b) == (c < d), 1, 2)"),
    ("if(a or (b or c), 1, 2)", "if(a or (b or c), 1, 2)"),
    ("if((a or b) and c, 1, 2)", "if((a or b) and c, 1, 2)"),
    ("if(not (a and b), 1, 2)", "if(not (a and b), 1, 2)"),
    ("if(not not a, 1, 2)", "if(not not a, 1, 2)"),
    ("if(a + b < c * d, 1, 2)", "if(a + b < c * d, 1, 2)"),
    ("(a < b) + 1", "(a < b) + 1"),
    ("1.0e-5 + .5 + 2. + 3E+2", "1.0e-5 + .5 + 2. + 3E+2"),
    ("f()", "f()"),
    ("(if(a, b, c))^2", "if(a, b, c)^2"),
    ("(f(x))^2", "f(x)^2"),
])
def test_minimal_parentheses(text, expected):
    assert round_trip(text) == expected
    assert strip(expr_of(expected)) == strip(expr_of(text))


def test_numbers():
    assert format_number(ast.Num(0.5, ".5", S)) == ".5"
    assert format_number(ast.Num(2.0, "bad", S)) == "2"  # not a literal: printed from the value
    assert format_number(1e-20) == "1e-20" and format_number(3.0) == "3" and format_number(0.1) == "0.1"
    with pytest.raises(ValueError):
        format_number(float("inf"))
    # a negative number built by hand prints as a unary minus, with parentheses where one would need them
    x = ast.Name("x", S)
    assert unparse_expr(ast.Binary("^", ast.Num(-2.0, "-2", S), x, S)) == "(-2)^x"
    assert unparse_expr(ast.Binary("^", x, ast.Num(-2.0, "-2", S), S)) == "x^-2"
    assert unparse_expr(ast.Neg(ast.Num(-2.0, "-2", S), S)) == "- -2"


def test_deep_expressions_do_not_recurse():
    e = ast.Name("x", S)
    for _ in range(5000):
        e = ast.Binary("+", e, ast.Num(1.0, "1", S), S)
    assert unparse_expr(e) == "x" + " + 1" * 5000
    e = ast.Name("x", S)
    for _ in range(5000):
        e = ast.Binary("-", ast.Num(1.0, "1", S), e, S)
    assert unparse_expr(e).count("(") == 4999


def test_bad_nodes_are_rejected():
    with pytest.raises(ValueError, match="name"):
        unparse_expr(ast.Name("not a name", S))
    with pytest.raises(TypeError):
        unparse_expr("x")


# ---------------------------------------------------------------- statements
STATEMENTS = """\
model Kinds "a doc"
param a = -1.5 in (-2, 3e1) "bounded"
param b = 2 fixed
param c = 0.5 positive "pos"
param d = 1
input u "an input"
input v
state x = a * 2 "initial"
state y = 0
let w = u + x
reaction r1: x + 2 y <-> 3 x ; a * x keep
reaction r2: 0 -> x ; b
reaction r3: y -> 0 ; c * y
reaction r4: 2.5 x + y -> y ; d
der y = -y keep
der x = u
neural g(p, q)
neural h(keep x, u, t) -> x, y hidden 8 4 activation tanh positive
neural k(x) -> y
neural m(s) positive
observe o = g(x, y) + w
"""


def test_every_statement_kind():
    tree = parse(STATEMENTS)
    lines = [unparse_statement(s) for s in tree.statements]
    assert lines == [line for line in STATEMENTS.splitlines()]
    assert strip(parse(unparse(tree)).statements) == strip(tree.statements)


def test_compartment_is_printed_as_state():
    assert unparse_statement(parse("model M\ncompartment c = 1\n").statements[1]) == "state c = 1"


def test_doc_strings_are_quoted_safely():
    assert quote_doc('say "hi"\nnow') == "\"say 'hi' now\""
    stmt = ast.InputDecl(ast.Name("u", S), 'bad "doc"\r\nhere', S)
    text = unparse([ast.ModelDecl(ast.Name("M", S), None, S), stmt])
    assert parse(text).statements[1].doc == "bad 'doc' here"


# ---------------------------------------------------------------- random expressions
NAMES = ["a", "b", "x1", "_y", "Km", "notx", "iff"]


def numbers():
    return st.one_of(st.integers(0, 10**6).map(lambda i: ast.Num(float(i), str(i), S)),
                     st.floats(0, 1e12, allow_nan=False, allow_infinity=False)
                     .map(lambda f: ast.Num(f, repr(f), S)))


def expressions():
    leaves = st.one_of(numbers(), st.sampled_from(NAMES).map(lambda n: ast.Name(n, S)))

    def extend(inner):
        binary = st.tuples(st.sampled_from(["+", "-", "*", "/", "^"]), inner, inner) \
            .map(lambda t: ast.Binary(t[0], t[1], t[2], S))
        return st.one_of(  # operators listed more than once are drawn more often: precedence is the point
            binary, binary, binary, inner.map(lambda e: ast.Neg(e, S)), inner.map(lambda e: ast.Neg(e, S)),
            st.tuples(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), inner, inner)
            .map(lambda t: ast.Compare(t[0], t[1], t[2], S)),
            st.tuples(st.sampled_from(["and", "or"]), inner, inner).map(lambda t: ast.Logic(t[0], t[1], t[2], S)),
            inner.map(lambda e: ast.Logic("not", e, None, S)),
            st.tuples(inner, inner, inner).map(lambda t: ast.If(t[0], t[1], t[2], S)),
            st.tuples(st.sampled_from(["sin", "max", "hill", "f"]), st.lists(inner, min_size=0, max_size=3))
            .map(lambda t: ast.Call(t[0], tuple(t[1]), S, S)),
        )

    return st.recursive(leaves, extend, max_leaves=40)


def operators(depth=6):
    """Deep trees of operators only (no calls or ifs, whose arguments need no parentheses): the precedence test."""
    leaves = st.one_of(st.integers(0, 9).map(lambda i: ast.Num(float(i), str(i), S)),
                       st.sampled_from(["a", "b", "c"]).map(lambda n: ast.Name(n, S)))
    tree = leaves
    for _ in range(depth):
        inner = tree
        tree = st.one_of(
            leaves,
            st.tuples(st.sampled_from(["+", "-", "*", "/", "^"]), inner, inner)
            .map(lambda t: ast.Binary(t[0], t[1], t[2], S)),
            inner.map(lambda e: ast.Neg(e, S)),
            st.tuples(st.sampled_from(["<", "=="]), inner, inner).map(lambda t: ast.Compare(t[0], t[1], t[2], S)),
            st.tuples(st.sampled_from(["and", "or"]), inner, inner).map(lambda t: ast.Logic(t[0], t[1], t[2], S)),
            inner.map(lambda e: ast.Logic("not", e, None, S)),
        )
    return tree


@settings(max_examples=300, deadline=None)
@given(operators())
def test_random_operator_trees_round_trip(expr):
    text = unparse_expr(expr)
    assert strip(expr_of(text)) == strip(expr)


@settings(max_examples=200, deadline=None)
@given(expressions())
def test_random_expressions_round_trip(expr):
    text = unparse_expr(expr)
    assert strip(expr_of(text)) == strip(expr)
    assert unparse_expr(expr_of(text)) == text


def _evaluate(e, env):
    if isinstance(e, ast.Num):
        return e.value
    if isinstance(e, ast.Name):
        return env[e.id]
    if isinstance(e, ast.Neg):
        return -_evaluate(e.operand, env)
    left, right = _evaluate(e.left, env), _evaluate(e.right, env)
    return {"+": left + right, "-": left - right, "*": left * right}[e.op]


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.one_of(st.integers(0, 9).map(lambda i: ast.Num(float(i), str(i), S)),
                              st.sampled_from(["a", "b", "c"]).map(lambda n: ast.Name(n, S))),
                    lambda inner: st.one_of(inner.map(lambda e: ast.Neg(e, S)),
                                            st.tuples(st.sampled_from("+-*"), inner, inner)
                                            .map(lambda t: ast.Binary(t[0], t[1], t[2], S))),
                    max_leaves=20),
       st.fixed_dictionaries({n: st.integers(-50, 50) for n in "abc"}))
def test_random_arithmetic_has_the_same_value(expr, env):
    # integers: exact, so the value test is as strict as the structure test
    assert _evaluate(expr_of(unparse_expr(expr)), env) == _evaluate(expr, env)
