"""solve_adjoint: gradients with respect to y0, params (shared and per-sample) and output times against central finite
differences of the solution (scipy's DOP853, or a tight solve() of another method) and against backpropagation
through solve(), in float64; and memory that does not grow with the number of steps."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from scipy.integrate import solve_ivp

import hodec
from hodec.errors import HodecError
from hodec.solvers import SolverError, TooManySteps, solve, solve_adjoint

SPEC_DIR = Path(__file__).resolve().parent.parent / "specs"
F64 = torch.float64
TIGHT = dict(rtol=1e-11, atol=1e-11)  # the solves of the finite differences


def _lv(theta):
    def f(t, y):
        x, z = y[..., 0], y[..., 1]
        return torch.stack([theta[0] * x - theta[1] * x * z, theta[2] * x * z - theta[3] * z], -1)
    return f


def _grads(loss, tensors):
    for x in tensors:
        x.grad = None
    loss.backward()
    return [x.grad.clone() for x in tensors]


def _central(loss_of, x: torch.Tensor, h: float = 1e-5, entries=None) -> torch.Tensor:
    """Central differences of loss_of() with respect to the entries of x (all, or those listed), in place."""
    out = torch.zeros_like(x)
    flat, grad = x.data.view(-1), out.view(-1)
    for i in (range(flat.numel()) if entries is None else entries):
        value = float(flat[i])
        with torch.no_grad():
            flat[i] = value + h
            up = float(loss_of())
            flat[i] = value - h
            down = float(loss_of())
        flat[i] = value
        grad[i] = (up - down) / (2 * h)
    return out


def _close(actual, expected, rtol, entries=None):
    if entries is not None:
        actual, expected = actual.reshape(-1)[entries], expected.reshape(-1)[entries]
    scale = expected.abs().max()
    assert (actual - expected).abs().max() <= rtol * scale, (actual, expected)


def test_lotka_volterra_many_output_times_against_scipy_differences_and_backprop():
    theta = torch.tensor([1.3, 0.9, 0.8, 1.8], dtype=F64, requires_grad=True)
    y0 = torch.tensor([0.44249296, 4.6280594], dtype=F64, requires_grad=True)
    ts = torch.linspace(0.0, 10.0, 61, dtype=F64, requires_grad=True)
    weights = torch.linspace(1.0, 2.0, 61, dtype=F64)[:, None] * torch.tensor([1.0, 0.5], dtype=F64)

    def loss(ys):
        return (weights * ys.square()).sum()

    stats = {}
    adjoint = _grads(loss(solve_adjoint(_lv(theta), y0, ts, [theta], "tsit5", 1e-10, 1e-10, stats=stats)),
                     [y0, theta, ts])
    assert stats["adjoint_steps"] > 0 and stats["method"] == "tsit5"
    backprop = _grads(loss(solve(_lv(theta), y0, ts, "tsit5", 1e-10, 1e-10)), [y0, theta, ts])
    for a, b in zip(adjoint, backprop):
        _close(a, b, 1e-6)

    def scipy_loss():  # the solution by scipy's DOP853: independent of hodec's solvers
        a, b, c, d = theta.detach().tolist()
        rhs = lambda t, u: [a * u[0] - b * u[0] * u[1], c * u[0] * u[1] - d * u[1]]  # noqa: E731
        t = ts.detach().numpy()
        sol = solve_ivp(rhs, (t[0], t[-1]), y0.detach().numpy(), "DOP853", t_eval=t, rtol=1e-13, atol=1e-13)
        return float((weights.numpy() * sol.y.T ** 2).sum())

    _close(adjoint[0], _central(scipy_loss, y0), 1e-6)
    _close(adjoint[1], _central(scipy_loss, theta), 1e-6)
    entries = [0, 1, 30, 60]
    _close(adjoint[2], _central(scipy_loss, ts, entries=entries), 1e-6, entries)


def _batch_case():
    """Three LV members, each its own time grid (shifted and stretched), shared params."""
    theta = torch.tensor([1.3, 0.9, 0.8, 1.8], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[0.44, 4.6], [1.0, 2.0], [3.0, 1.0]], dtype=F64, requires_grad=True)
    ts = torch.linspace(0.0, 4.0, 21, dtype=F64)[:, None] * torch.tensor([1.0, 0.7, 1.3], dtype=F64)
    ts = (ts + torch.tensor([0.0, 0.5, -1.0], dtype=F64)).requires_grad_()
    weights = torch.linspace(1.0, 2.0, 21, dtype=F64)[:, None, None]
    return theta, y0, ts, lambda ys: (weights * ys.square()).sum()


def test_batch_with_per_member_time_grids_and_shared_params():
    theta, y0, ts, loss = _batch_case()
    stats = {}
    ys = solve_adjoint(_lv(theta), y0, ts, [theta], "dopri5", 1e-10, 1e-10, stats=stats)
    assert len(set(stats["accepted_each"])) == 3  # each member its own steps
    adjoint = _grads(loss(ys), [y0, theta, ts])
    backprop = _grads(loss(solve(_lv(theta), y0, ts, "dopri5", 1e-10, 1e-10)), [y0, theta, ts])
    for a, b in zip(adjoint, backprop):
        _close(a, b, 1e-6)

    def reference():
        return loss(solve(_lv(theta), y0, ts, "tsit5", **TIGHT))

    _close(adjoint[1], _central(reference, theta), 1e-6)
    entries = [0, 3, 4]  # one state of each member
    _close(adjoint[0], _central(reference, y0, entries=entries), 1e-6, entries)
    entries = [0, 2, 31, 62]  # two members' starts, an inner time and the last
    _close(adjoint[2], _central(reference, ts, entries=entries), 1e-6, entries)


def test_per_sample_params_as_member_params_or_as_params():
    """A [B, 1] forcing each member reads its own row of: the same gradient given as member_params (one plain
    product) or as params (the batched product of shared ones), against finite differences."""
    theta, y0, ts, loss = _batch_case()
    forcing = torch.tensor([[0.5], [1.0], [2.0]], dtype=F64, requires_grad=True)

    def f(t, y):
        return _lv(theta)(t, y) + torch.stack([forcing[:, 0], -0.5 * forcing[:, 0]], -1)

    as_member = _grads(loss(solve_adjoint(f, y0, ts, [theta], "tsit5", 1e-10, 1e-10, member_params=[forcing])),
                       [theta, forcing])
    as_shared = _grads(loss(solve_adjoint(f, y0, ts, [theta, forcing], "tsit5", 1e-10, 1e-10)), [theta, forcing])
    for a, b in zip(as_member, as_shared):
        _close(a, b, 1e-9)
    expected = _central(lambda: loss(solve(f, y0, ts, "dopri5", **TIGHT)), forcing)
    _close(as_member[1], expected, 1e-6)


def test_non_autonomous_gradients_including_output_times():
    """y' = −k y + sin(ω t) (the forcing moves with t): gradients of k, ω, y0 and every output time."""
    params = torch.tensor([0.7, 2.0], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0], [-0.5]], dtype=F64, requires_grad=True)
    ts = torch.tensor([0.3, 1.0, 2.5, 4.0], dtype=F64, requires_grad=True)

    def f(t, y):
        return -params[0] * y + torch.sin(params[1] * t)[..., None]

    def loss(ys):
        return (ys * torch.tensor([[1.0], [3.0]], dtype=F64)).square().sum()

    adjoint = _grads(loss(solve_adjoint(f, y0, ts, [params], "tsit5", 1e-11, 1e-11)), [params, y0, ts])

    def reference():
        return loss(solve(f, y0, ts, "dopri5", **TIGHT))

    for grad, x in zip(adjoint, [params, y0, ts]):
        _close(grad, _central(reference, x), 1e-6)


