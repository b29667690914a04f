"""The interface every method object follows (see explicit.py and rosenbrock.py), and what one step returns.

Tensors are flat inside the solvers: y [B, n]; t and h [B], each batch member at its own time with its own step.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import torch


class Step(NamedTuple):
    """One attempted step from (t, y) of size h."""

    y1: torch.Tensor  # [B, n] the solution proposed at t + h
    error: torch.Tensor  # [B, n] the local error estimate (absolute)
    dense: Any  # whatever the method's interpolate needs
    f1: Optional[torch.Tensor] = None  # f(t + h, y1) where the method has it (first same as last)
    stiffness: Optional[torch.Tensor] = None  # [B] an estimate of h·|λ_max| (explicit methods), else None


class Method:
    """A one-step method with an error estimate and dense output, used by integrate().

    name: what solve() calls it; order: q of the error estimate (err ~ h^(q+1)); stiff: implicit or linearly
    implicit (no stiffness check); stiff_above: h·|λ| beyond which an explicit method's accepted steps count as
    stability-bound (see tableaus.py).
    """

    name: str = ""
    order: int = 1
    stiff: bool = False
    stiff_above: Optional[float] = None

    def __init__(self, tableau):
        """A method defined by its tableau (name, order and coefficients)."""
        self.tableau = tableau
        self.name = tableau.name
        self.order = tableau.order
        self._constants: dict = {}  # (dtype, device) -> the coefficient tensors, see _tensors

    def init(self, problem, t: torch.Tensor, y: torch.Tensor, f0: torch.Tensor):
        """The cache the first step reads: f0 = f(t, y), already evaluated by the loop. The coefficient tensors
        are made here, before a compiled step first reads them (else it compiles twice)."""
        self._tensors(y)
        return f0

    def step(self, problem, t: torch.Tensor, y: torch.Tensor, h: torch.Tensor, cache) -> Step:
        raise NotImplementedError

    def after(self, cache, step: Step, accepted: torch.Tensor):
        """The cache for the next step: each accepted member moves on, each rejected one keeps its own."""
        return cache

    def restart(self, problem, t: torch.Tensor, y: torch.Tensor, cache, jumped: torch.Tensor):
        """The cache after the members in jumped [B] changed state at t (an event): f(t, y) recomputed for them
        where the cache holds it (first same as last, or a first step not yet taken)."""
        if cache is None:
            return None
        return torch.where(jumped[:, None], problem.f(t, y), cache)

    def interpolate(self, t: torch.Tensor, h: torch.Tensor, y: torch.Tensor, step: Step,
                    theta: torch.Tensor) -> torch.Tensor:
        """y(t + theta·h) [B, n] inside the attempted step, theta [B] in [0, 1]."""
        raise NotImplementedError

    def _tensors(self, like: torch.Tensor) -> dict:
        """The method's coefficient tensors (from _tables) in like's dtype and device, made once each."""
        key = (like.dtype, like.device)
        if key not in self._constants:
            self._constants[key] = self._tables(lambda x: torch.tensor(x, dtype=like.dtype, device=like.device))
        return self._constants[key]

    def _tables(self, as_tensor: Callable) -> dict:
        """{name: tensor} of the coefficients a step reads, as_tensor(numbers) making each."""
        raise NotImplementedError


def combine(stages: list, coefficients: tuple, weights: torch.Tensor) -> torch.Tensor:
    """Σ_j coefficients[j] · stages[j] (weights: the coefficients as a tensor). Eagerly one matmul over the stacked
    stages (the fewest operations, which is what a small system's step costs); when compiling, written out term
    by term with constant coefficients, so that Inductor fuses the whole step into a few loops (a matmul would be
    an external kernel of its own)."""
    if torch.compiler.is_compiling():
        terms = [c * k for c, k in zip(coefficients, stages) if c != 0]
        return sum(terms[1:], terms[0])
    return torch.stack(stages, -1) @ weights[:len(stages)]
