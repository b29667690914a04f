"""Text → syntax tree: the Lark LALR parser, syntax-error recovery, and a Transformer building dataclass nodes."""
from __future__ import annotations

import functools
import math

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .. import resources
from ..errors import Diagnostic, HodecError, Span
from . import ast

MAX_SYNTAX_ERRORS = 20


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.read_text("grammars", "hode.lark")
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=True)


def parse(source: str, filename: str = "<spec>") -> ast.SpecFile:
    """Parse a whole file; every syntax error is reported (one per line), then HodecError is raised."""
    lines = source.split("\n")
    diagnostics: list[Diagnostic] = []
    while True:
        text = "\n".join(lines) + "\n"
        try:
            tree = _lark().parse(text)
            break
        except UnexpectedInput as err:
            diagnostics.append(_syntax_diagnostic(err, lines))
            line = min(max(err.line, 1), len(lines)) if err.line > 0 else len(lines)
            if len(diagnostics) >= MAX_SYNTAX_ERRORS or not lines[line - 1].strip():
                raise HodecError(diagnostics, filename, source) from None
            lines[line - 1] = ""  # drop the broken statement, keep numbering, look for more errors
    if diagnostics:
        raise HodecError(diagnostics, filename, source)
    try:
        statements = _ToAst().transform(tree)
    except VisitError as err:  # a node-level error (e.g. a number out of range) raised while building
        if isinstance(err.orig_exc, HodecError):
            raise HodecError(err.orig_exc.diagnostics, filename, source) from None
        raise
    return ast.SpecFile(statements, filename, source)


def _syntax_diagnostic(err: UnexpectedInput, lines: list[str]) -> Diagnostic:
    line = err.line if err.line > 0 else len(lines)
    column = err.column if err.column > 0 else len(lines[line - 1]) + 1
    if isinstance(err, UnexpectedCharacters):
        char = lines[line - 1][column - 1] if column - 1 < len(lines[line - 1]) else "?"
        return Diagnostic(f"unexpected character {char!r}", Span(line, column, line, column + 1))
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        tok = err.token
        what = "end of line" if tok.type == "_NL" else f"{str(tok)!r}"
        expected = _describe_expected(err.expected)
        end = column + max(1, len(str(tok))) if tok.type != "_NL" else column + 1
        return Diagnostic(f"unexpected {what}; expected {expected}", Span(line, column, line, end))
    expected = _describe_expected(getattr(err, "expected", set()) or set())
    return Diagnostic(f"unexpected end of file; expected {expected}", Span(line, column, line, column + 1))


_FRIENDLY = {"NAME": "a name", "NUMBER": "a number", "INT": "an integer", "STRING": "a string",
             "_NL": "end of line", "COMPARE": "a comparison", "ADD_OP": "'+' or '-'", "MUL_OP": "'*' or '/'",
             "POW_OP": "'^'", "ARROW": "'->' or '<->'", "STATE_KW": "'compartment' or 'state'",
             "KEEP": "'keep'", "MINUS": "'-'", "$END": "end of file"}


