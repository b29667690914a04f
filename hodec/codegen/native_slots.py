"""Neural slots in the C source of the native solvers (native.py): each slot's declared MLP as a C function, the
call sites of function slots as expressions, the residual slots' outputs as locals, and the derivatives of a
model with slots by central differences of its right-hand side.

The weights follow the params in the array p of every generated function: p[HODEC_P ...], slot after slot in the
spec's order, each slot's Linear layers in order, each layer's weight [out, in] row-major then its bias — the
order of torch's `slot.net.parameters()` for the MLP the declaration makes (runtime/native.py passes exactly that;
a network a user put in a slot has no C form and keeps the solve on the torch solvers). HODEC_W counts them.

Derivatives: the symbolic Jacobian of a model with slots reads the slots' derivatives, which torch gets by
autodiff at run time; C has none, so hodec_jac, hodec_dfdt and hodec_dfdp difference hodec_rhs centrally (step
cbrt(eps) times the variable's magnitude, at least 1e-3; truncation and rounding ~1e-10 relative). Only the stiff
methods read the Jacobian, and only to form I - h*gamma*J: an error of that size changes their steps, not the
accuracy their error control gives.
"""
from __future__ import annotations

from dataclasses import replace

import sympy

from ..symbolic.lower import SymbolicModel

# `activation NAME` -> C returning what torch's layer returns for double x (hodec.runtime.neural.ACTIVATIONS, with
# PyTorch's default arguments); NaN propagates as in torch (hodec_m_min/max where a clamp would drop it).
ACTIVATIONS = {
    "tanh": "tanh(x)",
    "sigmoid": "1.0 / (1.0 + exp(-x))",
    "softplus": "x > 20.0 ? x : log1p(exp(x))",
    "relu": "(x > 0.0 || x != x) ? x : 0.0",
    "relu6": "hodec_m_min(hodec_m_max(x, 0.0), 6.0)",
    "leaky_relu": "x > 0.0 ? x : 0.01 * x",
    "elu": "x > 0.0 ? x : expm1(x)",
    "celu": "x > 0.0 ? x : expm1(x)",
    "selu": "1.0507009873554804934193349852946 * (x > 0.0 ? x : 1.6732632423543772848170429916717 * expm1(x))",
    "gelu": "0.5 * x * (1.0 + erf(x * 0.70710678118654752440))",
    "gelu_tanh": "0.5 * x * (1.0 + tanh(0.79788456080286535588 * (x + 0.044715 * x * x * x)))",
    "silu": "x / (1.0 + exp(-x))",
    "swish": "x / (1.0 + exp(-x))",
    "mish": "x * tanh(log1p(exp(x)))",
    "hardtanh": "hodec_m_min(hodec_m_max(x, -1.0), 1.0)",
    "hardswish": "x * hodec_m_min(hodec_m_max(x + 3.0, 0.0), 6.0) / 6.0",
    "hardsigmoid": "hodec_m_min(hodec_m_max(x + 3.0, 0.0), 6.0) / 6.0",
    "logsigmoid": "hodec_m_min(x, 0.0) - log1p(exp(-fabs(x)))",
    "softsign": "x / (1.0 + fabs(x))",
    "tanhshrink": "x - tanh(x)",
    "hardshrink": "(x >= -0.5 && x <= 0.5) ? 0.0 : x",
    "softshrink": "x > 0.5 ? x - 0.5 : (x < -0.5 ? x + 0.5 : 0.0)",
    "identity": "x",
}
# the helpers above read (native.py defines them once, before the slots' functions)
NEEDS = ("hodec_m_min", "hodec_m_max")


class SlotCall(sympy.Function):
    """A function slot's value at a call site: SlotCall(k, *arguments), k the slot's position in the spec; the C
    printer writes hodec_m_call<k>(p, arguments...)."""


def widths(slot) -> list:
    return [len(slot.args), *slot.hidden, slot.n_out]


def weight_count(slot) -> int:
    w = widths(slot)
    return sum(a * b + b for a, b in zip(w, w[1:]))


