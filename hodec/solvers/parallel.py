"""Parallel-in-time solves: a trajectory through the nodes t_0 < ... < t_K as the fixed point of multiple shooting,
found by Newton's method, every interval solved in the same batched call.

    shot = shoot(flow, y0, guess, rtol, atol)   # shot.states [K + 1, B, n] (None if Newton did not converge)

flow(starts [K, B, n]) -> ends [K, B, n] solves every interval [t_i, t_(i+1)] from its start (one batched solve,
K x B members, each with its own step control) and is differentiable in the starts and in whatever parameters the
caller's field reads. Why: a field driven by data through a spline (homotopy's coupling) has a kink in its third
derivative at every data time, so a sequential solver needs several steps per data interval, one after another;
here every interval takes its steps at the same time, so a solve costs the steps of its hardest interval.

Newton on the residuals r_i = Phi_i(x_i) - x_(i+1), x_0 = y0 fixed: delta_0 = 0, delta_(i+1) = P_i delta_i + r_i,
with P_i = dPhi_i/dx_i the exact Jacobians of the discrete solves (reverse-mode autodiff, the n rows of all members
in one batched backward pass; forward mode over n copies of the members measured 4-8x slower). Converged when the
Newton step's error norm (the solvers' RMS of delta / (atol + rtol |x|), worst member) is <= 1, or predicted so
(see shoot), with rtol no smaller than TOLERANCE_FLOOR machine epsilons: in float32 the steps stall at ~20 eps |x|
(the rounding of a solve; measured on LV black-box), and rtol 1e-7 would never be reached.

Gradients: at the converged x the returned states are x~_0 = y0, x~_(i+1) = Phi_i(x_i) + P_i (x~_i - x_i), with
Phi_i's graph to the parameters and P_i held constant. Their values are one more Newton step (the fixed point to
tolerance); their gradient is the implicit-function-theorem gradient of the fixed point (dP/dtheta multiplies
x~ - x = 0), by one backward pass through the batched solve and a short recurrence of n x n products: no
sequential backpropagation through the solver.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

TOLERANCE_FLOOR = 100  # machine epsilons: the least relative tolerance the residual is held to
# Dandekar early in training needs 4-6 (one AdamW step moves a state by up to 150 %); a solve that gives up after 8
# has cost ~1.6 s there before the caller's fallback, about a quarter of one sequential coupled solve (measured).
MAX_ITERATIONS = 8


@dataclass
class Shot:
    states: Optional[torch.Tensor]  # [K + 1, B, n] with the implicit gradient; None unless converged
    iterations: int  # flow evaluations
    error: float  # the last Newton step's error norm (inf: not finite)
    nodes: Optional[torch.Tensor] = None  # [K + 1, B, n] the states, detached: the next solve's guess

    @property
    def converged(self) -> bool:
        return self.states is not None


def shoot(flow: Callable, y0: torch.Tensor, guess: torch.Tensor, rtol: float, atol, *,
          max_iterations: int = MAX_ITERATIONS) -> Shot:
    """Newton's method from guess [K + 1, B, n] (its row 0 is replaced by y0 [B, n]); see the module's doc.

    Converged when a Newton step delta is within tolerance, or predicts the next one within it (Hairer & Wanner's
    estimate for Newton's method in implicit Runge-Kutta steps: |x + delta - x*| <= theta / (1 - theta) |delta|,
    theta the ratio of the last two steps' norms); the first step from a guess one optimizer step old is often
    ~1e4 tolerances, the second ~1, the third ~1e-4 (LV black-box, measured): the estimate saves that third
    solve."""
    rtol = max(rtol, TOLERANCE_FLOOR * torch.finfo(guess.dtype).eps)
    x = torch.cat([y0.detach()[None], guess[1:].detach()])
    last, size = float("inf"), float("inf")
    for iteration in range(1, max_iterations + 1):
        starts = x[:-1].clone().requires_grad_()
        with torch.enable_grad():
            ends = flow(starts)
        P = jacobians(ends, starts)
        delta = newton_step(P, ends.detach() - x[1:])
        size = _norm(delta[1:], x[1:], rtol, atol)
        if not size < float("inf"):
            break
        theta = size / last
        if size <= 1 or (0 < theta < 1 and theta / (1 - theta) * size <= 1):  # theta 0: no last step
            states = _implicit(y0, x, ends, P)
            return Shot(states, iteration, size, states.detach())
        x, last = x + delta, size
    return Shot(None, iteration, size)


def jacobians(ends: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """dends_i/dstarts_i [K, B, n, n] of independent members (each end depends on its own start only): the n
    rows of every member by one backward pass batched over the unit vectors."""
    n = ends.shape[-1]
    units = torch.eye(n, dtype=ends.dtype, device=ends.device).reshape(n, *([1] * (ends.dim() - 1)), n)
    rows = torch.autograd.grad(ends, starts, units.expand(n, *ends.shape), retain_graph=True,
                               is_grads_batched=True)[0]  # [n, K, B, n]
    return rows.movedim(0, -2)


def newton_step(P: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """delta [K + 1, B, n]: delta_0 = 0, delta_(i+1) = P_i delta_i + r_i (the linearised chain of intervals)."""
    return chain(P, residual, torch.zeros_like(residual[0]))


def _implicit(y0: torch.Tensor, x: torch.Tensor, ends: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """x~ (see the module's doc): values one Newton step past x, gradient that of the fixed point."""
    P = P.detach()
    return chain(P, ends - (P @ x[:-1].unsqueeze(-1)).squeeze(-1), y0)


def chain(P: torch.Tensor, b: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """z [K + 1, B, n] of z_(i+1) = P_i z_i + b_i from z0 [B, n] (P [K, B, n, n], b [K, B, n]), by a parallel
    prefix over the affine maps (Hillis & Steele: log2 K rounds of batched products, each map composed with the one
    2^r before it) instead of K small products one after another: ~2.5 ms -> a few hundred microseconds at K = 120
    on one thread (measured), and on a GPU log K launches instead of K."""
    A, c = P, b
    shift = 1
    while shift < len(P):
        A, c = (torch.cat([A[:shift], A[shift:] @ A[:-shift]]),
                torch.cat([c[:shift], (A[shift:] @ c[:-shift].unsqueeze(-1)).squeeze(-1) + c[shift:]]))
        shift *= 2
    return torch.cat([z0[None], (A @ z0.unsqueeze(-1)).squeeze(-1) + c])  # z_(i+1) = (P_i...P_0) z0 + c_i


def _norm(delta: torch.Tensor, x: torch.Tensor, rtol: float, atol) -> float:
    """The worst member's RMS of delta / (atol + rtol max(|x|, |x + delta|)) over the states (the solvers'
    controller norm); inf if anything is not finite."""
    scale = atol + rtol * torch.maximum(x.abs(), (x + delta).abs())
    value = float((delta / scale).pow(2).mean(-1).sqrt().max())
    return value if value == value else float("inf")
