"""Native (C) solving behind CompiledModel.simulate: whether one solve can go to hodec.solvers.native (and if not,
why not), and the model's params, inputs, initial states and times as solve_native's arguments.

The generated class carries its model as C (`native_source`, or `native_unsupported`: the reason it has none);
hodec.solvers.native compiles it with hodec's C solver loops into a shared library at first use (cached on disk)
and solves every batch member on its own, in double precision. A solve whose params or initial state require
grad (a model without neural slots, an explicit method) carries forward sensitivities (solvers/native/
sensitivity.py), and an autograd Function turns them into the gradients: one solve, no tape.
"""
from __future__ import annotations

import math
import os
from typing import Optional

import torch

from ..errors import HodecError
from ..solvers.errors import StiffnessDetected
from ..solvers.native import NAMES, NativeUnavailable, library, solve_native
from ..solvers.native.sensitivity import METHODS as GRADIENT_METHODS
from ..solvers.native.sensitivity import augmented_size, sensitivity_source, solve_sensitivities
from ..solvers.solve import MAX_STEPS
from .neural import ACTIVATIONS
from .signals import Signal, lined_up

# simulate() options the native solve takes (compile, a way of running the torch solvers, means nothing to it); any
# other (adjoint, stop_at_outputs, torchdiffeq's) that is set keeps the solve on the torch solvers
OPTIONS = ("max_steps", "stats", "compile")
ENVIRONMENT = "HODEC_NATIVE"  # "0" turns the automatic choice off (native=True still solves natively)
# Gradients natively: what may require grad, and the most values the augmented solve may return (T x B x n(1+n+P)
# doubles: 400 MB) and carry per member (its work arrays live on the C stack)
DIFFERENTIABLE = ("a param", "the initial state")
MAX_OUTPUT, MAX_AUGMENTED = 50_000_000, 20_000


def chosen(model, native: Optional[bool], ts: torch.Tensor, y0: torch.Tensor, method: str, atol, options: dict,
           doses=None) -> bool:
    """Whether this simulate() solves natively. native=False: never; None (the automatic choice): when nothing
    refuses it and HODEC_NATIVE is not "0"; True: always, else a HodecError naming what refuses it."""
    if native is False or native is None and os.environ.get(ENVIRONMENT, "").strip() == "0":
        return False
    reason = refusal(model, ts, y0, method, atol, options, doses)
    if reason is not None and native:
        raise HodecError(f"simulate(native=True): {reason}")
    return reason is None


def refusal(model, ts: torch.Tensor, y0: torch.Tensor, method: str, atol, options: dict,
            doses=None) -> Optional[str]:
    """None when this solve can run natively, else why not (a phrase: 'simulate(native=True): <reason>')."""
    cls = type(model)
    source = getattr(cls, "native_source", None)
    if source is None:
        return getattr(cls, "native_unsupported", None) or "the model class carries no C source (compiled by a " \
                                                            "hodec without native solving)"
    reason = _setup_refusal(model, method, options, doses)
    if reason is None:
        reason = _tensor_refusal(model, ts, y0, method, atol, options)
    if reason is None:
        try:
            library(source)  # built once per process; a failure is remembered there too
        except NativeUnavailable as err:
            reason = f"no native library ({err})"
    return reason


def _setup_refusal(model, method: str, options: dict, doses) -> Optional[str]:
    """What the call asks for that the native solvers do not do."""
    if method not in NAMES:
        return f"method '{method}' has no native version (native methods: {', '.join(NAMES)})"
    torch_only = [name for name, value in options.items() if name not in OPTIONS and value not in (None, False)]
    if torch_only:
        return f"option {torch_only[0]}={options[torch_only[0]]!r} is the torch solvers' only"
    if doses is not None:
        return "doses are applied by the torch solvers only"
    if model.events_table:
        return f"the spec's events ({model.events_table[0][1]}) are applied by the torch solvers only"
    if model._coupling is not None:
        return "a homotopy coupling is attached"
    if "forward" in model.__dict__ or type(model).forward is not _source_class(type(model)).forward:
        return "forward is overridden (the C source is the generated forward's)"
    for row, slot in zip(model.slots_table, model.slot_modules):
        if not _declared(slot, row):
            return f"neural slot '{row[0]}' holds a network other than its declared MLP (the C source has that one)"
    for name in model.input_names:
        signal = model._signals.get(name)
        if signal is None:
            return f"input '{name}' is not bound"
        if not isinstance(signal, Signal):
            return f"input '{name}' is bound to a callable, not a table of samples"
    return None


