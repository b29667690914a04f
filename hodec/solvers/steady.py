"""steady_state(): where f(y) = 0, from y0, by damped Newton, with gradients by the implicit function theorem.

    y = steady_state(f, y0, jacobian=None, rtol=1e-10, atol=1e-12)   # f(y [B, n]) -> [B, n]

Conservation laws (vectors c with c·f(y) = 0 for every y, as a stoichiometry makes them: A <-> B keeps A + B)
make the Jacobian J singular and leave a family of steady states; the one the dynamics reach from y0 keeps
c·y = c·y0. So Newton solves F(y) = f(y) + P (y − y0) = 0, P the projector onto J's left null space at y0: F = 0
gives P (y − y0) = 0 (P f = 0) and then f = 0, and J + P is regular. Where Newton does not converge (no descent,
a singular matrix, NaN), the system is integrated to t_max and Newton polishes from there; a member still without a
steady state is a SteadyStateError naming it and its fastest-changing state.

Newton also converges to unstable steady states, which the dynamics do not approach, and a singular direction
of J that is not a conservation law gives F = 0 where f is not: such a member is integrated instead.

The result carries gradients with respect to whatever f reads (params) and y0 (the conserved totals) by one Newton
step taken with gradients at the solution: y* − (J + P)⁻¹ F(y*), whose value is y* (F(y*) ≈ 0) and whose
derivative is the implicit function theorem's, −(J + P)⁻¹ ∂F/∂θ.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch

from .errors import SolverError
from .solve import solve

MAX_HALVINGS = 12  # line-search halvings of one Newton step (the step shrinks to 1/4096)


class SteadyStateError(SolverError):
    """No steady state was found for a batch member (its index: .member; .detail: what happened there)."""

    def __init__(self, member: int, detail: str):
        super().__init__(f"no steady state found for batch member {member}: {detail}")
        self.member, self.detail = member, detail


def steady_state(f: Callable, y0: torch.Tensor, jacobian: Optional[Callable] = None, *, rtol: float = 1e-10,
                 atol: float = 1e-12, max_iterations: int = 50, t_max: float = 1e6,
                 active: Optional[torch.Tensor] = None, state_names: Optional[Sequence[str]] = None) -> torch.Tensor:
    """The steady state reached from y0 [B, n] (a member's conserved totals kept), [B, n]. jacobian(y) -> [B, n, n]
    (by reverse-mode autodiff of f without it); the tolerances bound each component of the last Newton step
    (atol + rtol |y|, at least 100 float epsilons relative); active [B] (bool): the members to solve (the others
    are returned as y0). Raises SteadyStateError naming the member where none is found."""
    eps = torch.finfo(y0.dtype).eps
    rtol = max(rtol, 100 * eps)
    jac = jacobian or (lambda y: torch.func.jacrev(lambda x: f(x).sum(0))(y).movedim(1, 0))
    active = torch.ones(y0.shape[0], dtype=torch.bool, device=y0.device) if active is None else active
    start = y0.detach()
    with torch.no_grad():
        projector = _conservation_projector(jac(start), eps)
        newton = _Newton(f, jac, start, projector, active, rtol, atol)
        y, done = newton.run(start, max_iterations)
        if not bool(done.all()):  # integrate the members Newton could not solve, then polish from there
            ts = torch.tensor([0.0, t_max], dtype=y0.dtype, device=y0.device)
            far = solve(lambda t, x: f(x) * (~done).unsqueeze(-1), torch.where(done.unsqueeze(-1), y, start), ts,
                        rtol=max(rtol, 1e-8), atol=atol, state_names=state_names)[-1]
            y, done = newton.run(far, max_iterations)
        if not bool(done.all()):
            _fail(f, y, done, state_names, t_max)
    if not torch.is_grad_enabled():
        return y
    # One Newton step with gradients at the solution: its value is y, its derivative the implicit function theorem's.
    matrix = (jac(y).detach() + projector) * active[:, None, None] + _identity(y) * (~active)[:, None, None]
    residual = (f(y) + (projector @ (y - y0).unsqueeze(-1)).squeeze(-1)) * active.unsqueeze(-1)
    return torch.where(active.unsqueeze(-1), y - torch.linalg.solve(matrix, residual), y0)


class _Newton:
    """Damped Newton on F(y) = f(y) + P (y − y0), the inactive members held (F = 0, matrix I)."""

    def __init__(self, f, jac, y0, projector, active, rtol, atol):
        self.f, self.jac, self.y0, self.projector, self.active = f, jac, y0, projector, active
        self.rtol, self.atol = rtol, atol

    def residual(self, y):
        F = self.f(y) + (self.projector @ (y - self.y0).unsqueeze(-1)).squeeze(-1)
        return torch.where(self.active.unsqueeze(-1), F, torch.zeros_like(F))

    def run(self, y, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(y after the iterations, [B] whether each member converged: its last full step within tolerance)."""
        done = ~self.active
        F = self.residual(y)
        for _ in range(iterations):
            if bool(done.all()):
                break
            matrix = torch.where(self.active[:, None, None], self.jac(y) + self.projector, _identity(y))
            step, info = torch.linalg.solve_ex(matrix, -F)
            bad = (info != 0) | ~torch.isfinite(step).all(-1)
            step = torch.where((bad | done).unsqueeze(-1), torch.zeros_like(step), step)
            # a step within tolerance is taken whole (|F| is at its rounding level there and may not decrease)
            small = (step.abs() <= self.atol + self.rtol * y.abs()).all(-1) & ~bad
            y, F, ok = self._damped(y, F, step, small)
            done = done | small
            if bool((bad | ~ok)[~done].any()):  # Newton is stuck for some member: leave it to the integration
                break
        return y, done & self._accepted(y)

    def _accepted(self, y) -> torch.Tensor:
        """[B]: whether each member's solution is a stable steady state. f itself within tolerance over the
        fastest time scale 1/|J|: a singular direction of J that is not a conservation law makes F = 0 where f is
        not. No eigenvalue of J with a positive real part beyond rounding: Newton also finds unstable steady
        states, which the dynamics from y0 do not reach."""
        J = self.jac(y)
        n, scale = J.shape[-1], J.abs().amax((-2, -1))
        still = (self.f(y).abs() <= n * scale.unsqueeze(-1) * (self.atol + self.rtol * y.abs())).all(-1)
        growth = torch.linalg.eigvals(J).real.amax(-1)
        return ~self.active | (still & (growth <= 1e3 * torch.finfo(y.dtype).eps * n * scale))

    def _damped(self, y, F, step, whole):
        """y + λ step with λ = 1, 1/2, ... the first to decrease |F| (every member its own λ; λ = 1 where whole)."""
        norm = F.norm(dim=-1)
        lam = torch.ones_like(norm)
        accepted = torch.zeros_like(norm, dtype=torch.bool)
        norm = torch.where(whole, torch.full_like(norm, torch.inf), norm)
        trial, F_trial = y, F
        for _ in range(MAX_HALVINGS):
            candidate = y + lam.unsqueeze(-1) * step
            F_candidate = self.residual(candidate)
            better = F_candidate.norm(dim=-1) <= (1 - 1e-4 * lam) * norm
            better = (better | (step == 0).all(-1)) & torch.isfinite(F_candidate).all(-1) & ~accepted
            trial = torch.where(better.unsqueeze(-1), candidate, trial)
            F_trial = torch.where(better.unsqueeze(-1), F_candidate, F_trial)
            accepted = accepted | better
            if bool(accepted.all()):
                break
            lam = torch.where(accepted, lam, lam / 2)
        return trial, F_trial, accepted


def _conservation_projector(J: torch.Tensor, eps: float) -> torch.Tensor:
    """[B, n, n]: the orthogonal projector onto the left null space of each member's J (singular values below
    n · 1000 · eps of the largest)."""
    U, S, _ = torch.linalg.svd(J)
    scale = S.amax(-1, keepdim=True).clamp(min=torch.finfo(J.dtype).tiny)
    null = (S <= J.shape[-1] * 1000 * eps * scale).to(J.dtype)
    return (U * null.unsqueeze(-2)) @ U.transpose(-1, -2)


def _identity(y: torch.Tensor) -> torch.Tensor:
    return torch.eye(y.shape[-1], dtype=y.dtype, device=y.device).expand(y.shape[0], -1, -1)


def _fail(f, y, done, state_names, t_max: float):
    member = int((~done).nonzero()[0, 0])
    rates = f(y)[member].abs()
    j = int(torch.nan_to_num(rates, nan=float("inf")).argmax())
    name = state_names[j] if state_names else f"state {j}"
    raise SteadyStateError(member, f"Newton's method did not converge, and after integrating to t = {t_max:g} "
                                   f"'{name}' still changes at rate {float(f(y)[member, j]):.3g} (the system may "
                                   f"oscillate, grow without bound, or approach its steady state too slowly)")
