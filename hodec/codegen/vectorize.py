"""Vector emission: a list of SymPy expressions → code computing them as the columns of one tensor.

Expressions that share a shape (the same expression up to which states, inputs, params or slot outputs they
read, e.g. every `k * A * B` mass-action law) form a group, evaluated once over gathered operands, so the number
of tensor operations does not grow with the number of expressions. Pure numbers become one constant buffer;
whatever is left is straight-line, CSE'd code, stacked in chunks so no Python expression grows without bound.

Every column is labelled in the generated code (Brian2-style, the abstract statement as a comment): a fused part
is preceded by one comment line per column it computes, `# <name>: <formula in the spec's names>`, and each
straight-line column ends in `# <name>`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy

from .printer import float_literal, print_expr

STACK_CHUNK = 64
# Params too are gathered along the last axis: p is [P], or [*batch, P] with per-sample params.
GATHERED_KINDS = {"state": "-1", "input": "-1", "param": "-1", "out": "-1", "slotgrad": "-1"}


@dataclass
class Columns:
    """The result: `lines` to run (comments naming the columns last), then `code` is a tensor whose column j
    holds expression `order[j]`."""

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
    gathered: set = field(default_factory=set)  # vector keys (see _vector_key) of the source vectors read as a whole
    varying: callable = lambda expr: True  # expr -> bool: whether it has batch or time axes (states, inputs, slots, t)
    describe: callable = str  # expr -> the formula in the spec's names, for comments
    temps: int = 0
    batch_used: bool = False  # whether code emitted so far reads the batch shape

    def batch_shape(self) -> str:
        """The code of the batch shape, noting that the method must define it."""
        self.batch_used = True
        return self.batch


def emit_columns(scope: Scope, exprs: list, label: str, names: list) -> Columns:
    """`names[i]` labels expression i in the comments (a flux, state or observable name)."""
    constants, groups, singles = _partition(scope, exprs)
    parts, order, lines = [], [], []  # parts: (comment lines, code)

    def notes(members):
        return [f"# {names[i]}: {scope.describe(exprs[i])}" for i in members]

    if constants:
        name = _table(scope, f"{label}_const", [float(exprs[i]) for i in constants])
        parts.append((notes(constants), _expand(scope, f"self.{name}", len(constants), batched=False)))
        order += constants
    for gi, group in enumerate(_merge_products(scope, groups)):
        if isinstance(group, dict):
            code, more = _product_code(scope, group, f"{label}_m{gi}")
            lines += more
            parts.append((notes(group["members"]), code))
            order += group["members"]
            continue
        template, slots, members = group
        parts.append((notes(members), _group_code(scope, exprs, template, slots, members, f"{label}_g{gi}")))
        order += members
    if singles:
        code, more = _straight_line(scope, [exprs[i] for i in singles], [names[i] for i in singles])
        lines += more
        parts.append(([], code))
        order += singles
    if not parts:
        return Columns(lines, f"{scope.like}.new_zeros({_shape(scope, 0)})", [])
    if len(parts) == 1:
        return Columns(lines + parts[0][0], parts[0][1], order)
    code = "".join("".join(f"\n    {note}" for note in comments) + f"\n    {part}," for comments, part in parts)
    return Columns(lines, f"torch.cat([{code}\n], -1)", order)


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
    return f"{leaf.kind}:{leaf.source}" if leaf.kind in ("out", "slotgrad") else leaf.kind


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
    scope.gathered.add(_vector_key(leaf))  # the method must define the vector (e.g. read the inputs u) before this
    idx = [scope.leaves[s].index for s in column]
    return _gather_indices(vector, length, GATHERED_KINDS[leaf.kind], idx, scope, name)


def _gather_indices(vector: str, length: int, axis: str, idx: list, scope: Scope, name: str) -> str:
    if idx == list(range(length)):
        return vector
    prefix = "..., " if axis == "-1" else ""
    if idx == list(range(idx[0], idx[0] + len(idx))):
        return f"{vector}[{prefix}{idx[0]}:{idx[-1] + 1}]"
    return f"{vector}.index_select({axis}, self.{_table(scope, name, idx)})"


# ---------------------------------------------------------------- products of different lengths, merged
PADDABLE = {"state": "ypad"}  # vector kind -> the local holding that vector with columns of ones appended
PAD_COLUMNS = 16


def _merge_products(scope: Scope, groups: list):
    """Groups that are plain products of leaves (k*A, k*A*B, ...), whose factor kinds nest — each is the longest
    one's with some state factors left out — become one group over the longest, the missing factors read as 1
    from a copy of the state vector with a column of ones appended. x*1 == x exactly, the factors keep their
    order and the columns theirs (only a run of consecutive groups merges), so the result is bit-for-bit what the
    separate groups computed, in fewer tensor operations: one set of gathers and products instead of one per
    group, and no concatenation when nothing else is left.

    Returns the groups as a list whose items are (template, slots, members) groups or one merged dict."""
    shapes = [_product_kinds(scope, template, slots) for template, slots, _ in groups]
    best = None  # (lo, hi, kinds, positions): the longest run of consecutive groups that embed in one shape
    for gi, shape in enumerate(shapes):
        if shape is None:
            continue
        kinds, lo, hi, positions = shape[0], gi, gi, {}
        for step in (-1, 1):
            j = gi
            while 0 <= j < len(groups) and shapes[j] is not None:
                embedded = _embed(shapes[j][0], kinds)
                if embedded is None:
                    break
                positions[j] = embedded
                lo, hi = min(lo, j), max(hi, j)
                j += step
        if hi > lo and (best is None or hi - lo > best[1] - best[0]):
            best = (lo, hi, kinds, positions)
    if best is None:
        return list(groups)
    lo, hi, kinds, positions = best
    members, leaves = [], []  # per column: the leaf read at each position of `kinds` (None: the padded 1)
    for gi in range(lo, hi + 1):
        order, (_, slots, group_members) = shapes[gi][1], groups[gi]
        for m, expr_index in enumerate(group_members):
            column = [None] * len(kinds)
            for position, k in zip(positions[gi], order):
                column[position] = slots[k][1][m]
            members.append(expr_index)
            leaves.append(column)
    return groups[:lo] + [{"kinds": kinds, "members": members, "leaves": leaves}] + groups[hi + 1:]


def _product_kinds(scope: Scope, template, slots):
    """(vector kind of each factor in printed order, slot number of each), if the template is a product of
    distinct placeholders whose leaves all live in gatherable vectors; else None."""
    if not isinstance(template, sympy.Mul) or len(template.args) != len(slots):
        return None
    number = {placeholder: k for k, (placeholder, _) in enumerate(slots)}
    if set(template.args) != set(number):
        return None
    # The printer writes a product's factors in SymPy's canonical order: the merged product keeps that order, so
    # it multiplies in the same sequence (floating-point products are not associative).
    order = [number[factor] for factor in template.as_ordered_factors()]
    kinds = []
    for k in order:
        leaf = scope.leaves[slots[k][1][0]]
        if leaf.kind not in GATHERED_KINDS or _vector_key(leaf) not in scope.vectors:
            return None
        kinds.append(_vector_key(leaf))
    return tuple(kinds), order


def _embed(small: tuple, large: tuple):
    """Positions in `large` of the factors of `small`, in order, every skipped position being paddable."""
    positions, j = [], 0
    for kind in small:
        while j < len(large) and large[j] != kind:
            if large[j] not in PADDABLE:
                return None
            j += 1
        if j == len(large):
            return None
        positions.append(j)
        j += 1
    return positions if all(kind in PADDABLE for kind in large[j:]) else None


def _product_code(scope: Scope, merged: dict, label: str) -> tuple[str, list]:
    # The 1s come from PAD_COLUMNS columns in turn, not all from one: in the gradient, index_add into one column
    # from hundreds of places is a chain of dependent additions, several times slower at large batches.
    n_pad = max(sum(leaves[k] is None for leaves in merged["leaves"]) for k in range(len(merged["kinds"])))
    width = min(PAD_COLUMNS, n_pad)
    lines, factors = [], []
    for k, kind in enumerate(merged["kinds"]):
        column = [leaves[k] for leaves in merged["leaves"]]
        vector, length = scope.vectors[kind]
        scope.gathered.add(_vector_key(scope.leaves[next(leaf for leaf in column if leaf is not None)]))
        idx, padded = [], 0
        for leaf in column:
            if leaf is None:
                idx.append(length + padded % width)
                padded += 1
            else:
                idx.append(scope.leaves[leaf].index)
        if padded:
            if not lines:  # one kernel (torch.nn.functional.pad would be four)
                ones = _table(scope, f"{label}_ones", [1.0] * width)
                ones = f"self.{ones}.expand(*{scope.batch_shape()}, {width})"
                lines.append(f"{PADDABLE[kind]} = torch.cat([{vector}, {ones}], -1)")
            vector, length = PADDABLE[kind], length + width
        factors.append(_gather_indices(vector, length, GATHERED_KINDS[kind], idx, scope, f"{label}_{k}"))
    batched = any(kind != "param" for kind in merged["kinds"])
    return _expand(scope, "*".join(factors), len(merged["members"]), batched), lines


# ---------------------------------------------------------------- straight-line code
def _straight_line(scope: Scope, exprs: list, labels: list) -> tuple[str, list]:
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
        columns.append(code if scope.batched(original) or scope.batch is None else
                       f"({code}).expand({scope.batch_shape()})")
    columns = [f"{code},  # {label}" for code, label in zip(columns, labels)]
    chunks = [columns[i:i + STACK_CHUNK] for i in range(0, len(columns), STACK_CHUNK)]
    stacks = ["torch.stack([\n        " + "\n        ".join(c) + "\n    ], -1)" for c in chunks]
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
    return f"(*{scope.batch_shape()}, {width})" if scope.batch else f"({width},)"


def _table(scope: Scope, name: str, values: list) -> str:
    scope.tables[name] = tuple(values)
    return name


__all__ = ["Columns", "Scope", "emit_columns", "shape_key", "read", "float_literal"]