def offsets(slots) -> list:
    """Where each slot's weights start in p, after the params (HODEC_P + offset)."""
    out, at = [], 0
    for slot in slots:
        out.append(at)
        at += weight_count(slot)
    return out


def with_calls(sm: SymbolicModel) -> SymbolicModel:
    """The model with each call site's symbol replaced by its SlotCall (in lets and flux rates), so that printing
    evaluates the slot where its value is read; a call inside another call's arguments is replaced first."""
    index = {s.name: k for k, s in enumerate(sm.model.slots)}
    calls: dict = {}
    for site in sm.calls:  # in order of first appearance: an inner call before the call reading it
        calls[site.symbol] = SlotCall(sympy.Integer(index[site.slot]), *(a.xreplace(calls) for a in site.args))
    return replace(sm, lets=[(sym, value.xreplace(calls)) for sym, value in sm.lets],
                   fluxes=[replace(f, rate=f.rate.xreplace(calls)) for f in sm.fluxes])


def functions(sm: SymbolicModel, comment) -> list:
    """C definitions: the activations used, then per slot hodec_m_slot<k>(w, x, out) (its MLP) and, for a function
    slot, hodec_m_call<k>(p, a0, ...) returning its value."""
    slots = sm.model.slots
    used = sorted({s.activation for s in slots} | ({"softplus"} if any(s.positive for s in slots) else set()))
    lines = [f"static double hodec_m_act_{name}(double x) {{ return {ACTIVATIONS[name]}; }}" for name in used]
    for k, (slot, offset) in enumerate(zip(slots, offsets(slots))):
        lines += [""] + _mlp(k, slot, comment) + ([""] + _call(k, slot, offset) if slot.is_function else [])
    return lines


def _mlp(k: int, slot, comment) -> list:
    w = widths(slot)
    shape = " -> ".join(map(str, w))
    lines = [comment(f"neural slot {slot.name}: {shape}, activation {slot.activation}"
                     f"{', softplus output' if slot.positive else ''}; w: its weights"),
             f"static void hodec_m_slot{k}(const double *w, const double *x, double *out)", "{"]
    hidden = w[1:-1]  # layers alternate between the buffers a and b
    if hidden:
        lines.append(f"    double a[{max(hidden)}]" + (f", b[{max(hidden)}];" if len(hidden) > 1 else ";"))
    at, source = 0, "x"
    for layer, (n_in, n_out) in enumerate(zip(w, w[1:])):
        last = layer == len(w) - 2
        target = "out" if last else ("a" if source != "a" else "b")
        bias = at + n_in * n_out
        value = ("hodec_m_act_softplus(s)" if slot.positive else "s") if last else f"hodec_m_act_{slot.activation}(s)"
        row = f"{at} + i * {n_in}" if at else f"i * {n_in}"
        lines += [f"    for (int i = 0; i < {n_out}; ++i) {{  {comment(f'layer {layer + 1}')}",
                  f"        double s = w[{bias} + i];",
                  f"        for (int j = 0; j < {n_in}; ++j) s += w[{row} + j] * {source}[j];",
                  f"        {target}[i] = {value};", "    }"]
        at, source = bias + n_out, target
    return lines + ["}"]


def _call(k: int, slot, offset: int) -> list:
    params = ", ".join(f"double a{j}" for j in range(len(slot.args)))
    values = ", ".join(f"a{j}" for j in range(len(slot.args)))
    return [f"static double hodec_m_call{k}(const double *p, {params})", "{",
            f"    const double x[{len(slot.args)}] = {{{values}}};", "    double out;",
            f"    hodec_m_slot{k}(p + HODEC_P + {offset}, x, &out);", "    return out;", "}"]


def residual_outputs(sm: SymbolicModel, printer, comment) -> list:
    """Statements computing each residual slot's outputs into o<k>[...] (its arguments are states, inputs or t)."""
    lines = []
    for k, (slot, offset) in enumerate(zip(sm.model.slots, offsets(sm.model.slots))):
        if not slot.is_function:
            args = ", ".join(printer.doprint(sm.symbols[a.name]) for a in slot.args)
            lines += [f"double o{k}[{slot.n_out}];  {comment(f'neural slot {slot.name}')}",
                      f"hodec_m_slot{k}(p + HODEC_P + {offset}, (const double[]){{{args}}}, o{k});"]
    return lines


