"""hodec.solvers.steady_state against analytic steady states, its gradient (implicit function theorem) against
finite differences and the analytic derivative, conservation laws, the integration fallback, and its errors."""
import math

import pytest
import torch

from hodec.solvers import SteadyStateError, steady_state


pytestmark = pytest.mark.usefixtures("float64")


def production_decay(a, b):
    """dx/dt = a - b x, dy/dt = x - y^2: steady state x = a/b, y = sqrt(a/b)."""
    return lambda y: torch.stack([a - b * y[:, 0], y[:, 0] - y[:, 1] ** 2], -1)


def test_analytic_steady_state_and_its_gradient():
    a = torch.tensor(3.0, requires_grad=True)
    b = torch.tensor(0.5, requires_grad=True)
    y = steady_state(production_decay(a, b), torch.tensor([[1.0, 1.0], [20.0, 0.1]]))
    expected = torch.tensor([6.0, math.sqrt(6.0)])
    assert torch.allclose(y, expected.expand(2, 2), rtol=1e-12, atol=0)
    y[0, 1].backward()
    # d sqrt(a/b)/da = 1 / (2 sqrt(a/b) b), d/db = -a / (2 sqrt(a/b) b^2)
    assert math.isclose(float(a.grad), 1 / (2 * math.sqrt(6) * 0.5), rel_tol=1e-10)
    assert math.isclose(float(b.grad), -3 / (2 * math.sqrt(6) * 0.25), rel_tol=1e-10)


def test_gradient_matches_finite_differences_with_the_jacobian_given():
    def run(k):
        f = lambda y: torch.stack([1 - k * y[:, 0] * y[:, 1], k * y[:, 0] * y[:, 1] - 2 * y[:, 1] + 0.1], -1)  # noqa
        jac = lambda y: torch.stack([torch.stack([-k * y[:, 1], -k * y[:, 0]], -1),  # noqa: E731
                                     torch.stack([k * y[:, 1], k * y[:, 0] - 2], -1)], -2)
        return steady_state(f, torch.tensor([[1.0, 1.0]]), jac)
    k = torch.tensor(1.3, requires_grad=True)
    y = run(k)
    assert torch.allclose(y[0, 1], torch.tensor(0.55))  # y2 = (1 + 0.1) / 2 whatever k
    y[0, 0].backward()
    h = 1e-6
    fd = (run(torch.tensor(1.3 + h))[0, 0] - run(torch.tensor(1.3 - h))[0, 0]) / (2 * h)
    assert math.isclose(float(k.grad), float(fd), rel_tol=1e-7)
    assert math.isclose(float(k.grad), -1 / (1.3 ** 2 * 0.55), rel_tol=1e-10)  # x = 1 / (k y2)


def test_a_conservation_law_keeps_the_total_of_the_start_and_differentiates_in_it():
    """A <-> B (kf, kr): A* = kr T / (kf + kr), T = A0 + B0; J is singular."""
    kf, kr = torch.tensor(2.0, requires_grad=True), torch.tensor(0.5, requires_grad=True)
    y0 = torch.tensor([[1.0, 3.0], [0.0, 1.0]], requires_grad=True)
    f = lambda y: (kf * y[:, 0] - kr * y[:, 1]).unsqueeze(-1) * torch.tensor([-1.0, 1.0])  # noqa: E731
    y = steady_state(f, y0)
    T = torch.tensor([4.0, 1.0])
    assert torch.allclose(y[:, 0], 0.5 * T / 2.5, rtol=1e-12)
    assert torch.allclose(y[:, 1], 2.0 * T / 2.5, rtol=1e-12)
    y[0, 0].backward()
    assert math.isclose(float(kf.grad), -0.5 * 4 / 2.5 ** 2, rel_tol=1e-10)
    assert math.isclose(float(kr.grad), 4 * 2 / 2.5 ** 2, rel_tol=1e-10)
    assert torch.allclose(y0.grad[0], torch.tensor([0.2, 0.2]), rtol=1e-10)  # dA*/dA0 = dA*/dB0 = kr/(kf+kr)


def test_the_stable_state_the_dynamics_reach_not_any_root():
    """x' = x - x^3: stable states -1 and 1, unstable 0. From 0.05 Newton converges to 0, from 1/sqrt(3) its
    matrix is singular: both integrate to 1; -0.3 goes to -1, 5 to 1."""
    f = lambda y: y - y ** 3  # noqa: E731
    y = steady_state(f, torch.tensor([[0.05], [1 / math.sqrt(3)], [-0.3], [5.0]]))
    assert torch.allclose(y, torch.tensor([[1.0], [1.0], [-1.0], [1.0]]), atol=1e-12, rtol=0)


def test_inactive_members_are_returned_as_they_start():
    f = production_decay(torch.tensor(3.0), torch.tensor(0.5))
    y0 = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    y = steady_state(f, y0, active=torch.tensor([False, True]))
    assert torch.equal(y[0], y0[0]) and torch.allclose(y[1], torch.tensor([6.0, math.sqrt(6)]))


def test_no_steady_state_is_an_error_naming_member_and_state():
    f = lambda y: torch.stack([torch.ones_like(y[:, 0]), -y[:, 1]], -1)  # noqa: E731 - x grows forever
    with pytest.raises(SteadyStateError, match=r"batch member 1.*'grow' still changes at rate 1") as err:
        steady_state(f, torch.tensor([[0.0, 1.0], [0.0, 1.0]]), t_max=1e3, state_names=["grow", "decay"],
                     active=torch.tensor([False, True]))
    assert err.value.member == 1
