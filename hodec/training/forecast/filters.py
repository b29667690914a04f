"""State estimators by filtering (forecast.estimator: ekf | map): each window's state at its origin from its history,
through the model itself: its solve, its state Jacobian (the generated one the stiff solvers use) and the generated
observation Jacobian of the fitted columns. Nothing is learned; setup() sets the prior.

Both read the history as  y_k = h(x(t_k)) + v_k,  v_k ~ N(0, R_k), R_k diagonal: per column sigma² (forecast.
measurement_noise; default the column's noise model's sigma at the state — laplace: variance 2 sigma², log-scale:
sigma |h| to first order — else the column's standard deviation in the training data / 10), and the state at the
window's start as  x(t0) ~ N(mu, Sigma): prior `model`, the mean and covariance of the model's own states at the
training windows' t0, simulated from the trajectories' initial states (a relative JITTER on the diagonal keeps
Sigma invertible where the model's states do not vary).

ekf  the continuous-discrete extended Kalman filter, dx = f(t, x) dt + dw with E[dw dwᵀ] = Q dt (forecast.
     process_noise, per state): between samples the mean is the model's solve and the covariance is carried along
     it, P <- Phi P Phiᵀ + Q_d per substep (below); at each sample the Joseph-form update with H = dh/dx, which
     stays symmetric positive semi-definite in rounding. A missing cell gets a zero row of H, unit variance and a
     zero innovation: it changes nothing (its column of the gain is P·0 = 0).
map  the maximum a posteriori x(t0) over the whole history (moving horizon), the model's solve taken as exact (no
     process noise: process_noise is the ekf's only): Levenberg-Marquardt, batched over the windows, on
     |(y - h(x(t_k)))/sigma|² + (x(t0) - mu)ᵀ Sigma⁻¹ (x(t0) - mu), the residuals' Jacobian dh/dx(t_k) ·
     dx(t_k)/dx(t0) from the same transition matrices; accepted steps only lower the cost (which the model's solve
     evaluates exactly), so the approximate Jacobian costs iterations, not accuracy. At most ITERATIONS iterations
     (CONVERGED ends them) run without gradients, then one Gauss-Newton step with them: at the optimum its
     derivative is the implicit one (dx0/dθ = -A⁻¹ ∂g/∂θ), so training differentiates the estimate without
     unrolling the iterations. The state at the origin is then the model's solve from x(t0). The same windows
     again (the next epoch's training or evaluation) start from their last estimates. Most windows converge in a
     few iterations; a window on a long curved valley of the cost may still creep at ITERATIONS (measured with 10
     on the glucose benchmark's UVA/Padova model, float32, rk4: cost gains of 0.1-1.5 per iteration for the
     slowest of 80 windows at iteration 10, the median window's step below 1e-3 prior standard deviations by
     iteration 7; finite-difference Jacobians through the solver crept the same: the cost's shape, not the
     Jacobian).

Transition matrices: each interval between samples is cut into SUBSTEPS equal substeps h; on each, the Jacobian is
held at A = the mean of its values at the substep's ends (the trapezoid rule for the first Magnus term: local error
O(h³), second order overall), Phi = exp(A h) (torch.linalg.matrix_exp), and Q_d = ∫₀ʰ exp(A s) Q exp(A s)ᵀ ds by
Simpson's rule (local error O(h⁵ |A|⁴ |Q|)). For a linear time-invariant model Phi is exact; with x' = a x,
a = -0.5, sample gap 1, Q_d differs from the closed form q (e^{2a} - 1)/(2a) by 1.4e-6 relative (tested).
Exponentials of A h only, never of -A h: a stiff stable model cannot overflow them (Van Loan's exact block form
exponentiates both). The spec's events jump the solved states (once: the filter's interval from a sample starts
after the events there), but Phi does not hold a jump's own derivative (exact for jumps that add to a state).
"""
from __future__ import annotations

import contextlib
import math

import torch

from ...errors import HodecError, did_you_mean
from ..result import FitError
from .base import Estimator, simulated_states
from .encoders import masked_moments
from .predict import window_groups
from .windows import Windows

