"""solve_adjoint(): a solve whose gradients are computed backward over one output interval at a time, from the
outputs alone, in memory that does not grow with the number of steps (or, on stiff problems, with the number of
output intervals); backpropagating through solve() keeps every step's tensors instead.

    ys = solve_adjoint(f, y0, ts, params=list(model.parameters()), method="auto", rtol=1e-6, atol=1e-8)

The forward solve runs without autograd and keeps only the outputs. The backward pass goes from the last output
time to the first, adding each output's cotangent to the adjoint a = dL/dy at its time, in one of two sweeps:

- "backsolve", the continuous adjoint (optimise-then-discretise): over each interval it integrates backward (a
  decreasing time grid: solve() integrates backward) the augmented system z = [y, a, g] of each batch member,

      dy/dt = f(t, y),   da/dt = −(∂f/∂y)ᵀ a,   dg/dt = −(∂f/∂θ)ᵀ a,

  y restarted from the forward output at each output time; the vector–Jacobian products are torch.autograd.grad
  of f. Memory independent of the steps. Each member has its own a and g and its own step control, so g holds
  that member's share of the gradient of the params θ (shared params sum the shares). Integrating y backward
  amplifies its errors where the problem damps strongly (stiff) or is chaotic: the state is checked against the
  forward output at each output time, and a drift beyond DRIFT is an error rather than a wrong gradient.
- "checkpoint" (discretise-then-optimise, one interval at a time): each interval is solved again from the forward
  output at its start, with autograd, and backpropagated. Memory: one interval's steps. Exact for the discrete
  solution and stable on stiff problems; the default where the method is stiff (rodas5p, or auto that switched).

Gradients flow to y0, the params and the output times ts (dL/dt_k = ∂L/∂y_k · f(t_k, y_k) for k ≥ 1, and
−a(t_0)·f(t_0, y_0) for the start). Params are the tensors f reads that need gradients. For the backsolve with
several members, `params` may be any tensors, each member's share of them taking a batched vector–Jacobian product
(torch.autograd.grad with is_grads_batched, ~B× one product); `member_params` are per-sample tensors [*batch, ...]
of which member b reads only row b, whose shares one plain product gives (per-sample params in `params` are right,
only slower).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional, Sequence

import torch

from ..errors import HodecError
from .errors import SolverError
from .solve import AUTO, MAX_STEPS, METHODS, _flat, _time_grid, solve

DRIFT = 0.01  # see _check_drift


def solve_adjoint(f: Callable, y0: torch.Tensor, ts, params: Sequence[torch.Tensor] = (), method: str = "auto",
                  rtol: float = 1e-6, atol=1e-8, *, member_params: Sequence[torch.Tensor] = (),
                  sweep: Optional[str] = None, adjoint_method: Optional[str] = None,
                  adjoint_rtol: Optional[float] = None, adjoint_atol=None, jacobian: Optional[Callable] = None,
                  autonomous: bool = False, max_steps: int = MAX_STEPS, state_names: Optional[Sequence[str]] = None,
                  stats: Optional[dict] = None, events=None) -> torch.Tensor:
    """y at the times ts, [T, *batch, n], as solve() gives it, differentiable with respect to y0, ts, params and
    member_params. sweep: "backsolve" or "checkpoint" (default: checkpoint where the backward method is stiff,
    else backsolve). The backward solves use adjoint_method (default: the method the forward solve ended with, so
    that `auto` goes on stiff where it switched); the backsolve's, adjoint_rtol and adjoint_atol (default: rtol and
    atol, a tensor atol by its smallest entry) over the augmented state [y, a, g]. stats, if given, receives the
    forward solve's (see solve()) and, after the backward pass, adjoint_steps and adjoint_n_f summed over the
    output intervals. events: refused (the backward sweeps do not cross jumps); use solve()'s backpropagation."""
    if events is not None:
        raise HodecError("the adjoint method does not support events (jumps in the state): solve without adjoint "
                         "(gradients by backpropagation through the steps)")
    batch, n = tuple(y0.shape[:-1]), y0.shape[-1]
    ts = torch.as_tensor(ts, dtype=y0.dtype, device=y0.device)
    member_params = list(member_params)
    for i, p in enumerate(member_params):
        if not batch or tuple(p.shape[:len(batch)]) != batch:
            raise HodecError(f"member_params[{i}] has shape {list(p.shape)}; a per-sample param starts with the "
                             f"state's batch shape {list(batch)}")
    if sweep not in (None, *SWEEPS):
        raise HodecError(f"unknown adjoint sweep '{sweep}'; sweeps: {', '.join(SWEEPS)}")
    options = _Options(f, jacobian, autonomous, batch, n, len(params), method, rtol, atol, max_steps, state_names,
                       {} if stats is None else stats, sweep, adjoint_method,
                       rtol if adjoint_rtol is None else adjoint_rtol,
                       float(torch.as_tensor(atol).min()) if adjoint_atol is None else adjoint_atol)
    return _Adjoint.apply(options, y0, ts, *params, *member_params)


