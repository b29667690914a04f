"""Text → syntax tree: the Lark LALR parser, syntax-error recovery, and a Transformer building dataclass nodes."""
from __future__ import annotations

import functools
import math
import re

from lark import Lark, Token, Transformer, Tree, v_args
from lark.lexer import PatternRE
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError

from .. import resources
from ..errors import Diagnostic, HodecError, Span, did_you_mean
from . import ast

MAX_SYNTAX_ERRORS = 20
MAX_NESTING = 100  # expression nesting levels; the passes after parsing recurse over expressions


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WORD_ALTERNATIVES = re.compile(r"\(\?:[A-Za-z_][A-Za-z0-9_]*(?:\|[A-Za-z_][A-Za-z0-9_]*)*\)")
_KEYWORD_TEXT: dict[str, str] = {}  # keyword terminal -> how an error message names it, e.g. 'param'


def _whole_word_keywords(terminal):
    """Keywords match whole words only: 'paramz = 1' is not 'param z = 1', 'keepx' is not 'keep' then 'x'.

    The contextual lexer only offers the terminals its parser state accepts, so where a keyword is allowed and
    NAME is not it would otherwise match a keyword that is merely the start of a longer word.
    """
    pattern = terminal.pattern
    if terminal.name == "NAME":
        return terminal
    if pattern.type == "str" and _WORD.fullmatch(pattern.value):
        _KEYWORD_TEXT[terminal.name] = f"'{pattern.value}'"
        regex = re.escape(pattern.value)
    elif pattern.type == "re" and _WORD_ALTERNATIVES.fullmatch(pattern.value):
        regex = pattern.value
    else:
        return terminal
    terminal.pattern = PatternRE(regex + r"(?![A-Za-z0-9_])", pattern.flags)
    terminal.priority = max(terminal.priority, 1) + 1  # tried before NAME where both are allowed ('if', 'not')
    return terminal


@functools.lru_cache(maxsize=1)
def _lark() -> Lark:
    grammar = resources.read_text("grammars", "hode.lark")
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=True, edit_terminals=_whole_word_keywords)


def parse(source: str, filename: str = "<spec>") -> ast.SpecFile:
    """Parse a whole file; every syntax error is reported (one per line), then HodecError is raised."""
    if source.startswith("\ufeff"):  # a UTF-8 byte-order mark, as some editors write
        source = source[1:]
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
    too_deep = _too_deep(tree)
    if too_deep:
        raise HodecError(too_deep, filename, source)
    builder = _ToAst()
    try:
        statements = builder.transform(tree)
    except VisitError as err:  # a node-level error (e.g. a number out of range) raised while building
        if isinstance(err.orig_exc, HodecError):
            raise HodecError(err.orig_exc.diagnostics, filename, source) from None
        raise
    if builder.errors:  # every node-level error (numbers out of range, ...), before any semantic check
        raise HodecError(builder.errors, filename, source)
    return ast.SpecFile(statements, filename, source)


def _too_deep(tree) -> list[Diagnostic]:
    """One diagnostic per statement whose expression nests deeper than MAX_NESTING (found without recursion)."""
    found = []
    for statement in tree.children:
        stack = [(c, 1, c) for c in statement.children if isinstance(c, Tree)]
        while stack:
            node, depth, top = stack.pop()
            if depth > MAX_NESTING:  # located at the whole expression (a sum's deepest node is its first term)
                found.append(Diagnostic(f"expression nested too deeply (more than {MAX_NESTING} levels); "
                                        f"split it into smaller parts with 'let'", _span(top.meta)))
                break
            stack.extend((c, depth + 1, top) for c in node.children if isinstance(c, Tree))
    return found