def _van_der_pol(mu):
    def f(t, y):
        return torch.stack([y[..., 1], mu[0] * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)
    return f


def test_stiff_van_der_pol_checkpoint_sweep():
    """μ = 50, stiff: with rodas5p the backward pass re-solves each output interval with it and backpropagates."""
    mu = torch.tensor([50.0], dtype=F64, requires_grad=True)
    y0 = torch.tensor([2.0, 0.0], dtype=F64, requires_grad=True)
    ts = torch.linspace(0.0, 20.0, 5, dtype=F64)

    def loss(ys):
        return ys[:, 0].square().sum()

    stats = {}
    ys = solve_adjoint(_van_der_pol(mu), y0, ts, [mu], "rodas5p", 1e-8, 1e-8, stats=stats)
    adjoint = _grads(loss(ys), [mu, y0])
    assert stats["adjoint_steps"] > 0
    backprop = _grads(loss(solve(_van_der_pol(mu), y0, ts, "rodas5p", 1e-8, 1e-8)), [mu, y0])
    for a, b in zip(adjoint, backprop):
        _close(a, b, 1e-5)

    def reference():
        return loss(solve(_van_der_pol(mu), y0, ts, "rodas5p", **TIGHT))

    _close(adjoint[0], _central(reference, mu), 1e-5)


def test_backsolve_with_the_stiff_method_keeps_its_order():
    """The augmented system's Jacobian for rodas5p includes f's second derivatives: with only the blocks J and −Jᵀ
    the backward solve took ~200× the forward solve's steps."""
    theta = torch.tensor([1.3, 0.9, 0.8, 1.8], dtype=F64, requires_grad=True)
    y0 = torch.tensor([0.44, 4.6], dtype=F64, requires_grad=True)
    ts = torch.linspace(0.0, 4.0, 5, dtype=F64)
    stats = {}
    ys = solve_adjoint(_lv(theta), y0, ts, [theta], "rodas5p", 1e-9, 1e-9, sweep="backsolve", stats=stats)
    adjoint = _grads(ys.square().sum(), [theta, y0])
    assert stats["adjoint_steps"] < 3 * stats["steps"]
    backprop = _grads(solve(_lv(theta), y0, ts, "rodas5p", 1e-9, 1e-9).square().sum(), [theta, y0])
    for a, b in zip(adjoint, backprop):
        _close(a, b, 1e-6)


def test_backsolve_where_the_state_cannot_be_integrated_backward_is_an_error():
    """y' = −100 (y − cos t): backward in time the damped mode grows like e^(100 t); the backsolve says so and
    names the checkpoint sweep, which gets the gradient right."""
    k = torch.tensor([100.0], dtype=F64, requires_grad=True)

    def f(t, y):
        return -k * (y - torch.cos(t)[..., None])

    y0 = torch.tensor([2.0], dtype=F64)
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    with pytest.raises(SolverError, match=r"state ends [0-9.e+]+ % away from the forward solution at t = 0.5 "
                                          r"\(output 1, batch member 0\).*sweep='checkpoint'"):
        solve_adjoint(f, y0, ts, [k], "tsit5", 1e-8, 1e-8, sweep="backsolve").sum().backward()
    grad, = _grads(solve_adjoint(f, y0, ts, [k], "rodas5p", 1e-10, 1e-10, sweep="checkpoint").sum(), [k])
    _close(grad, _central(lambda: solve(f, y0, ts, "rodas5p", **TIGHT).sum(), k, h=1e-3), 1e-5)


def test_a_failing_backward_solve_says_it_is_the_adjoint():
    theta = torch.tensor([1.3, 0.9, 0.8, 1.8], dtype=F64, requires_grad=True)
    ys = solve_adjoint(_lv(theta), torch.tensor([0.44, 4.6], dtype=F64), [0.0, 2.0], [theta], "tsit5", 1e-4, 1e-4,
                       adjoint_rtol=1e-12, adjoint_atol=1e-12, max_steps=40)
    with pytest.raises(TooManySteps, match=r"more than 40 steps.*in the adjoint's backward integration of output "
                                           r"interval 1"):
        ys.sum().backward()


def _lv_module():
    model = hodec.compile(SPEC_DIR / "lotka_volterra.hode").model_class()().double()
    with torch.no_grad():
        model.raw_positive.add_(torch.tensor([0.05, -0.03, 0.02, 0.04], dtype=F64))
    return model


def test_generated_module_with_its_parameters():
    model = _lv_module()
    params = list(model.parameters())
    y0 = model.initial_state().detach().requires_grad_()
    ts = torch.linspace(0.0, 4.0, 21, dtype=F64)

    def loss(ys):
        return ys.square().sum()

    adjoint = _grads(loss(solve_adjoint(model, y0, ts, params, "tsit5", 1e-10, 1e-10)), [y0, *params])
    backprop = _grads(loss(solve(model, y0, ts, "tsit5", 1e-10, 1e-10)), [y0, *params])
    for a, b in zip(adjoint, backprop):
        _close(a, b, 1e-6)

    def reference():
        return loss(solve(model, y0, ts, "dopri5", **TIGHT))

    _close(adjoint[0], _central(reference, y0), 1e-6)
    _close(adjoint[1], _central(reference, model.raw_positive), 1e-6)


def test_generated_module_with_a_per_sample_param():
    """set_params gives `a` one value per member (the Parameter batch_raw [B, 1]); the shared ones stay in
    raw_positive."""
    model = _lv_module()
    model.set_params({"a": torch.tensor([1.0, 1.3, 1.6])})
    y0 = model.initial_state().detach().expand(3, 2).clone().requires_grad_()
    ts = torch.linspace(0.0, 3.0, 16, dtype=F64)

    def loss(ys):
        return (ys.square() * torch.tensor([1.0, 2.0, 3.0], dtype=F64)[:, None]).sum()

    adjoint = _grads(loss(solve_adjoint(model, y0, ts, [model.raw_positive], "tsit5", 1e-10, 1e-10,
                                        member_params=[model.batch_raw])), [model.batch_raw, model.raw_positive])

    def reference():
        return loss(solve(model, y0, ts, "dopri5", **TIGHT))

    _close(adjoint[0], _central(reference, model.batch_raw), 1e-6)
    _close(adjoint[1], _central(reference, model.raw_positive), 1e-6)


class _SavedBytes:
    """The bytes of the tensors autograd keeps for backward passes (saved_tensors_hooks): live now and at most."""

    def __init__(self):
        self.now = self.peak = 0

    def pack(self, x):
        return _Held(x, self)

    @staticmethod
    def unpack(held):
        return held.x


class _Held:
    def __init__(self, x, counter: _SavedBytes):
        # Detached: a saved output holding its own grad_fn would be a reference cycle through C++ (never freed).
        self.x, self.counter, self.size = x.detach(), counter, x.numel() * x.element_size()
        counter.now += self.size
        counter.peak = max(counter.peak, counter.now)

    def __del__(self):
        self.counter.now -= self.size


def _peak_saved_bytes(how: str, t_end: float) -> tuple:
    """Peak bytes autograd keeps through a forward and backward solve of a rotation (every interval alike)."""
    omega = torch.tensor([1.0, 2.0], dtype=F64, requires_grad=True)
    y0 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64, requires_grad=True)

    def f(t, y):
        return torch.stack([-omega * y[..., 1], omega * y[..., 0]], -1)

    counter, stats = _SavedBytes(), {}
    options = dict(method="tsit5", rtol=1e-8, atol=1e-8, stats=stats)
    ts = torch.arange(0.0, t_end + 1e-9, 2.5, dtype=F64) if how == "checkpoint" else \
        torch.linspace(0.0, t_end, 5, dtype=F64)
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, counter.unpack):
        if how == "backprop":
            ys = solve(f, y0, ts, **options)
        else:
            ys = solve_adjoint(f, y0, ts, [omega], sweep=how, **options)
        ys.square().sum().backward()
    return counter.peak, stats["steps"]


