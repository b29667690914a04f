"""FIT.yaml's slot_weights under hodec sparsify: they start a fresh model only. A warm-started path point and the
refit go on from the weights the previous fit trained (loading the file again would undo them)."""
from __future__ import annotations

import copy

import torch

from hodec.compiler import load_text
from hodec.training.sparsify import PenalisedTrainer, l1_path, spec_prior
from hodec.training.sparsify.path import refit_gated
from hodec.training.sparsify_config import load_sparsify_config

from test_sparsify import ABC, FAST, synthetic

SLOTTED = ABC + "neural f(A) -> C hidden 3\n"


def _weights_file(cls, path):
    start = {name: torch.full_like(v, 0.1) for name, v in cls().slot("f").state_dict().items()}
    torch.save({"f": start}, path)
    return start


def _same(a, b):
    for name, value in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[name], value, rtol=0, atol=0)


def test_the_warm_started_path_and_the_refit_continue_from_trained_slot_weights(tmp_path):
    data = synthetic(3)
    cls = load_text(SLOTTED, "abc.hode", gates=True)
    start = _weights_file(cls, tmp_path / "w.pt")
    cfg = load_sparsify_config({**FAST, "epochs": 4, "refit_epochs": 3, "lambda1": [1e-3, 1e-1],
                                "warm_start": True, "slot_weights": str(tmp_path / "w.pt")})
    phi0 = spec_prior(cls, cfg.fit)
    (_, first), (_, second) = list(l1_path(cls, data, cfg, cfg.lambda1, phi0))
    # the first fit started from the file
    torch.manual_seed(cfg.fit.seed)
    fresh = cls()
    fresh.slot("f").load_state_dict(start)
    hand = PenalisedTrainer(fresh, data, cfg.fit, 1e-3, cfg.lambda2, phi0)
    hand.train()
    _same(hand.model, first.model)
    # the second from the first's end, not from the file again
    plain = load_sparsify_config({**FAST, "epochs": 4, "refit_epochs": 3})
    hand = PenalisedTrainer(copy.deepcopy(first.model), data, plain.fit, 1e-1, cfg.lambda2, phi0)
    hand.train()
    _same(hand.model, second.model)
    # and the refit from the L1 model's weights
    refit, _ = refit_gated(second.model, data, cfg, phi0)
    hand_refit, _ = refit_gated(second.model, data, plain, phi0)
    _same(hand_refit, refit)
    assert not torch.equal(refit.slot("f").state_dict()["net.0.weight"], start["net.0.weight"])