@dataclass
class _Options:
    """What the forward and backward solves share; the forward solve fills in stats and the backward choices."""

    f: Callable
    jacobian: Optional[Callable]
    autonomous: bool
    batch: tuple
    n: int
    n_shared: int  # params[:n_shared] are shared, the rest per member
    method: str
    rtol: float
    atol: object
    max_steps: int
    state_names: Optional[Sequence[str]]
    stats: dict = field(default_factory=dict)
    sweep: Optional[str] = None
    adjoint_method: Optional[str] = None
    adjoint_rtol: float = 0.0
    adjoint_atol: object = 0.0

    def forward(self, y0: torch.Tensor, ts: torch.Tensor) -> torch.Tensor:
        ys = solve(self.f, y0, ts, self.method, self.rtol, self.atol, jacobian=self.jacobian,
                   autonomous=self.autonomous, max_steps=self.max_steps, state_names=self.state_names,
                   stats=self.stats)
        if self.adjoint_method is None:  # auto: the backward solves start where the forward one ended
            switched = self.method == "auto" and self.stats["method"] == AUTO[1]
            self.adjoint_method = AUTO[1] if switched else self.method
        if self.sweep is None:
            stiff = self.adjoint_method in METHODS and METHODS[self.adjoint_method]().stiff
            self.sweep = "checkpoint" if stiff else "backsolve"
        return ys

    @cached_property
    def flat_f(self) -> Callable:
        """f in the solvers' layout: t [B], y [B, n] -> [B, n] (as solve() calls it)."""
        return _flat(self.f, None, self.batch, self.n, 1.0)[0]


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, options: _Options, y0: torch.Tensor, ts: torch.Tensor, *params: torch.Tensor):
        ys = options.forward(y0, ts)  # autograd.Function.forward runs without a graph: nothing per step is kept
        ctx.options = options
        ctx.save_for_backward(y0, ts, ys, *params)
        return ys

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ys: torch.Tensor):
        options = ctx.options
        y0, ts, ys, *params = ctx.saved_tensors
        need_y0, need_ts, *need_params = ctx.needs_input_grad[1:]
        B, n = math.prod(options.batch), options.n
        grid = _time_grid(ts, options.batch, y0)  # [T, B]
        ys, cotangents = ys.reshape(-1, B, n), grad_ys.reshape(-1, B, n)
        sweep = SWEEPS[options.sweep](options, params, need_params, y0)
        a = torch.zeros_like(ys[0])  # the adjoint just after output time k, before that output's own cotangent
        dts = grid.new_zeros(grid.shape) if need_ts else None
        for k in range(grid.shape[0] - 1, 0, -1):
            a = a + cotangents[k]
            if need_ts:
                dts[k] = (cotangents[k] * options.flat_f(grid[k], ys[k])).sum(-1)
            a = sweep.interval(a, ys[k - 1], ys[k], grid[[k - 1, k]], k)
        if need_ts:  # the start moves the whole solution: −a(t0)·f(t0, y0), a without y0's own cotangent
            dts[0] = -(a * options.flat_f(grid[0], ys[0])).sum(-1)
            dts = dts.sum(1) if ts.dim() == 1 else dts.reshape(ts.shape)
        a = a + cotangents[0]
        return (None, a.reshape(y0.shape) if need_y0 else None, dts, *sweep.gradients())


