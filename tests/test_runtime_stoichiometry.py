"""runtime.stoichiometry on its own: the dense, scatter and CSR forms of dy/dt = flux @ S agree with the product
computed here from the table, in value and gradient, whatever path a batch size selects."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hodec.runtime.stoichiometry import Stoichiometry

TABLE = ((0, 0, -1.0), (0, 1, 1.0), (1, 1, -2.0), (1, 2, 1.0), (2, 2, -1.0), (2, 0, 0.5), (3, 3, 1.0))


def accumulator(accumulation, sparse_min_rows=None):
    class Net(Stoichiometry, nn.Module):
        state_names = ("a", "b", "c", "d")
        fluxes_table = tuple((f"r{i}", "reaction") for i in range(4))
        stoichiometry_table = TABLE

    Net.accumulation = accumulation
    net = Net()
    nn.Module.__init__(net)
    net._init_stoichiometry(lambda values, kind=torch.float64: torch.as_tensor(values, dtype=kind))
    if sparse_min_rows is not None:
        net._sparse_min_rows = sparse_min_rows  # force the CSR path from that many rows on
    return net


@pytest.mark.parametrize("accumulation, sparse_min_rows", [("dense", None), ("scatter", None), ("dense", 2),
                                                             ("scatter", 2)])
def test_accumulate_is_flux_times_stoichiometry(accumulation, sparse_min_rows):
    S = np.zeros((4, 4))
    for f, s, c in TABLE:
        S[f, s] += c
    net = accumulator(accumulation, sparse_min_rows)
    flux = torch.rand(5, 3, 4, dtype=torch.float64, requires_grad=True)
    dy = net.accumulate(flux)
    np.testing.assert_allclose(dy.detach().numpy(), flux.detach().numpy() @ S, rtol=1e-14, atol=1e-15)
    w = torch.rand_like(dy)
    (grad,) = torch.autograd.grad((dy * w).sum(), flux)
    np.testing.assert_allclose(grad.numpy(), w.numpy() @ S.T, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(net.accumulate(flux[0, 0]).detach().numpy(), flux[0, 0].detach().numpy() @ S,
                               rtol=1e-14, atol=1e-15)