SUBSTEPS = 4  # per interval between history samples (see the module docstring)
ITERATIONS = 20  # map: the most Levenberg-Marquardt iterations before the differentiable Gauss-Newton step
# map: converged after an iteration (not the first) in which no window's cost, -2 log posterior, fell by this much
# (its posterior density by 0.05%)
CONVERGED = 1e-3
DAMPING = 1e-3  # map: the first Levenberg-Marquardt damping (times the diagonal of the normal matrix)
JITTER = 1e-6  # of each state's variance + its mean², added to the prior covariance's diagonal
CACHED = 4  # windows whose groups (and map's last estimates) are kept


class Filter(Estimator):
    """What ekf and map share: the options checked against the model, the prior (buffers set by setup), the noise,
    and the model's columns and Jacobians at the windows' states."""

    def __init__(self, problem, options):
        super().__init__(problem, options)
        model = problem.model
        n = len(model.state_names)
        self.problem = problem  # its groups, conditions and inputs: the windows' solves (not a module: no weights)
        self.register_buffer("prior_mean", torch.zeros(n))
        self.register_buffer("prior_cov", torch.eye(n))
        self.register_buffer("process_noise", _process_noise(options.process_noise, model.state_names))
        sigma, modelled = _measurement_sigmas(problem, options.measurement_noise)
        self.register_buffer("sigma", sigma)  # [m] per column; where `modelled`, the noise model's instead
        self.register_buffer("modelled", modelled, persistent=False)
        slots = {row[0] for row in model.observation_table if row[3]}
        self._generated_h = not any(name in slots for name in problem.columns)  # else H by autodiff
        self._seen: list = []  # (windows, their window_groups) of the last CACHED windows seen
        self._starts: dict = {}  # map: id(group) -> (the group, its windows' last estimates of x(t0))

    @torch.no_grad()
    def setup(self, problem, windows: Windows) -> None:
        states = simulated_states(problem, problem.model, windows.trajectory, windows.t0)
        if states is None or len(states) < 2:  # an untrained model diverges on its own, or one window: broad
            mean = problem.model.initial_state().detach() if states is None else states[0]
            cov = torch.diag(mean * mean + 1)
        else:
            mean, cov = states.mean(0), torch.cov(states.T).reshape(states.shape[1], -1)
        self.prior_mean.copy_(mean)
        self.prior_cov.copy_(cov + torch.diag(JITTER * (cov.diagonal() + mean * mean) + torch.finfo(mean.dtype).tiny))

    def transfer(self, state: dict, names: tuple, own_names: tuple):
        """Nothing in a filter is learned: a sparsify refit's keeps its own set-up (its own model's prior)."""

    def forward(self, model, windows: Windows) -> torch.Tensor:
        out = windows.hist_y.new_zeros(windows.size, len(self.prior_mean))
        parts = [(index, self.estimate(model, g, windows.select(index))) for index, g in self.groups(windows)]
        return out.index_copy(0, torch.cat([index for index, _ in parts]), torch.cat([x for _, x in parts]))

    def groups(self, windows: Windows) -> list:
        """The windows' groups (window_groups), kept for the last CACHED windows (training's and validation's)."""
        for seen, groups in self._seen:
            if seen is windows:
                return groups
        groups = window_groups(self.problem, windows)
        self._seen = [*self._seen[1 - CACHED:], (windows, groups)]
        return groups

    def estimate(self, model, g, windows: Windows) -> torch.Tensor:
        """[W', n]: the state at the origins of one group's windows."""
        raise NotImplementedError

    # ---------------------------------------------------------------- the model at the windows' states
    def solve(self, model, g, x0: torch.Tensor, ts: torch.Tensor, after_events: bool = False) -> torch.Tensor:
        """States [T, W', n] at ts [T, W'] from x0 [W', n]; after_events: x0 is the state after the events at ts[0]
        (a filter's interval after the first: the last one's solve applied them)."""
        return self.problem.solve(model, g, x0, ts, f"{self.name} state estimation", after_events=after_events)

    def columns_at(self, model, g, t: torch.Tensor, x: torch.Tensor) -> tuple:
        """The fitted columns h [..., m], their Jacobian H [..., m, n] and variances R [..., m] at states x [..., n]
        and times t [...] (one per window: t's last axis is the windows')."""
        h = self.problem.predict(model, g, x, t)
        with _reading(self.problem, model, g):
            H = self.column_jacobian(model, g, t, x)
            return h, H, self.variances(model, t, x, h)

    def column_jacobian(self, model, g, t, x) -> torch.Tensor:
        n, kinds = x.shape[-1], self.problem.kinds
        if self._generated_h:  # a state column's row is a unit vector; an observable's, the generated Jacobian's
            J = model.observation_jacobian(t, x) if any(kind == "observable" for kind, _ in kinds) else None
            unit = torch.eye(n, dtype=x.dtype, device=x.device)
            return torch.stack([J[..., i, :] if kind == "observable" else unit[i].expand(*x.shape[:-1], n)
                                for kind, i in kinds], -2)
        return _autodiff_jacobian(lambda y: self.problem.predict(model, g, y, t), x)  # a column calls a slot

    def variances(self, model, t, x, h) -> torch.Tensor:
        sigma = self.sigma.expand(h.shape)
        if bool(self.modelled.any()):
            noise = self.problem.noise
            scale = model.noise_scale(t, x, model.observables(t, x)).index_select(-1, noise.rows.to(x.device))
            laplace = torch.tensor([d.endswith("laplace") for d in noise.distributions], device=x.device)
            scale = torch.where(noise.log_scale.to(x.device), scale * h.abs(), scale)
            scale = torch.where(laplace, scale * math.sqrt(2), scale)
            sigma = torch.where(self.modelled, scale, sigma)
        return sigma * sigma

    def state_jacobian(self, model, g, t, x) -> torch.Tensor:
        """df/dx [..., n, n] at states x [..., n], times t [...]: the generated Jacobian (the stiff solvers')."""
        with _reading(self.problem, model, g):
            return model.jacobian(t, x)

    def transitions(self, model, g, ts: torch.Tensor, xs: torch.Tensor, noise: bool) -> tuple:
        """Per substep of the grid ts [K + 1, W'] along the solved states xs [K + 1, W', n]: Phi [K, W', n, n] and
        (with noise) Q_d [K, W', n, n] (see the module docstring)."""
        J = self.state_jacobian(model, g, ts, xs)
        h = (ts[1:] - ts[:-1])[..., None, None]
        half = torch.linalg.matrix_exp(0.25 * (J[:-1] + J[1:]) * h)  # exp(A h/2)
        phi = half @ half
        if not noise:
            return phi, None
        Q = torch.diag(self.process_noise)
        return phi, h / 6 * (Q + 4 * half @ Q @ half.mT + phi @ Q @ phi.mT)


