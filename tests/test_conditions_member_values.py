"""CompiledModel.member_values: a per-member parameter table that is a function of other params, read by every
generated method for a block; gradients flow to what the table was computed from."""
import math

import torch

import hodec

SPEC = """model Decay
param k = 0.5 positive
param k_a = 0.3 positive
param k_b = 0.8 positive
param A0 = 2 fixed
state x = A0
der x = -k * x
observe obs = 3 * x
"""


def decay(tmp_path):
    path = tmp_path / "decay.hode"
    path.write_text(SPEC)
    return hodec.compile(path).model_class()().double()


def test_each_member_reads_its_row_and_gradients_reach_the_source_params(tmp_path):
    m = decay(tmp_path)
    names = [row[0] for row in m.parameters_table]
    p = m.parameter_values()
    k = names.index("k")
    # member 0 reads k = k_a, member 1 k = k_b: the table is built from p, so d/d k_a and d/d k_b exist
    rows = [p.clone(), p.clone()]
    rows[0] = torch.cat([p[:k], p[names.index("k_a")].reshape(1), p[k + 1:]])
    rows[1] = torch.cat([p[:k], p[names.index("k_b")].reshape(1), p[k + 1:]])
    table = torch.stack(rows)
    ts = torch.linspace(0, 2, 5, dtype=torch.float64)
    with m.member_values(table):
        ys = m.simulate(ts, m.initial_state((2,)), rtol=1e-10, atol=1e-12)
        obs = m.observe(ys, ts)
    expected = torch.stack([2 * torch.exp(-0.3 * ts), 2 * torch.exp(-0.8 * ts)], 1)
    assert torch.allclose(ys[..., 0], expected, rtol=1e-8)
    assert torch.allclose(obs[..., 0], 3 * expected, rtol=1e-8)
    ys[-1, 0, 0].backward()
    # d/d log k_a of 2 exp(-k_a t) at t = 2: -2 t k_a exp(-k_a t)
    positive = [row[0] for row in m.parameters_table if row[2] == "positive"]
    grad = m.raw_positive.grad
    assert math.isclose(float(grad[positive.index("k_a")]), -2 * 2 * 0.3 * math.exp(-0.6), rel_tol=1e-6)
    assert float(grad[positive.index("k")]) == 0.0 and float(grad[positive.index("k_b")]) == 0.0
    # outside the block the model reads its own params again
    assert m.parameter_values().shape == (len(names),)
