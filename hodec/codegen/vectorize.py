"""Vector emission: a list of SymPy expressions → code computing them as the columns of one tensor.

Expressions that share a shape (the same expression up to which states, inputs, params or slot outputs they
read, e.g. every `k * A * B` mass-action law) form a group, evaluated once over gathered operands, so the number
of tensor operations does not grow with the number of expressions. Pure numbers become one constant buffer;
whatever is left is straight-line, CSE'd code, stacked in chunks so no Python expression grows without bound.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from .printer import float_literal, print_expr

STACK_CHUNK = 64
GATHERED_KINDS = {"state": "-1", "input": "-1", "param": "0", "out": "-1"}


@dataclass
class Columns:
    """The result: `lines` to run, then `code` is a tensor whose column j holds expression `order[j]`."""

    lines: list
    code: str
    order: list


@dataclass
class Scope:
    """What one generated method can read, and what it has asked for so far."""

    leaves: dict  # Symbol -> Leaf
    scalar: dict  # Symbol -> code reading that one leaf (s_x, p_k, l_v, c_f_0, t)
    vectors: dict  # leaf kind (or 'out:<slot>') -> (code of the source vector, its length)
    batched: callable  # expr -> bool: whether it varies over the batch
    batch: str | None  # code of the batch shape; None where outputs are not batched
    like: str  # a tensor in scope for dtype/device
    tables: dict  # shared: buffer name -> tuple of ints (indices) or floats (constants)
    used: set = field(default_factory=set)  # leaf Symbols read
    gathered: set = field(default_factory=set)  # leaf kinds whose whole source vector is read (y, u, p, n_<slot>)
    varying: callable = lambda expr: True  # expr -> bool: whether it has batch or time axes (states, inputs, slots, t)
    temps: int = 0


def emit_columns(scope: Scope, exprs: list, label: str) -> Columns:
    constants, groups, singles = _partition(scope, exprs)
    parts, order, lines = [], [], []
    if constants:
        name = _table(scope, f"{label}_const", [float(exprs[i]) for i in constants])
        parts.append(_expand(scope, f"self.{name}", len(constants), batched=False))
        order += constants
    for gi, (template, slots, members) in enumerate(groups):
        parts.append(_group_code(scope, exprs, template, slots, members, f"{label}_g{gi}"))
        order += members
    if singles:
        code, more = _straight_line(scope, [exprs[i] for i in singles])
        lines += more
        parts.append(code)
        order += singles
    if not parts:
        return Columns(lines, f"{scope.like}.new_zeros({_shape(scope, 0)})", [])
    code = parts[0] if len(parts) == 1 else "torch.cat([\n    " + ",\n    ".join(parts) + ",\n], -1)"
    return Columns(lines, code, order)


# ---------------------------------------------------------------- grouping by shape
def shape_key(expr, leaves: dict, found: list):
    """A hashable description of the expression with each leaf replaced by its kind; leaves appended in order."""
    if expr in leaves:
        found.append(expr)
        leaf = leaves[expr]
        return ("leaf", leaf.kind, leaf.source)
    if not expr.args:
        return ("atom", type(expr).__name__, expr)
    return (expr.func, tuple(shape_key(a, leaves, found) for a in expr.args))


def _with_placeholders(expr, leaves: dict, placeholders: list):
    if expr in leaves:
        sym = sympy.Dummy(f"op{len(placeholders)}", real=True)
        placeholders.append(sym)
        return sym
    if not expr.args:
        return expr
    return expr.func(*(_with_placeholders(a, leaves, placeholders) for a in expr.args))


def _partition(scope: Scope, exprs: list):
    constants, by_key, singles = [], {}, []
    for i, expr in enumerate(exprs):
        if expr.is_number:
            constants.append(i)
            continue
        found: list = []
        key = shape_key(expr, scope.leaves, found)
        by_key.setdefault(key, []).append((i, found))
    groups = []
    for members in by_key.values():
        slots = list(zip(*(found for _, found in members)))
        # A group needs one operand that differs between members: that gathered operand gives the result its width.
        # Identical expressions (every operand shared) stay single and are shared by CSE instead.
        if len(members) > 1 and all(_gatherable(scope, column) for column in slots) \
                and any(len(set(column)) > 1 for column in slots):
            placeholders: list = []
            template = _with_placeholders(exprs[members[0][0]], scope.leaves, placeholders)
            groups.append((template, list(zip(placeholders, slots)), [i for i, _ in members]))
        else:
            singles += [i for i, _ in members]
    return constants, groups, sorted(singles)


def _gatherable(scope: Scope, column: tuple) -> bool:
    """An operand position can be vectorised if it reads one vector, or the same leaf in every member."""
    return len(set(column)) == 1 or _vector_key(scope.leaves[column[0]]) in scope.vectors


def _vector_key(leaf) -> str:
    return f"out:{leaf.source}" if leaf.kind == "out" else leaf.kind


def _group_code(scope: Scope, exprs, template, slots, members, label: str) -> str:
    names, batched = {}, False
    for k, (placeholder, column) in enumerate(slots):
        if len(set(column)) == 1:
            names[placeholder] = read(scope, column[0])
            if scope.varying(column[0]):  # [*batch] beside gathered [*batch, width]: add the axis (not to a number)
                names[placeholder] = f"{names[placeholder]}[..., None]"
            batched = batched or scope.batched(column[0])
        else:
            names[placeholder] = _gather(scope, column, f"{label}_{k}")
            batched = batched or scope.leaves[column[0]].kind != "param"
    code = print_expr(template, names, scope.like)
    return _expand(scope, code, len(members), batched)


def _gather(scope: Scope, column: tuple, name: str) -> str:
    leaf = scope.leaves[column[0]]
    vector, length = scope.vectors[_vector_key(leaf)]
    scope.gathered.add(leaf.kind)  # the method must define the vector (e.g. read the inputs u) before this
    idx = [scope.leaves[s].index for s in column]
    if idx == list(range(length)):
        return vector
    axis = GATHERED_KINDS[leaf.kind]
    prefix = "..., " if axis == "-1" else ""
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return f"{vector}[{prefix}{idx[0]}:{idx[-1] + 1}]"
    return f"{vector}.index_select({axis}, self.{_table(scope, name, idx)})"


# ---------------------------------------------------------------- straight-line code
def _straight_line(scope: Scope, exprs: list) -> tuple[str, list]:
    temps = sympy.numbered_symbols("tmp", cls=sympy.Dummy, real=True)
    replacements, reduced = sympy.cse(exprs, symbols=temps, order="none")
    names, lines = {}, []
    for sym, value in replacements:
        names[sym] = f"tmp{scope.temps}"
        scope.temps += 1
        lines.append(f"{names[sym]} = {print_expr(value, _reader(scope, names), scope.like)}")
    columns = []
    for original, expr in zip(exprs, reduced):
        code = print_expr(expr, _reader(scope, names), scope.like)
        columns.append(code if scope.batched(original) or scope.batch is None else f"({code}).expand({scope.batch})")
    chunks = [columns[i:i + STACK_CHUNK] for i in range(0, len(columns), STACK_CHUNK)]
    stacks = ["torch.stack([\n        " + ",\n        ".join(c) + ",\n    ], -1)" for c in chunks]
    return (stacks[0] if len(stacks) == 1 else "torch.cat([" + ", ".join(stacks) + "], -1)"), lines


class _reader(dict):
    """Symbol → code for the printer: CSE temporaries first, then leaves (recording each leaf read)."""

    def __init__(self, scope: Scope, temps: dict):
        super().__init__(temps)
        self.scope = scope

    def __missing__(self, sym):
        return read(self.scope, sym)


def read(scope: Scope, sym) -> str:
    scope.used.add(sym)
    return scope.scalar[sym]


def _expand(scope: Scope, code: str, width: int, batched: bool) -> str:
    if batched or scope.batch is None:
        return code
    return f"({code}).expand({_shape(scope, width)})"


def _shape(scope: Scope, width: int) -> str:
    return f"(*{scope.batch}, {width})" if scope.batch else f"({width},)"


def _table(scope: Scope, name: str, values: list) -> str:
    scope.tables[name] = tuple(values)
    return name


__all__ = ["Columns", "Scope", "emit_columns", "shape_key", "read", "float_literal"]
