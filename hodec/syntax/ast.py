"""Syntax tree of a .hode file: plain dataclasses, every node with the source span it came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Optional, Union

from ..errors import Span


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Num:
    value: float
    text: str
    span: Span


@dataclass(frozen=True)
class Name:
    id: str
    span: Span


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple["Expr", ...]
    span: Span
    func_span: Span


@dataclass(frozen=True)
class Neg:
    operand: "Expr"
    span: Span


@dataclass(frozen=True)
class Binary:
    op: str  # + - * / ^
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Compare:
    op: str  # < <= > >= == !=
    left: "Expr"
    right: "Expr"
    span: Span


@dataclass(frozen=True)
class Logic:
    op: str  # and, or, not (not has right=None)
    left: "Expr"
    right: Optional["Expr"]
    span: Span


@dataclass(frozen=True)
class If:
    cond: "Expr"
    then: "Expr"
    orelse: "Expr"
    span: Span


Expr = Union[Num, Name, Call, Neg, Binary, Compare, Logic, If]


def children(e: Expr) -> tuple[Expr, ...]:
    if isinstance(e, Call):
        return e.args
    if isinstance(e, Neg):
        return (e.operand,)
    if isinstance(e, (Binary, Compare)):
        return (e.left, e.right)
    if isinstance(e, Logic):
        return (e.left,) if e.right is None else (e.left, e.right)
    if isinstance(e, If):
        return (e.cond, e.then, e.orelse)
    return ()


def walk(e: Expr) -> Iterator[Expr]:
    """Every node of an expression, parents before children."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))


def names_in(e: Expr) -> Iterator[Name]:
    return (n for n in walk(e) if isinstance(n, Name))


def calls_in(e: Expr) -> Iterator[Call]:
    return (n for n in walk(e) if isinstance(n, Call))


def reads_through_lets(exprs, lets: dict) -> set[str]:
    """The names and called functions the expressions read, directly or through the lets (name -> value
    expression) they reach; a let is included with what it reads. Cycles are followed once."""
    stack, read = list(exprs), set()
    while stack:
        for node in walk(stack.pop()):
            name = node.id if isinstance(node, Name) else node.func if isinstance(node, Call) else None
            if name is None or name in read:
                continue
            read.add(name)
            if name in lets:
                stack.append(lets[name])
    return read


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class ModelDecl:
    name: Name
    doc: Optional[str]
    span: Span


@dataclass(frozen=True)
class ParamDecl:
    name: Name
    value: Num
    kind: str  # free | fixed | positive | bounded
    bounds: Optional[tuple[Num, Num]]
    doc: Optional[str]
    span: Span


@dataclass(frozen=True)
class InputDecl:
    name: Name
    doc: Optional[str]
    span: Span


@dataclass(frozen=True)
class StateDecl:
    name: Name
    initial: Expr
    doc: Optional[str]
    span: Span
    size: Optional[Name] = None  # `in cell`: the state is a concentration in a compartment of that size


@dataclass(frozen=True)
class LetDecl:
    name: Name
    value: Expr
    span: Span


@dataclass(frozen=True)
class Species:
    coefficient: Optional[Num]
    name: Name


@dataclass(frozen=True)
class ReactionDecl:
    name: Name
    reactants: tuple[Species, ...]
    products: tuple[Species, ...]
    reversible: bool
    rate: Expr
    keep: bool
    span: Span


@dataclass(frozen=True)
class DerDecl:
    target: Name
    value: Expr
    keep: bool
    span: Span


@dataclass(frozen=True)
class NeuralArg:
    name: Name
    keep: bool


@dataclass(frozen=True)
class NeuralDecl:
    name: Name
    args: tuple[NeuralArg, ...]
    outputs: Optional[tuple[Name, ...]]  # None: a scalar function called in expressions
    hidden: Optional[tuple[int, ...]]
    activation: Optional[Name]
    positive: bool
    span: Span


@dataclass(frozen=True)
class Noise:
    """`~ normal(sigma)`: a noise distribution's name and its arguments, as written (checked by the model)."""

    distribution: Name
    args: tuple[Expr, ...]
    span: Span


@dataclass(frozen=True)
class ObserveDecl:
    name: Name
    value: Expr
    span: Span
    noise: Optional[Noise] = None


@dataclass(frozen=True)
class Assignment:
    """`x += e`, `x -= e` or `x = e` in an event."""

    target: Name
    op: str  # = += -=
    value: Expr
    span: Span


@dataclass(frozen=True)
class EventDecl:
    """`at t = e1, e2: assignments` (kind 'at', `times` set) or `when COND: assignments` (kind 'when', `trigger`
    set)."""

    kind: str  # at | when
    times: tuple[Expr, ...]
    trigger: Optional[Expr]
    assignments: tuple[Assignment, ...]
    span: Span


@dataclass(frozen=True)
class FunctionDecl:
    """`function f(x, K) = x / (K + x)`: inlined wherever it is called."""

    name: Name
    args: tuple[Name, ...]
    body: Expr
    span: Span


Statement = Union[ModelDecl, ParamDecl, InputDecl, StateDecl, LetDecl, ReactionDecl, DerDecl, NeuralDecl,
                  ObserveDecl, EventDecl, FunctionDecl]


@dataclass
class SpecFile:
    statements: list[Statement]
    filename: str
    source: str
    errors: list = field(default_factory=list)  # syntax-level diagnostics found while building nodes