def _tensor_refusal(model, ts: torch.Tensor, y0: torch.Tensor, method: str, atol, options: dict) -> Optional[str]:
    if not y0.is_cpu:
        return f"the model is on {y0.device} (native solving runs on the CPU)"
    if torch.is_grad_enabled():
        tensors = {"a param": model.parameter_values(), "the initial state": y0, "the time grid": ts,
                   **{f"neural slot '{row[0]}'": next((w for w in slot.parameters() if w.requires_grad), None)
                      for row, slot in zip(model.slots_table, model.slot_modules)},
                   "atol": atol if torch.is_tensor(atol) else None,
                   **{f"input '{name}'": model._signals[name].values for name in model.input_names},
                   **{f"input '{name}' (times)": model._signals[name].times for name in model.input_names}}
        needing = [what for what, t in tensors.items() if t is not None and t.requires_grad]
        if needing:
            reason = _gradient_refusal(model, ts, y0, method, options, needing)
            if reason is not None:
                return (f"gradients are needed ({reason}) and native solves do not give them: simulate under "
                        f"torch.no_grad() for a solve without them")
    batch = tuple(y0.shape[:-1])
    if not isinstance(atol, (int, float)) and tuple(torch.as_tensor(atol).shape) not in ((), (y0.shape[-1],)):
        return f"atol has shape {list(torch.as_tensor(atol).shape)} (native: a number or one per state)"
    if ts.dim() == 0 or ts.shape[0] == 0 or ts.dim() > 1 and tuple(ts.shape[1:]) != batch:
        return f"the time grid has shape {list(ts.shape)} (expected [T] or [T, *batch], batch {list(batch)})"
    # (solve_native refuses any other decrease, as the torch solvers do; .item() is twice as fast as a tensor test)
    if (ts[-1].item() < ts[0].item()) if ts.dim() == 1 else bool((ts[-1] < ts[0]).any()):
        return "the time grid decreases (native solves integrate forward only)"
    for name in model.input_names:
        columns = tuple(model._signals[name].values.shape[1:])
        if columns and (len(columns) > len(batch) or _broadcast(columns, batch) != batch):
            return f"input '{name}' has columns {list(columns)} that do not line up with the batch {list(batch)}"
    return None


def _gradient_refusal(model, ts: torch.Tensor, y0: torch.Tensor, method: str, options: dict,
                      needing: list) -> Optional[str]:
    """None when forward sensitivities can give the gradients, else what stops them (a phrase)."""
    other = next((what for what in needing if what not in DIFFERENTIABLE), None)
    if other is not None:
        return f"{other} requires grad"
    if options.get("compile"):  # asked for by name: the torch solvers' compiled step and its backpropagation
        return f"{needing[0]} requires grad, and compile=True asks for the torch solvers' compiled step"
    if method not in ("auto", *GRADIENT_METHODS):
        return (f"{needing[0]} requires grad, and the native sensitivities run the explicit methods only "
                f"({', '.join(GRADIENT_METHODS)}, or auto), not '{method}'")
    if model.slots_table:
        return f"{needing[0]} requires grad, and the native sensitivities do not differentiate neural slots"
    n, P = y0.shape[-1], model.parameter_values().shape[-1]
    size = augmented_size(n, P)
    if size > MAX_AUGMENTED or ts.shape[0] * math.prod(y0.shape[:-1]) * size > MAX_OUTPUT:
        return f"{needing[0]} requires grad, and {n} states x {n + P} sensitivities are too many for a native solve"
    return None