def test_memory_does_not_grow_with_the_number_of_steps():
    """Ten times the steps (a ten times longer horizon, the same five outputs): backprop through solve() keeps
    ten times the tensors, the backsolve the same few (the forward solve keeps nothing per step, the backward
    pass one evaluation's graph at a time)."""
    short, short_steps = _peak_saved_bytes("backsolve", 5.0)
    long, long_steps = _peak_saved_bytes("backsolve", 50.0)
    assert long_steps > 8 * short_steps
    assert long == short
    backprop_short, _ = _peak_saved_bytes("backprop", 5.0)
    backprop_long, _ = _peak_saved_bytes("backprop", 50.0)
    assert backprop_long > 8 * backprop_short > 8 * long  # the check sees what backprop keeps


def test_checkpoint_memory_is_one_interval():
    """Ten times as many output intervals of the same length: the checkpoint sweep keeps one interval's steps."""
    short, short_steps = _peak_saved_bytes("checkpoint", 5.0)
    long, long_steps = _peak_saved_bytes("checkpoint", 50.0)
    assert long_steps > 8 * short_steps
    assert long < 1.2 * short
    backprop, _ = _peak_saved_bytes("backprop", 50.0)
    assert backprop > 5 * long


def test_member_params_must_carry_the_batch_shape():
    y0 = torch.ones(3, 2, dtype=F64)
    with pytest.raises(HodecError, match=r"member_params\[0\] has shape \[2, 1\].*\[3\]"):
        solve_adjoint(_lv(torch.ones(4, dtype=F64)), y0, [0.0, 1.0], member_params=[torch.ones(2, 1)])
