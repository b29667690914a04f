"""FIT.yaml's slot_weights and frozen: the slots start from the file's weights (not the seeded initialisation),
frozen arrays keep their values through training, the others move; bad files and names are located errors."""
from __future__ import annotations

import math

import pytest
import torch
import yaml

from hodec.compiler import compile_text
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import read_data
from hodec.training.loop import Trainer

SPEC = """model Decay
param k = 0.5 positive
state x = 1
der x = -k * x + f(x)
neural f(x) hidden 3 activation tanh
observe obs = x
"""


def _setup(tmp_path, weights, **keys):
    model = compile_text(SPEC, "decay.hode").model_class()()
    data = tmp_path / "data.csv"
    data.write_text("id,t,obs\n" + "".join(f"1,{t},{math.exp(-0.3 * t)!r}\n" for t in (0, 0.5, 1, 1.5, 2)))
    torch.save(weights, tmp_path / "w.pt")
    config = tmp_path / "sub" / "FIT.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"method": "vanilla", "epochs": 3, "lr": 0.05, "slot_weights": "../w.pt",
                                      **keys}))
    cfg = load_config(config)
    return Trainer(model, read_data(data, model, cfg), cfg)


def _weights(seed=1):
    g = torch.Generator().manual_seed(seed)
    return {"f": {"net.0.weight": torch.randn(3, 1, generator=g, dtype=torch.float64),
                  "net.0.bias": torch.randn(3, generator=g, dtype=torch.float64),
                  "net.2.weight": torch.randn(1, 3, generator=g, dtype=torch.float64),
                  "net.2.bias": torch.randn(1, generator=g, dtype=torch.float64)}}


def test_slots_start_from_the_file_and_frozen_arrays_stay(tmp_path):
    weights = _weights()
    trainer = _setup(tmp_path, weights, frozen=["f.net.0.weight", "f.net.0.bias"])
    slot = dict(trainer.model.slot("f").named_parameters())
    for key, value in weights["f"].items():  # the path is relative to the FIT.yaml in sub/
        assert torch.equal(slot[key].detach(), value)
    x = torch.tensor([[0.7]], dtype=torch.float64)  # the slot computes the file's MLP, written out by hand
    hand = weights["f"]["net.2.weight"] @ torch.tanh(weights["f"]["net.0.weight"] @ x[0] + weights["f"]["net.0.bias"])
    assert float(trainer.model.slot("f")(x).detach()) == pytest.approx(float(hand + weights["f"]["net.2.bias"]), rel=1e-14)
    trainer.train()
    slot = dict(trainer.model.slot("f").named_parameters())
    assert torch.equal(slot["net.0.weight"].detach(), weights["f"]["net.0.weight"])
    assert torch.equal(slot["net.0.bias"].detach(), weights["f"]["net.0.bias"])
    assert not torch.equal(slot["net.2.weight"].detach(), weights["f"]["net.2.weight"])


def test_a_whole_slot_frozen(tmp_path):
    trainer = _setup(tmp_path, _weights(), frozen=["f"])
    k = float(trainer.model.params()["k"])
    trainer.train()
    for key, value in _weights()["f"].items():
        assert torch.equal(dict(trainer.model.slot("f").named_parameters())[key].detach(), value)
    assert float(trainer.model.params()["k"]) != k  # the mechanistic param still trains


@pytest.mark.parametrize("weights, frozen, message", [
    ({"g": _weights()["f"]}, [], "'g' is no neural slot"),
    ({"f": {**_weights()["f"], "net.0.weight": torch.zeros(2, 1)}}, [], "'net.0.weight' is (2, 1)"),
    ({"f": {"net.0.weight": torch.zeros(3, 1)}}, [], "expected the arrays"),
    (_weights(), ["f.net.9.weight"], "frozen: 'f.net.9.weight'"),
])
def test_bad_weights_and_names_are_located(tmp_path, weights, frozen, message):
    with pytest.raises(HodecError, match=None) as err:
        _setup(tmp_path, weights, frozen=frozen)
    assert message in str(err.value)


def test_a_file_that_is_no_weights_file(tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"not a torch file")
    with pytest.raises(HodecError) as err:
        _setup(tmp_path, _weights(), slot_weights=str(tmp_path / "bad.pt"))
    assert "bad.pt" in str(err.value) and "not a torch file" in str(err.value)