class EKF(Filter):
    """ekf: the continuous-discrete extended Kalman filter through the history (module docstring)."""
    name = "ekf"

    def estimate(self, model, g, windows: Windows) -> torch.Tensor:
        return self.filtered(model, g, windows)[0]

    def filtered(self, model, g, windows: Windows) -> tuple:
        """The filtered mean [W', n] and covariance [W', n, n] at the windows' origins (the last history time:
        padding repeats it)."""
        W, n = windows.size, len(self.prior_mean)
        x, P = self.prior_mean.expand(W, n), self.prior_cov.expand(W, n, n)
        t = windows.t0
        for k in range(windows.hist_t.shape[0]):
            x, P = self.propagate(model, g, x, P, t, windows.hist_t[k], after_events=k > 0)
            t = windows.hist_t[k]
            x, P = self.update(model, g, x, P, t, windows.hist_y[k], windows.hist_mask[k])
        return x, P

    def propagate(self, model, g, x, P, t_from, t_to, after_events: bool) -> tuple:
        """The mean solved and the covariance carried from t_from to t_to [W'] (SUBSTEPS substeps)."""
        fraction = torch.linspace(0, 1, SUBSTEPS + 1, dtype=x.dtype, device=x.device).unsqueeze(1)
        ts = t_from + (t_to - t_from) * fraction  # [SUBSTEPS + 1, W']
        xs = self.solve(model, g, x, ts, after_events)
        phi, Qd = self.transitions(model, g, ts, xs, bool((self.process_noise > 0).any()))
        for s in range(SUBSTEPS):
            P = phi[s] @ P @ phi[s].mT + (0 if Qd is None else Qd[s])
        return xs[-1], 0.5 * (P + P.mT)

    def update(self, model, g, x, P, t, y, mask) -> tuple:
        """The Joseph-form measurement update at one sample (y, mask [W', m])."""
        h, H, R = self.columns_at(model, g, t, x)
        H = H * mask.unsqueeze(-1)
        R = torch.where(mask, R, torch.ones_like(R))
        innovation = torch.where(mask, y - h, torch.zeros_like(h))
        S = H @ P @ H.mT + torch.diag_embed(R)
        K = _solve(S, H @ P).mT  # P Hᵀ S⁻¹ (S and P symmetric)
        x = x + (K @ innovation.unsqueeze(-1)).squeeze(-1)
        I_KH = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device) - K @ H
        P = I_KH @ P @ I_KH.mT + K @ (R.unsqueeze(-1) * K.mT)
        return x, 0.5 * (P + P.mT)