def _syntax_diagnostic(err: UnexpectedInput, lines: list[str]) -> Diagnostic:
    line = err.line if err.line > 0 else len(lines)
    column = err.column if err.column > 0 else len(lines[line - 1]) + 1
    text = lines[line - 1]
    if isinstance(err, UnexpectedCharacters):
        char = text[column - 1] if column - 1 < len(text) else "?"
        if char == '"':
            return Diagnostic("unterminated string (a string ends with '\"' on the same line)",
                              Span(line, column, line, len(text.rstrip("\r")) + 1))
        return Diagnostic(f"unexpected character {char!r}", Span(line, column, line, column + 1))
    if isinstance(err, UnexpectedToken) and err.token.type != "$END":
        tok = err.token
        expected = set(getattr(err, "accepts", None) or err.expected)
        number = _malformed_number(text, column - 1)
        if number is not None:
            start, stop = number
            return Diagnostic(f"malformed number '{text[start:stop]}'", Span(line, start + 1, line, stop + 1))
        if expected & _STATEMENTS:
            return _bad_statement(tok, line, column)
        if tok.type == "COMPARE" and "AND" in expected:  # right after a complete comparison
            return Diagnostic("comparisons cannot be chained; write e.g. 'a < b and b < c'",
                              Span(line, column, line, column + len(str(tok))))
        what = "end of line" if tok.type == "_NL" else f"{str(tok)!r}"
        end = column + max(1, len(str(tok))) if tok.type != "_NL" else column + 1
        return Diagnostic(f"unexpected {what}; expected {_describe_expected(expected)}", Span(line, column, line, end))
    expected = _describe_expected(getattr(err, "expected", set()) or set())
    return Diagnostic(f"unexpected end of file; expected {expected}", Span(line, column, line, column + 1))


_STATEMENTS = {"MODEL", "PARAM", "INPUT", "STATE_KW", "LET", "REACTION", "DER", "NEURAL", "OBSERVE", "AT", "WHEN",
               "FUNCTION"}
_STATEMENT_WORDS = ("model", "param", "input", "compartment", "state", "let", "reaction", "der", "neural", "observe",
                    "at", "when", "function")


def _bad_statement(tok: Token, line: int, column: int) -> Diagnostic:
    """A line that does not start with a statement keyword."""
    listing = f"a statement starts with {', '.join(_STATEMENT_WORDS[:-1])} or {_STATEMENT_WORDS[-1]}"
    if tok.type == "NAME":
        hint = did_you_mean(str(tok), _STATEMENT_WORDS) or listing
        return Diagnostic(f"unknown statement keyword '{tok}'", Span(line, column, line, column + len(str(tok))),
                          hint)
    return Diagnostic(f"unexpected {str(tok)!r} at the start of a statement",
                      Span(line, column, line, column + max(1, len(str(tok)))), listing)