class _Backsolve:
    """The continuous adjoint: the augmented system [y, a, g] integrated backward over each output interval."""

    def __init__(self, options: _Options, params: Sequence[torch.Tensor], needed: Sequence[bool], y0: torch.Tensor):
        self.options = options
        self.system = _Augmented(options, params[:options.n_shared], params[options.n_shared:], needed)
        self.g = y0.new_zeros(self.system.B, self.system.size)

    def interval(self, a: torch.Tensor, start: torch.Tensor, end: torch.Tensor, times: torch.Tensor,
                 k: int) -> torch.Tensor:
        """a at times[0] from a at times[1] [B, n] (start, end: the forward solution there); g accumulates."""
        options, n, solve_stats = self.options, self.options.n, {}
        try:
            z = solve(self.system.rhs, torch.cat([end, a, self.g], -1), times.flip(0), options.adjoint_method,
                      options.adjoint_rtol, options.adjoint_atol, jacobian=self.system.jacobian,
                      autonomous=options.autonomous, max_steps=options.max_steps, stats=solve_stats)[-1]
        except SolverError as err:
            message = " ".join(d.message for d in err.diagnostics)
            raise type(err)(f"{message} (in the adjoint's backward integration of output interval {k}; where the "
                            f"problem damps strongly, integrating the state backward fails: use sweep='checkpoint')"
                            ) from None
        _add_stats(options.stats, solve_stats)
        _check_drift(z[:, :n], start, options, times[0], k - 1)
        self.g = z[:, 2 * n:]
        return z[:, n:2 * n]

    def gradients(self) -> list:
        return self.system.gradients(self.g)


class _Checkpoint:
    """Backpropagation through one output interval at a time: each is solved again from its start, the forward
    solution there, with autograd; memory holds one interval's steps. Exact for the discrete solution and stable
    on stiff problems, where integrating the state backward (_Backsolve) is not."""

    def __init__(self, options: _Options, params: Sequence[torch.Tensor], needed: Sequence[bool], y0: torch.Tensor):
        self.options = options
        self.params = [p for p, need in zip(params, needed) if need]
        self.needed = list(needed)
        self.totals = [torch.zeros_like(p) for p in self.params]

    def interval(self, a: torch.Tensor, start: torch.Tensor, end: torch.Tensor, times: torch.Tensor,
                 k: int) -> torch.Tensor:
        options, solve_stats = self.options, {}
        with torch.enable_grad():
            y = start.detach().requires_grad_()
            # The forward solve's method: what `auto` ended with (restarting it would detect stiffness anew).
            y1 = solve(options.f, y.reshape(*options.batch, options.n), times.reshape(2, *options.batch),
                       options.adjoint_method, options.rtol, options.atol, jacobian=options.jacobian,
                       autonomous=options.autonomous, max_steps=options.max_steps, stats=solve_stats)[-1]
            grads = torch.autograd.grad(y1, [y, *self.params], a.reshape(y1.shape), allow_unused=True)
        _add_stats(options.stats, solve_stats)
        self.totals = [total if grad is None else total + grad for total, grad in zip(self.totals, grads[1:])]
        return grads[0] if grads[0] is not None else torch.zeros_like(a)

    def gradients(self) -> list:
        totals = iter(self.totals)
        return [next(totals) if need else None for need in self.needed]


SWEEPS = {"backsolve": _Backsolve, "checkpoint": _Checkpoint}


def _check_drift(y: torch.Tensor, forward: torch.Tensor, options: _Options, t: torch.Tensor, k: int):
    """The state integrated backward must come back to the forward solution. Where it ends farther away than
    DRIFT (relative, RMS over the states, |y| floored at atol/rtol), the problem amplifies errors backward in time
    (strong damping, chaos) and the gradients, computed along the drifted state, are unreliable. (Measured: the
    gradients' own error stays far below the drift's, e.g. Lorenz over one time unit at rtol 1e-6: drift 0.9 %,
    gradient error 0.025 %; at rtol 1e-3: drift 13000 %, gradient error 260 %.)"""
    scale = options.adjoint_atol / options.adjoint_rtol + forward.abs()
    drift = ((y - forward) / scale).pow(2).mean(-1).sqrt()
    drift = torch.where(torch.isfinite(drift), drift, torch.full_like(drift, torch.inf))
    if bool((drift > DRIFT).any()):
        b = int((drift > DRIFT).nonzero()[0, 0])
        away = float(drift[b])
        distance = f"{100 * away:.3g} % away from" if math.isfinite(away) else "infinitely far from"
        raise SolverError(
            f"the adjoint's backward integration of the state ends {distance} the forward solution at t = "
            f"{float(t[b]):.6g} (output {k}, batch member {b}): the problem amplifies errors backward in time "
            f"(strong damping or chaos) and the gradients would be unreliable; use sweep='checkpoint', or give "
            f"more output times (each restarts the state from the forward solution)")