class MAP(Filter):
    """map: the MAP estimate of x(t0) from the whole history, then the model's solve to the origin (module
    docstring)."""
    name = "map"

    def estimate(self, model, g, windows: Windows) -> torch.Tensor:
        ts = _substep_grid(windows.t0, windows.hist_t)
        info = _solve(self.prior_cov, torch.eye(len(self.prior_mean)).to(self.prior_cov))
        last, z = self._starts.get(id(g), (None, None))
        z = z if last is g else self.prior_mean.expand(windows.size, -1)
        with torch.no_grad():
            damping = torch.full((windows.size,), DAMPING, dtype=z.dtype, device=z.device)
            for iteration in range(ITERATIONS):
                z, damping, gain = self.levenberg_marquardt(model, g, windows, ts, info, z, damping)
                if iteration and gain < CONVERGED:
                    break
        z = z.detach()
        self._starts = {key: entry for key, entry in self._starts.items()
                        if any(entry[0] is group for _, groups in self._seen for _, group in groups)}
        self._starts[id(g)] = (g, z)
        z = z + self.gauss_newton(model, g, windows, ts, info, z, None)[0]  # carries the gradients (docstring)
        return self.solve(model, g, z, torch.stack([windows.t0, windows.origin]))[-1]

    def levenberg_marquardt(self, model, g, windows, ts, info, z, damping) -> tuple:
        """One step, kept by each window whose cost it lowers; damping / 3 there, x 10 elsewhere. Also the largest
        decrease of a window's cost."""
        try:
            step, cost = self.gauss_newton(model, g, windows, ts, info, z, damping)
            trial = z + step
            new = self.cost(self.residuals(model, g, windows, ts[::SUBSTEPS], trial)[0], info, trial)
        except FitError:  # the model's solve from this state (or the trial) failed: keep it, damp harder
            return z, damping * 10, math.inf
        better = new < cost
        gain = float(torch.where(better, cost - new, torch.zeros_like(cost)).max())
        return torch.where(better.unsqueeze(-1), trial, z), torch.where(better, damping / 3, damping * 10), gain

    def gauss_newton(self, model, g, windows, ts, info, z, damping) -> tuple:
        """The (damped) Gauss-Newton step from z [W', n] and the cost there."""
        r, G = self.residuals(model, g, windows, ts, z, jacobian=True)
        A = G.mT @ G + info
        gradient = (G.mT @ r.unsqueeze(-1)).squeeze(-1) - (z - self.prior_mean) @ info
        if damping is not None:
            A = A + damping[:, None, None] * torch.diag_embed(A.diagonal(dim1=-2, dim2=-1))
        return _solve(A, gradient.unsqueeze(-1)).squeeze(-1), self.cost(r, info, z)

    def residuals(self, model, g, windows, ts, z, jacobian: bool = False) -> tuple:
        """The whitened residuals (y - h)/sigma [W', Th m] (0 at missing cells) of the solve from z over the grid ts
        (t0, then SUBSTEPS points per history interval; or only the samples), and their Jacobian -d/dz
        [W', Th m, n]."""
        xs = self.solve(model, g, z, ts)
        every = (ts.shape[0] - 1) // windows.hist_t.shape[0]
        h, H, R = self.columns_at(model, g, windows.hist_t, xs[every::every])
        mask, sigma = windows.hist_mask, R.sqrt()
        r = torch.where(mask, (windows.hist_y - h) / sigma, torch.zeros_like(h)).transpose(0, 1).flatten(1)
        if not jacobian:
            return r, None
        phi, _ = self.transitions(model, g, ts, xs, noise=False)
        sensitivity, at_samples = torch.eye(z.shape[-1], dtype=z.dtype, device=z.device), []
        for s in range(phi.shape[0]):
            sensitivity = phi[s] @ sensitivity
            if (s + 1) % every == 0:
                at_samples.append(sensitivity)
        G = H @ torch.stack(at_samples) * (mask / sigma).unsqueeze(-1)  # [Th, W', m, n]
        return r, G.transpose(0, 1).flatten(1, 2)

    def cost(self, r, info, z) -> torch.Tensor:
        """The negative log posterior (x2, up to a constant) [W']."""
        dz = z - self.prior_mean
        return (r * r).sum(-1) + (dz @ info * dz).sum(-1)


