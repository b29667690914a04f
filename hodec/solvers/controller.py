"""Step-size control, per batch member: the weighted error norm, accept or reject, the next step, the first step.

An integral controller (Hairer, Nørsett & Wanner I, II.4): h_new = h · clamp(safety · err^(−1/(q+1)), shrink,
grow), no growth right after a rejection. A non-finite error counts as infinitely large: the step is rejected
and shrinks, so a member that overflows ends in a located step-size underflow rather than NaN output.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Controller:
    rtol: float
    atol: object  # a float or a tensor broadcastable to [B, n]
    safety: float = 0.9
    shrink: float = 0.2
    grow: float = 10.0

    def scale(self, y0: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        return self.atol + self.rtol * torch.maximum(y0.abs(), y1.abs())

    def norm(self, error: torch.Tensor, y0: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
        """The RMS of error / (atol + rtol·max(|y0|, |y1|)) per member [B]; +inf where anything is not finite."""
        ratio = error / self.scale(y0, y1)
        value = ratio.pow(2).mean(-1).sqrt()
        return torch.where(torch.isfinite(value) & torch.isfinite(y1).all(-1), value,
                           torch.full_like(value, torch.inf))

    def next_step(self, h: torch.Tensor, err: torch.Tensor, accepted: torch.Tensor, rejected_before: torch.Tensor,
                  order: int) -> torch.Tensor:
        factor = (self.safety * torch.clamp(err, min=1e-10) ** (-1.0 / (order + 1))).clamp(self.shrink, self.grow)
        # no growth after a rejection, nor right after one (fewer operations than building the caps: this runs
        # every step, and a small system's step is made of such operations)
        return h * torch.where(accepted & ~rejected_before, factor, factor.clamp(max=1.0))

    def first_step(self, problem, t0: torch.Tensor, y0: torch.Tensor, f0: torch.Tensor, span: torch.Tensor,
                   order: int) -> torch.Tensor:
        """Hairer's starting step (I, II.4): one extra f evaluation, per member, capped by the member's span."""
        scale = self.atol + self.rtol * y0.abs()
        rms = lambda x: (x / scale).pow(2).mean(-1).sqrt()  # noqa: E731
        d0, d1 = rms(y0), rms(f0)
        tiny = torch.full_like(d0, 1e-6)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), tiny, 0.01 * d0 / torch.where(d1 > 0, d1, torch.ones_like(d1)))
        h0 = torch.minimum(h0, span)
        f1 = problem.f(t0 + h0, y0 + h0[:, None] * f0)
        d2 = rms(f1 - f0) / h0
        big = torch.maximum(d1, d2)
        h1 = torch.where(big <= 1e-15, torch.maximum(tiny, h0 * 1e-3),
                         (0.01 / torch.where(big > 0, big, torch.ones_like(big))) ** (1.0 / (order + 1)))
        h = torch.minimum(100 * h0, h1)
        h = torch.where(torch.isfinite(h) & (h > 0), h, tiny)
        return torch.minimum(h, span)