_NUMBER = re.compile(r"(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def _malformed_number(text: str, index: int):
    """(start, stop) of a word glued to a number, like '1.2.3', '1e' or '3k', when the bad token is its tail."""
    word = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
    start = index
    while start > 0 and text[start - 1] in word:
        start -= 1
    if start == index or index >= len(text) or text[index] not in word:
        return None
    if not _NUMBER.match(text, start):  # a name glued to something ('k.5') is not a number
        return None
    stop = index
    while stop < len(text) and text[stop] in word:
        stop += 1
    return start, stop


_FRIENDLY = {"NAME": "a name", "NUMBER": "a number", "INT": "an integer", "STRING": "a string",
             "_NL": "end of line", "COMPARE": "a comparison", "ADD_OP": "'+' or '-'", "MUL_OP": "'*' or '/'",
             "POW_OP": "'^'", "ARROW": "'->' or '<->'", "STATE_KW": "'compartment' or 'state'",
             "KEEP": "'keep'", "MINUS": "'-'", "$END": "end of file"}
_EXPRESSION_START = {"NAME", "NUMBER", "LPAR", "MINUS", "PLUS", "IF", "NOT"}
_OPERATORS = {"ADD_OP", "MUL_OP", "POW_OP", "COMPARE", "AND", "OR"}


def _describe_expected(names) -> str:
    names = set(names)
    words = []
    if {"NAME", "NUMBER", "LPAR"} <= names:  # everything an expression can start with
        words.append("an expression")
        names -= _EXPRESSION_START
    if len(names & _OPERATORS) >= 3:
        words.append("an operator")
        names -= _OPERATORS
    parser = _lark()
    rest = set()
    for name in names:
        if name in _FRIENDLY:
            rest.add(_FRIENDLY[name])
        elif name in _KEYWORD_TEXT:
            rest.add(_KEYWORD_TEXT[name])
        else:
            try:
                pattern = parser.get_terminal(name).pattern
                rest.add(f"'{pattern.value}'" if pattern.type == "str" else name.lower())
            except KeyError:
                rest.add(name.lower())
    ordered = words + sorted(rest, key=lambda w: (w in ("end of line", "end of file"), not w.startswith("'"), w))
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

    def __init__(self):
        super().__init__()
        self.errors: list[Diagnostic] = []

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
        num = self._number(number, negative=minus is not None)
        if minus is None:
            return num
        return ast.Num(num.value, num.text, Span(minus.line, minus.column, number.end_line, number.end_column))

    def input_decl(self, meta, c):
        return ast.InputDecl(self._name(c[0]), _string(c[1]), _span(meta))

    def state_decl(self, meta, c):
        _, name, initial, size, doc = c
        return ast.StateDecl(self._name(name), initial, _string(doc), _span(meta),
                             None if size is None else self._name(size))

    def function_decl(self, meta, c):
        name, *args, body = c
        return ast.FunctionDecl(self._name(name), tuple(self._name(a) for a in args if a is not None), body,
                                _span(meta))

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
            self.errors.append(Diagnostic("a reaction side is species or 0; a lone number must be 0",
                                          _tspan(c[0])))
        return []

    def species(self, meta, c):
        coefficient, name = c
        return ast.Species(None if coefficient is None else self._number(coefficient), self._name(name))

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
        if keep is not None and keep.value != "keep":
            self.errors.append(Diagnostic(f"unexpected '{name.value}'; expected ')' or ','", _tspan(name)))
        return ast.NeuralArg(self._name(name), keep is not None)

    def neural_outputs(self, meta, c):
        return tuple(self._name(t) for t in c)

    def hidden(self, meta, c):
        return ("hidden", tuple(int(t) for t in c))

    def activation(self, meta, c):
        return ("activation", self._name(c[0]))

    def observe_decl(self, meta, c):
        name, value, noise = c
        return ast.ObserveDecl(self._name(name), value, _span(meta), noise)

    def noise(self, meta, c):
        distribution, *args = c
        return ast.Noise(self._name(distribution), tuple(a for a in args if a is not None), _span(meta))

    def at_decl(self, meta, c):
        time, *rest = c
        if str(time) != "t":
            self.errors.append(Diagnostic(f"an 'at' event is written 'at t = TIME, ...'; found '{time}' instead of "
                                          f"'t'", _tspan(time)))
        times = tuple(x for x in rest if not isinstance(x, ast.Assignment))
        assignments = tuple(x for x in rest if isinstance(x, ast.Assignment))
        return ast.EventDecl("at", times, None, assignments, _span(meta))

    def when_decl(self, meta, c):
        trigger, *assignments = c
        return ast.EventDecl("when", (), trigger, tuple(assignments), _span(meta))

    def assignment(self, meta, c):
        target, op, value = c
        return ast.Assignment(self._name(target), str(op), value, _span(meta))

    # ---- expressions
    def number(self, meta, c):
        return self._number(c[0])

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

    def _number(self, tok: Token, negative: bool = False) -> ast.Num:
        try:
            return _number(tok, negative)
        except HodecError as err:  # recorded, so that every such error in the file is reported
            self.errors.extend(err.diagnostics)
            return ast.Num(1.0, str(tok), _tspan(tok))

    @staticmethod
    def _name(tok) -> ast.Name:
        return tok if isinstance(tok, ast.Name) else ast.Name(str(tok), _tspan(tok))