def _needs_gradient(model, y0: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and (y0.requires_grad or model.parameter_values().requires_grad)


def _broadcast(a: tuple, b: tuple) -> Optional[tuple]:
    try:
        return tuple(torch.broadcast_shapes(a, b))
    except RuntimeError:
        return None


def _declared(slot, row) -> bool:
    """Whether the slot holds the MLP its declaration made, unchanged in kind and shape: the C source computes that
    network with the weights simulate() passes."""
    _, args, outputs, hidden, activation, _ = row
    net = slot.net
    if not slot.is_factory_mlp or len(net) != 2 * len(hidden) + 1:
        return False
    widths = [len(args), *hidden, 1 if outputs is None else len(outputs)]
    layers = net[::2]
    shapes = all(isinstance(lin, torch.nn.Linear) and lin.bias is not None and lin.in_features == a
                 and lin.out_features == b for lin, a, b in zip(layers, widths, widths[1:]))
    return shapes and all(repr(act) == repr(ACTIVATIONS[activation]()) for act in net[1::2])


def weights(model) -> Optional[torch.Tensor]:
    """The neural slots' weights in the C source's order (each slot's Linear layers in turn, weight row-major
    then bias), or None for a model without slots."""
    if not model.slots_table:
        return None
    return torch.cat([w.detach().reshape(-1).to(torch.float64) for slot in model.slot_modules
                      for w in slot.net.parameters()])


def _source_class(cls):
    """The generated class: the one whose own attributes hold the C source."""
    return next(c for c in cls.__mro__ if "native_source" in c.__dict__)


def simulate(model, ts: torch.Tensor, y0: torch.Tensor, method: str, rtol: float, atol, options: dict,
             required: bool = False) -> Optional[torch.Tensor]:
    """The native solve of simulate(): y [T, *batch, n] in the model's dtype (float32 models are solved in double
    and the result rounded). With gradients: None when `auto` finds the problem stiff (the torch solvers then
    solve it, switching to their stiff method), unless `required` (native=True), when that error is raised."""
    if _needs_gradient(model, y0):
        try:
            return _differentiable(model, ts, y0, "tsit5" if method == "auto" else method, rtol, atol, options)
        except StiffnessDetected:
            if method != "auto" or required:
                raise
            return None
    batch, B, n, grid, p, inputs = _arguments(model, ts, y0)
    w = weights(model)
    if w is not None:  # the weights follow each member's params
        p = torch.cat([p.to(torch.float64), w if p.dim() == 1 else w.expand(B, w.shape[0])], -1)
    ys = solve_native(library(type(model).native_source), y0.reshape(B, n), grid, p, inputs, method, rtol, atol,
                      max_steps=options.get("max_steps", MAX_STEPS), state_names=model.state_names,
                      stats=options.get("stats"))
    return ys.to(y0.dtype).reshape(ys.shape[0], *batch, n)


def _differentiable(model, ts: torch.Tensor, y0: torch.Tensor, method: str, rtol: float, atol, options: dict):
    """simulate() with forward sensitivities: the values of the solve without them, and gradients to the params
    and the initial state through Sensitivities."""
    batch, B, n, grid, p, inputs = _arguments(model, ts, y0)
    lib = library(sensitivity_source(type(model).native_source))
    max_steps = options.get("max_steps", MAX_STEPS)

    def solve(params, start):
        return solve_sensitivities(lib, start, grid, params, inputs, method, rtol, atol, max_steps=max_steps,
                                   state_names=model.state_names, stats=options.get("stats"))

    def again(params, start):  # the torch solvers' solve, for derivatives of the gradient (see Sensitivities)
        with model.member_values(params if params.dim() == 2 else params.expand(B, params.shape[-1])):
            return model.simulate(ts, y0=start, method=method, rtol=rtol, atol=atol, native=False,
                                  max_steps=max_steps)

    ys = Sensitivities.apply(p, y0.reshape(B, n), solve, again)
    return ys.to(y0.dtype).reshape(ys.shape[0], *batch, n)


def _arguments(model, ts: torch.Tensor, y0: torch.Tensor) -> tuple:
    """What a native solve of y0 [*batch, n] reads: (batch, B members, n, the grid [T] or [T, B], the params [P]
    (shared) or [B, P], the input tables)."""
    batch, n = tuple(y0.shape[:-1]), y0.shape[-1]
    B = math.prod(batch)
    p = model.parameter_values()
    return (batch, B, n, ts if ts.dim() == 1 else ts.reshape(ts.shape[0], B),
            p if p.dim() == 1 else p.expand(*batch, p.shape[-1]).reshape(B, p.shape[-1]), _inputs(model, batch, B))


class Sensitivities(torch.autograd.Function):
    """y(ts) from (params [P] or [B, P], y0 [B, n]); backward contracts the output's gradient with the forward
    sensitivities the solve returned (d y / d y0 [T, B, n, n], d y / d p [T, B, n, P]). Those are first
    derivatives only: a backward that must itself be differentiable (create_graph=True, as for a Hessian) solves
    again on the torch solvers (`again`) and differentiates that, so a second derivative is never silently wrong."""

    @staticmethod
    def forward(ctx, params, y0, solve, again):
        ys, d_y0, d_p = solve(params.detach(), y0.detach())
        ctx.save_for_backward(params, y0, d_y0, d_p)
        ctx.shared, ctx.dtypes, ctx.again = params.dim() == 1, (params.dtype, y0.dtype), again
        return ys

    @staticmethod
    def backward(ctx, grad):
        params, y0, d_y0, d_p = ctx.saved_tensors
        if torch.is_grad_enabled():
            inputs = [x for x, needed in zip((params, y0), ctx.needs_input_grad) if needed]
            ys = ctx.again(params, y0)
            grads = iter(torch.autograd.grad(ys, inputs, grad.to(ys.dtype), create_graph=True, allow_unused=True))
            out = []
            for x, needed in zip((params, y0), ctx.needs_input_grad):
                g = next(grads) if needed else None
                out.append(torch.zeros_like(x) if needed and g is None else g)
            return (*out, None, None)
        grad = grad.to(torch.float64)
        grad_p = torch.einsum("tbi,tbik->bk", grad, d_p)
        grad_y0 = torch.einsum("tbi,tbij->bj", grad, d_y0)
        return (grad_p.sum(0) if ctx.shared else grad_p).to(ctx.dtypes[0]), grad_y0.to(ctx.dtypes[1]), None, None


def _inputs(model, batch: tuple, B: int) -> list:
    """Each input as (times [K], values [K] or [K, B], method): a signal's own trailing shape (a column per
    member) lines up with the batch's last axes, as simulate's torch path reads it."""
    out = []
    for name in model.input_names:
        signal = model._signals[name]
        values = signal.values
        if values.dim() > 1:
            values = lined_up(values, batch).reshape(values.shape[0], B)
        out.append((signal.times, values, signal.method))
    return out