def reads_time(sm: SymbolicModel) -> bool:
    """Whether a residual slot reads t or an input (a flux that is a slot output reads nothing symbolically)."""
    kinds = {sm.leaves[sm.symbols[a.name]].kind for s in sm.model.slots if not s.is_function for a in s.args}
    return bool(kinds & {"time", "input"})


# Central differences of hodec_rhs; h = cbrt(DBL_EPSILON) * max(|v|, 1e-3) (truncation ~h^2, rounding ~eps/h: both
# ~1e-10 relative for a variable of order one; the floor keeps rounding ~4e-8 at v = 0); the quotient divides by
# (v + h) - (v - h), the difference of the points actually evaluated.
_STEP = "6.0554544523933395e-06 * fmax(fabs({v}), 1e-3)"

DIFFERENCES = [
    "static void hodec_jac(double t, const double *y, const double *p, const double *u, double *J)", "{",
    "    double z[HODEC_N], up[HODEC_N], down[HODEC_N];",
    "    for (int j = 0; j < HODEC_N; ++j) z[j] = y[j];",
    "    for (int j = 0; j < HODEC_N; ++j) {",
    f"        const double h = {_STEP.format(v='y[j]')};",
    "        const double hi = y[j] + h, lo = y[j] - h;",
    "        z[j] = hi;", "        hodec_rhs(t, z, p, u, up);",
    "        z[j] = lo;", "        hodec_rhs(t, z, p, u, down);", "        z[j] = y[j];",
    "        for (int i = 0; i < HODEC_N; ++i) J[i * HODEC_N + j] = (up[i] - down[i]) / (hi - lo);", "    }", "}",
    "",
    "static void hodec_dfdt(double t, const double *y, const double *p, const double *u, const double *du, "
    "double *df)", "{",
    "    /* the total derivative at fixed y: t and every input moved together, u(t +- h) = u +- h du */",
    "    double v[HODEC_U > 0 ? HODEC_U : 1], up[HODEC_N], down[HODEC_N];",
    f"    const double h = {_STEP.format(v='t')};",
    "    const double hi = t + h, lo = t - h;",
    "    for (int k = 0; k < HODEC_U; ++k) v[k] = u[k] + (hi - t) * du[k];",
    "    hodec_rhs(hi, y, p, v, up);",
    "    for (int k = 0; k < HODEC_U; ++k) v[k] = u[k] + (lo - t) * du[k];",
    "    hodec_rhs(lo, y, p, v, down);",
    "    for (int i = 0; i < HODEC_N; ++i) df[i] = (up[i] - down[i]) / (hi - lo);", "}",
    "",
    "/* external, as for a model without slots; the params are moved in a copy of p (the weights follow them) */",
    "void hodec_dfdp(double t, const double *y, const double *p, const double *u, double *D)", "{",
    "    double *q = malloc(sizeof(double) * (HODEC_P + HODEC_W > 0 ? HODEC_P + HODEC_W : 1));",
    "    double up[HODEC_N], down[HODEC_N];",
    "    if (!q) {",
    "        for (int k = 0; k < HODEC_N * HODEC_P; ++k) D[k] = NAN;", "        return;", "    }",
    "    memcpy(q, p, sizeof(double) * (HODEC_P + HODEC_W));",
    "    for (int k = 0; k < HODEC_P; ++k) {",
    f"        const double h = {_STEP.format(v='p[k]')};",
    "        const double hi = p[k] + h, lo = p[k] - h;",
    "        q[k] = hi;", "        hodec_rhs(t, y, q, u, up);",
    "        q[k] = lo;", "        hodec_rhs(t, y, q, u, down);", "        q[k] = p[k];",
    "        for (int i = 0; i < HODEC_N; ++i) D[i * HODEC_P + k] = (up[i] - down[i]) / (hi - lo);", "    }",
    "    free(q);", "}",
]