def _describe_expected(names) -> str:
    parser = _lark()
    words = set()
    for name in names:
        if name in _FRIENDLY:
            words.add(_FRIENDLY[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
            words.add(f"'{pattern.value}'" if pattern.type == "str" else name.lower())
        except KeyError:
            words.add(name.lower())
    ordered = sorted(words)
    if len(ordered) > 6:
        ordered = ordered[:6] + ["..."]
    return " or ".join(ordered) if ordered else "something else"


def _span(meta) -> Span:
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _tspan(tok: Token) -> Span:
    return Span(tok.line, tok.column, tok.end_line, tok.end_column)


def _number(tok: Token, negative: bool = False) -> ast.Num:
    value = float(tok)
    if math.isinf(value):
        raise HodecError([Diagnostic(f"number {str(tok)!r} is out of range", _tspan(tok))])
    return ast.Num(-value if negative else value, ("-" if negative else "") + str(tok), _tspan(tok))


def _string(tok):
    return None if tok is None else str(tok)[1:-1]


def _tokens(children, kind=None):
    return [c for c in children if isinstance(c, Token) and (kind is None or c.type == kind)]


@v_args(meta=True)
class _ToAst(Transformer):
    """Builds ast nodes; each method gets the rule's meta (positions) and its children."""

    def start(self, meta, children):
        return [c for c in children if c is not None]

    # ---- statements
    def model_decl(self, meta, c):
        return ast.ModelDecl(self._name(c[0]), _string(c[1]), _span(meta))

    def param_decl(self, meta, c):
        name, value, option, doc = c
        kind, bounds = ("free", None) if option is None else option
        return ast.ParamDecl(self._name(name), value, kind, bounds, _string(doc), _span(meta))

    def bounds(self, meta, c):
        return ("bounded", (c[0], c[1]))

    def fixed(self, meta, c):
        return ("fixed", None)

    def positive(self, meta, c):
        return ("positive", None)

    def signed_number(self, meta, c):
        minus, number = c
        return _number(number, negative=minus is not None)

    def input_decl(self, meta, c):
        return ast.InputDecl(self._name(c[0]), _string(c[1]), _span(meta))

    def state_decl(self, meta, c):
        _, name, initial, doc = c
        return ast.StateDecl(self._name(name), initial, _string(doc), _span(meta))

    def let_decl(self, meta, c):
        return ast.LetDecl(self._name(c[0]), c[1], _span(meta))

    def reaction_decl(self, meta, c):
        name, left, arrow, right, rate, keep = c
        return ast.ReactionDecl(self._name(name), tuple(left), tuple(right), str(arrow) == "<->", rate,
                                keep is not None, _span(meta))

    def side(self, meta, c):
        return [s for s in c if s is not None]

    def zero_side(self, meta, c):
        if float(c[0]) != 0.0:
            raise HodecError([Diagnostic("a reaction side is species or 0; a lone number must be 0",
                                         _tspan(c[0]))])
        return []

    def species(self, meta, c):
        coefficient, name = c
        return ast.Species(None if coefficient is None else _number(coefficient), self._name(name))

    def der_decl(self, meta, c):
        target, value, keep = c
        return ast.DerDecl(self._name(target), value, keep is not None, _span(meta))

    def neural_decl(self, meta, c):
        name, *rest = c
        args = tuple(a for a in rest if isinstance(a, ast.NeuralArg))
        outputs = next((o for o in rest if isinstance(o, tuple) and o and isinstance(o[0], ast.Name)), None)
        hidden = next((o[1] for o in rest if isinstance(o, tuple) and o and o[0] == "hidden"), None)
        activation = next((o[1] for o in rest if isinstance(o, tuple) and o and o[0] == "activation"), None)
        positive = any(o == ("positive", None) for o in rest)
        return ast.NeuralDecl(self._name(name), args, outputs, hidden, activation, positive, _span(meta))

    def neural_arg(self, meta, c):
        keep, name = c
        return ast.NeuralArg(self._name(name), keep is not None)

    def neural_outputs(self, meta, c):
        return tuple(self._name(t) for t in c)

    def hidden(self, meta, c):
        return ("hidden", tuple(int(t) for t in c))

    def activation(self, meta, c):
        return ("activation", self._name(c[0]))

    def observe_decl(self, meta, c):
        return ast.ObserveDecl(self._name(c[0]), c[1], _span(meta))

    # ---- expressions
    def number(self, meta, c):
        return _number(c[0])

    def name(self, meta, c):
        return self._name(c[0])

    def call(self, meta, c):
        func, *args = c
        return ast.Call(str(func), tuple(a for a in args if a is not None), _span(meta), _tspan(func))

    def if_(self, meta, c):
        return ast.If(c[0], c[1], c[2], _span(meta))

    def binary(self, meta, c):
        left, op, right = c
        return ast.Binary("^" if str(op) == "**" else str(op), left, right, _span(meta))

    def compare(self, meta, c):
        left, op, right = c
        return ast.Compare(str(op), left, right, _span(meta))

    def neg(self, meta, c):
        return ast.Neg([x for x in c if not isinstance(x, Token)][0], _span(meta))

    def and_(self, meta, c):
        return ast.Logic("and", c[0], c[1], _span(meta))

    def or_(self, meta, c):
        return ast.Logic("or", c[0], c[1], _span(meta))

    def not_(self, meta, c):
        return ast.Logic("not", c[0], None, _span(meta))

    @staticmethod
    def _name(tok) -> ast.Name:
        return tok if isinstance(tok, ast.Name) else ast.Name(str(tok), _tspan(tok))
