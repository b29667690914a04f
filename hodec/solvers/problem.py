"""The right-hand side a solve integrates, in the solvers' flat layout, with the calls counted."""
from __future__ import annotations

from typing import Callable, Optional

import torch


class Problem:
    """f(t [B], y [B, n]) -> [B, n]; jacobian(t, y) -> [B, n, n] or None (the stiff methods then differentiate f
    with torch.func); autonomous: f does not read t (Rosenbrock methods then skip ∂f/∂t). n_f and n_jac count
    the calls made outside torch.compile."""

    def __init__(self, f: Callable, jacobian: Optional[Callable] = None, autonomous: bool = False):
        self._f = f
        self._jacobian = jacobian
        self.autonomous = autonomous
        self.n_f = 0
        self.n_jac = 0
        self._forward_ad = True

    def f(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():  # a counter inside a compiled step would be a guard: recompiles
            self.n_f += 1
        return self._f(t, y)

    def jacobian(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling():
            self.n_jac += 1
        if self._jacobian is not None:
            return self._jacobian(t, y)
        # Each member's row depends on its own state only: the Jacobian of the sum over members is theirs, [n, B, n].
        rows = torch.func.jacrev(lambda x: self._f(t, x).sum(0))(y)
        return rows.movedim(1, 0)

    def time_derivative(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """∂f/∂t [B, n]: zero when autonomous, else by forward-mode autodiff in t (one f evaluation with a tangent;
        a central difference erred by ~1e-5 in float32 and cost a Rosenbrock method its order: 781 steps for 206),
        or by a central difference (two evaluations) for an f that runs autograd itself (the adjoint's)."""
        if self.autonomous:
            return torch.zeros_like(y)
        if self._forward_ad:
            try:
                if not torch.compiler.is_compiling():
                    self.n_f += 1
                return torch.func.jvp(lambda s: self._f(s, y), (t,), (torch.ones_like(t),))[1]
            except RuntimeError:  # functorch cannot wrap an f that calls torch.autograd.grad
                self._forward_ad = False
        dt = torch.finfo(y.dtype).eps ** (1 / 3) * torch.clamp(t.abs(), min=1.0)
        return (self.f(t + dt, y) - self.f(t - dt, y)) / (2 * dt[:, None])