def _substep_grid(t0: torch.Tensor, hist_t: torch.Tensor) -> torch.Tensor:
    """[1 + SUBSTEPS Th, W]: t0, then SUBSTEPS equal substeps to each history time in turn."""
    knots = torch.cat([t0.unsqueeze(0), hist_t])
    fraction = torch.linspace(0, 1, SUBSTEPS + 1, dtype=t0.dtype, device=t0.device)[1:].reshape(1, -1, 1)
    inner = knots[:-1].unsqueeze(1) + (knots[1:] - knots[:-1]).unsqueeze(1) * fraction  # [Th, SUBSTEPS, W]
    return torch.cat([t0.unsqueeze(0), inner.flatten(0, 1)])


def _solve(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """A⁻¹ B for symmetric positive definite A [..., n, n], B [..., n, k], in the coordinates where A's diagonal is 1
    (states of very different scales, as a physiological model's, make A ill-conditioned in float32 otherwise)."""
    d = A.diagonal(dim1=-2, dim2=-1).clamp(min=torch.finfo(A.dtype).tiny).rsqrt()
    return d.unsqueeze(-1) * torch.linalg.solve(A * d.unsqueeze(-1) * d.unsqueeze(-2), d.unsqueeze(-1) * B)


def _autodiff_jacobian(f, x: torch.Tensor) -> torch.Tensor:
    """d f(x)/dx [..., k, n] of a map of states x [..., n] to [..., k] whose batch members are independent (the
    Jacobian of the sum over the members holds each member's rows)."""
    batch = tuple(range(x.dim() - 1))
    return torch.func.jacrev(lambda y: f(y).sum(batch))(x).movedim(0, -2)


@contextlib.contextmanager
def _reading(problem, model, g):
    """`with _reading(problem, model, g):` the model reads the group's inputs and param values (as Problem.solve and
    Problem.observe do)."""
    if g.inputs:
        model.set_inputs(g.inputs)
    with problem.conditions.applied(model, g):
        yield


def _process_noise(value, states: tuple) -> torch.Tensor:
    """forecast.process_noise: one variance per time unit for every state, or a map state -> variance (others 0)."""
    if not isinstance(value, dict):
        return torch.full((len(states),), float(value))
    for name in value:
        if name not in states:
            hint = did_you_mean(name, states)
            raise HodecError(f"forecast.process_noise: '{name}' is not a state of the model (states: "
                             f"{', '.join(states)})" + (f"; {hint}" if hint else ""), "fit config")
    return torch.tensor([float(value.get(name, 0.0)) for name in states])


def _measurement_sigmas(problem, given: dict) -> tuple:
    """Per fitted column: its sigma [m] and whether its noise model gives it instead [m] (forecast.
    measurement_noise wins over both; the default without a noise model: the training data's sd / 10)."""
    columns = problem.columns
    for name in given:
        if name not in columns:
            hint = did_you_mean(name, columns)
            raise HodecError(f"forecast.measurement_noise: '{name}' is not a fitted column of the data (fitted "
                             f"columns: {', '.join(columns)})" + (f"; {hint}" if hint else ""), "fit config")
    m = len(columns)
    values = torch.cat([g.y.reshape(-1, m) for g in problem.groups])
    _, sd = masked_moments(values, torch.cat([g.mask.reshape(-1, m) for g in problem.groups]))
    sigma = torch.tensor([float(given[c]) if c in given else float(sd[k]) / 10 for k, c in enumerate(columns)])
    modelled = torch.tensor([problem.noise.active and c not in given for c in columns])
    return sigma, modelled


FILTERS = {cls.name: cls for cls in (EKF, MAP)}
