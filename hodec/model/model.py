"""The typed model: what a valid .hode file means, independent of SymPy and torch.

Expressions stay syntax-tree expressions (hodec.syntax.ast); every name in them is known to resolve.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import Span
from ..syntax.ast import Expr

BUILTINS = {  # name -> (min args, max args or None for unbounded)
    "exp": (1, 1), "log": (1, 1), "sqrt": (1, 1), "abs": (1, 1), "sin": (1, 1), "cos": (1, 1), "tan": (1, 1),
    "tanh": (1, 1), "sigmoid": (1, 1), "softplus": (1, 1), "floor": (1, 1), "ceil": (1, 1),
    "min": (2, None), "max": (2, None), "hill": (3, 3),
    # SBML's MathML functions that mean something for ODEs (see hodec.symbolic.expressions for each definition)
    "asin": (1, 1), "acos": (1, 1), "atan": (1, 1), "sinh": (1, 1), "cosh": (1, 1), "asinh": (1, 1),
    "acosh": (1, 1), "atanh": (1, 1), "sec": (1, 1), "csc": (1, 1), "cot": (1, 1), "sech": (1, 1), "csch": (1, 1),
    "coth": (1, 1), "asec": (1, 1), "acsc": (1, 1), "acot": (1, 1), "asech": (1, 1), "acsch": (1, 1),
    "acoth": (1, 1), "log10": (1, 1), "pow": (2, 2), "root": (2, 2), "factorial": (1, 1), "quotient": (2, 2),
    "rem": (2, 2), "piecewise": (1, None), "xor": (2, None), "implies": (2, 2),
}
CONDITION_FUNCTIONS = {"xor", "implies"}  # take conditions and give one (like and, or, not)
# Reserved: the words that start a statement or belong to expressions. The option keywords (in, fixed, positive,
# keep, hidden, activation) mean something only where the grammar expects an option, and are free as names.
KEYWORDS = {"model", "param", "input", "compartment", "state", "let", "reaction", "der", "neural", "observe",
            "at", "when", "function", "and", "or", "not", "if"}
RESERVED = KEYWORDS | set(BUILTINS) | {"t"}
# Names of neural slot activations; the runtime's table (hodec.runtime.neural.ACTIVATIONS) defines each one.
ACTIVATIONS = ("tanh", "sigmoid", "softplus", "relu", "relu6", "leaky_relu", "elu", "celu", "selu", "gelu",
               "gelu_tanh", "silu", "swish", "mish", "hardtanh", "hardswish", "hardsigmoid", "logsigmoid",
               "softsign", "tanhshrink", "hardshrink", "softshrink", "identity")
# Noise distributions of observables, each with its one argument (the scale sigma); the runtime's table
# (hodec.runtime.likelihood.LOG_DENSITIES) defines each one.
NOISE_DISTRIBUTIONS = ("normal", "laplace", "lognormal", "loglaplace")
DEFAULT_HIDDEN = (32,)
# Neural slot sizes a spec may ask for (beyond them, the model could not be allocated): each hidden width, and the
# weights and biases of all slots together (1e8: 400 MB in float32, before gradients and optimiser state).
MAX_HIDDEN_WIDTH = 65536
MAX_NEURAL_PARAMETERS = 100_000_000
TIME = "t"


@dataclass(frozen=True)
class Param:
    name: str
    value: float
    kind: str  # free | positive | bounded | fixed
    lower: Optional[float]
    upper: Optional[float]
    doc: Optional[str]
    span: Span


@dataclass(frozen=True)
class Input:
    name: str
    doc: Optional[str]
    span: Span


@dataclass(frozen=True)
class State:
    name: str
    initial: Expr  # may read params, lets and other states' initial values (no cycle)
    doc: Optional[str]
    span: Span
    size: Optional[str] = None  # a concentration in a compartment of this size (a param or a let of params)


@dataclass(frozen=True)
class Function:
    """`function f(x, K) = x / (K + x)`: the body reads its arguments and params; inlined where it is called."""

    name: str
    args: tuple[str, ...]
    body: Expr
    span: Span


@dataclass(frozen=True)
class Let:
    name: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Reaction:
    name: str
    reactants: tuple[tuple[str, float], ...]  # (state, coefficient), repeated species merged
    products: tuple[tuple[str, float], ...]
    rate: Expr
    reversible: bool
    keep: bool
    span: Span

    @property
    def stoichiometry(self) -> dict[str, float]:
        """Net change of each state per unit of rate: products minus reactants, zeros dropped."""
        net: dict[str, float] = {}
        for name, coefficient in self.reactants:
            net[name] = net.get(name, 0.0) - coefficient
        for name, coefficient in self.products:
            net[name] = net.get(name, 0.0) + coefficient
        return {name: c for name, c in net.items() if c != 0.0}


@dataclass(frozen=True)
class Der:
    """`der x = a + b - c`: the additive terms a, b, -c, each a separate flux into x."""

    target: str
    terms: tuple[Expr, ...]
    keep: bool
    span: Span


@dataclass(frozen=True)
class SlotArg:
    name: str
    keep: bool


@dataclass(frozen=True)
class Slot:
    """A neural slot: a residual (outputs added to states) or, without outputs, a learned scalar function."""

    name: str
    args: tuple[SlotArg, ...]
    outputs: Optional[tuple[str, ...]]
    hidden: tuple[int, ...]
    activation: str
    positive: bool
    span: Span

    @property
    def is_function(self) -> bool:
        return self.outputs is None

    @property
    def n_out(self) -> int:
        return 1 if self.outputs is None else len(self.outputs)


@dataclass(frozen=True)
class Noise:
    """`observe x = e ~ normal(sigma)`: the distribution of the data around the observable's value, and its scale
    (an expression of numbers, params, lets of those, and the observable's own name: its model value)."""

    distribution: str
    sigma: Expr
    span: Span


@dataclass(frozen=True)
class Observable:
    name: str
    value: Expr
    span: Span
    noise: Optional[Noise] = None


@dataclass(frozen=True)
class Assignment:
    """One assignment of an event: `target op value`, op one of = += -=."""

    target: str
    op: str
    value: Expr
    span: Span


@dataclass(frozen=True)
class Event:
    """`at t = e1, e2: ...` (kind 'at': `times`, expressions of params and numbers) or `when COND: ...` (kind
    'when': `trigger`, a condition). Its assignments are simultaneous: every value reads the state before the
    event. `text` is the statement as .hode text (unparsed: no comment), for tables and generated comments."""

    kind: str  # at | when
    times: tuple[Expr, ...]
    trigger: Optional[Expr]
    assignments: tuple[Assignment, ...]
    text: str
    span: Span

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(a.target for a in self.assignments)


@dataclass(frozen=True)
class Model:
    name: str
    doc: Optional[str]
    params: tuple[Param, ...]
    inputs: tuple[Input, ...]
    states: tuple[State, ...]
    lets: tuple[Let, ...]  # in dependency order
    reactions: tuple[Reaction, ...]
    ders: tuple[Der, ...]
    slots: tuple[Slot, ...]
    observables: tuple[Observable, ...]
    filename: str = "<spec>"
    events: tuple[Event, ...] = ()  # in spec order
    functions: tuple[Function, ...] = ()

    @property
    def event_params(self) -> tuple[str, ...]:
        """The params some event assigns, in declaration order: each becomes a state of the generated module."""
        assigned = {target for event in self.events for target in event.targets}
        return tuple(p.name for p in self.params if p.name in assigned)

    def kind_of(self, name: str) -> Optional[str]:
        return self._kinds().get(name)

    def _kinds(self) -> dict[str, str]:
        table = {TIME: "time"}
        for kind, items in (("param", self.params), ("input", self.inputs), ("state", self.states),
                            ("let", self.lets), ("reaction", self.reactions), ("slot", self.slots),
                            ("observable", self.observables)):
            table.update({item.name: kind for item in items})
        return table

    def slot(self, name: str) -> Slot:
        return next(s for s in self.slots if s.name == name)