def _add_stats(total: dict, one: dict):
    total["adjoint_steps"] = total.get("adjoint_steps", 0) + one["steps"]
    total["adjoint_n_f"] = total.get("adjoint_n_f", 0) + one["n_f"]


class _Augmented:
    """The adjoint system of one backward pass in the solvers' flat layout: z = [y, a, g], [B, 2n + P], where g
    holds each member's share of the gradient of every param that needs one (flattened, in order)."""

    def __init__(self, options: _Options, shared: Sequence[torch.Tensor], member: Sequence[torch.Tensor],
                 needed: Sequence[bool]):
        self.options = options
        self.B = math.prod(options.batch)
        self.shared = [p for p, need in zip(shared, needed) if need]
        self.member = [p for p, need in zip(member, needed[len(shared):]) if need]
        self.needed = list(needed)
        self.sizes = [p.numel() for p in self.shared] + [p[(0,) * len(options.batch)].numel() for p in self.member]
        self.size = sum(self.sizes)

    def rhs(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """d/dt [y, a, g]; differentiable with respect to z when z requires grad (for jacobian)."""
        n, B = self.options.n, self.B
        differentiable = z.requires_grad
        # With one member, a shared param is that member's own: one plain vector-Jacobian product serves all.
        plain_shared = self.shared if B == 1 else []
        batched_shared = self.shared if B > 1 else []
        with torch.enable_grad():
            y = z[:, :n] if differentiable else z[:, :n].detach().requires_grad_()
            dy = self.options.flat_f(t, y)
            a = z[:, n:2 * n]
            inputs = [y, *plain_shared, *self.member]
            grads = torch.autograd.grad(dy, inputs, a, retain_graph=differentiable or bool(batched_shared),
                                        create_graph=differentiable, allow_unused=True)
            sizes = self.sizes[len(self.shared) - len(plain_shared):]
            shares = [_shares(grad, B, size, a) for grad, size in zip(grads[1:], sizes)]
            if batched_shared:
                one_hot = torch.diag_embed(a.T).permute(1, 2, 0)  # [B, B, n]: member b's a in row b only
                grads_b = torch.autograd.grad(dy, batched_shared, one_hot, is_grads_batched=True,
                                              create_graph=differentiable, allow_unused=True)
                shares = [_shares(grad, B, size, a) for grad, size in zip(grads_b, self.sizes)] + shares
        vjp_y = grads[0] if grads[0] is not None else torch.zeros_like(a)
        return torch.cat([dy if differentiable else dy.detach(), -vjp_y, *(-share for share in shares)], -1)

    def jacobian(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """∂rhs/∂z [B, m, m] for the stiff methods, by autodiff of rhs (second derivatives of f included: with
        only the blocks J and −Jᵀ a Rosenbrock method loses its order: ~200× the steps, measured on LV)."""
        # Each member's rows depend on its own z only: the Jacobian of the sum over members is theirs, [m, B, m].
        rows = torch.autograd.functional.jacobian(lambda x: self.rhs(t, x).sum(0), z, vectorize=True)
        return rows.movedim(1, 0)

    def gradients(self, g: torch.Tensor) -> list:
        """Each param's gradient from the members' shares [B, P] (None where none is needed)."""
        parts = iter(g.split(self.sizes, -1))
        out = [next(parts).sum(0).reshape(p.shape) for p in self.shared] + \
            [next(parts).reshape(p.shape) for p in self.member]
        values = iter(out)
        return [next(values) if need else None for need in self.needed]


def _shares(grad: Optional[torch.Tensor], B: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """A param's gradient as the members' shares [B, size]; zeros where f does not read the param."""
    return like.new_zeros(B, size) if grad is None else grad.reshape(B, size)
