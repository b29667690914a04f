"""`hodec petab write` / `hodec petab fit` on PEtab-SciML problems with networks. A network in the right-hand side
that a `.hode` slot declaration makes is written as that declaration with the problem's arrays as its starting
weights: hodec fit's model from the written folder alone gives `hodec petab evaluate`'s llh (the PEtab network
module on the PEtab tables: an independent path) at epoch 0; a short fit (the default method, homotopy) lowers the
-llh and leaves the frozen arrays as the HDF5 file holds them. A network no declaration makes is refused by write,
naming it, and trained as it is by fit. A network run before simulation on parameters is a slot called in a let;
one setting an initial value is refused, located."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
import torch
import yaml

from benchmarks.petab_sciml_problems import SUITE
from hodec.cli import main
from hodec.compiler import load
from hodec.interop.petab.evaluate import evaluate_problem
from hodec.interop.petab.problem import read_problem
from hodec.training.config import load_config
from hodec.training.data import read_data
from hodec.training.loop import Trainer
from hodec.training.report import load_checkpoint

pytestmark = pytest.mark.skipif(not SUITE.is_dir(), reason="the PEtab-SciML test suite is not in ../shared/data")
TIGHT = {"rtol": 1e-12, "atol": 1e-14}  # evaluate's tolerances
BENCHMARKS = SUITE.parents[2] / "petab_sciml_benchmarks" / "Benchmark-Models"


def _llh_at_epoch_0(out: Path) -> float:
    """The llh of hodec fit's objective on the written folder alone, before any step (the Trainer loads
    slot_weights.pt, as hodec fit does)."""
    model = load(out / "model.hode")()
    cfg = load_config(out / "FIT.yaml", solver=TIGHT)
    problem = Trainer(model, read_data(out / "data.csv", model, cfg), cfg).problem
    return -float(sum(cells.sum() for _, cells in problem.group_errors(problem.model, "test", check=False)).detach())


def test_a_network_in_the_rhs_is_written_as_its_slot_with_its_weights(tmp_path):
    """Case 001: Lotka-Volterra, gamma = net1(prey, predator), an MLP 2-5-5-1 with tanh."""
    problem = SUITE / "001" / "petab" / "problem.yaml"
    out = tmp_path / "out"
    assert main(["petab", "write", str(problem), "--out", str(out)]) == 0
    spec = (out / "model.hode").read_text()
    assert "neural net1_o0_0(x0, x1) hidden 5 5 activation tanh" in spec
    assert "let gamma = net1_o0_0(prey, predator)" in spec
    config = yaml.safe_load((out / "FIT.yaml").read_text())
    assert config["slot_weights"] == "slot_weights.pt" and config["weight_decay"] == 0.0 and "frozen" not in config
    moved = tmp_path / "moved"  # the folder alone: its FIT.yaml finds the weights wherever it lies
    shutil.move(out, moved)
    assert _llh_at_epoch_0(moved) == pytest.approx(evaluate_problem(read_problem(problem)).llh, rel=1e-8, abs=0)


def _perturbed(tmp_path: Path, case: str) -> Path:
    """A copy of a suite case whose alpha starts at 1.4 instead of the 1.3 its data were made with."""
    folder = tmp_path / case
    shutil.copytree(SUITE / case / "petab", folder)
    table = folder / "parameters.tsv"
    table.write_text(table.read_text().replace("alpha\tlin\t0.0\t15.0\t1.3\t", "alpha\tlin\t0.0\t15.0\t1.4\t"))
    return folder / "problem.yaml"


def test_petab_fit_homotopy_lowers_the_llh_and_keeps_frozen_arrays(tmp_path):
    """Case 023 (layer1 of net1 frozen), alpha moved off: hodec petab fit, the default method (homotopy) in 2 x 3
    epochs. Its epoch-0 llh is evaluate's; the best epoch's -llh is lower; layer1 is the HDF5 file's, layer3 moved."""
    problem = _perturbed(tmp_path, "023")
    config = tmp_path / "short.yaml"
    config.write_text("steps: 2\nepochs_per_step: 3\nlr: 0.01\n")
    run = tmp_path / "run"
    assert main(["petab", "fit", str(problem), "--out", str(run), "--config", str(config), "--quiet"]) == 0
    written = tmp_path / "run-problem"
    assert yaml.safe_load((written / "FIT.yaml").read_text())["frozen"] == ["net1_o0_0.net.0.weight",
                                                                            "net1_o0_0.net.0.bias"]
    llh0 = evaluate_problem(read_problem(problem)).llh
    assert _llh_at_epoch_0(written) == pytest.approx(llh0, rel=1e-8, abs=0)
    report = json.loads((run / "report.json").read_text())
    assert report["method"] == "homotopy" and len(report["history"]) == 6
    assert report["llh"] > llh0 + 1.0  # -llh lowered (by the best epoch, checked at rtol 1e-8)
    state = load_checkpoint(run / "checkpoint.pt")["model"]
    with h5py.File(problem.parent / "net1_ps.hdf5", "r") as arrays:
        layer1 = {name: torch.as_tensor(arrays[f"parameters/net1/layer1/{name}"][()]) for name in ("weight", "bias")}
        layer3 = torch.as_tensor(arrays["parameters/net1/layer3/weight"][()])
    assert torch.equal(state["slot_modules.0.net.0.weight"], layer1["weight"].double())
    assert torch.equal(state["slot_modules.0.net.0.bias"], layer1["bias"].double())
    assert not torch.equal(state["slot_modules.0.net.4.weight"], layer3.double())


def test_a_network_no_declaration_makes_is_refused_by_write(tmp_path, capsys):
    """Case 019: one network whose two outputs the model reads (two scalar slots sharing its weights)."""
    out = tmp_path / "o"
    assert main(["petab", "write", str(SUITE / "019" / "petab" / "problem.yaml"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "net4.yaml" in err and "network 'net4'" in err and "hodec petab fit" in err
    assert not out.exists()


@pytest.mark.slow  # about a minute of CPU: the network per sample (vmap) in a solve at rtol 1e-12
def test_petab_fit_trains_such_a_network_as_it_is(tmp_path):
    """Case 019 through `hodec petab fit`: the network put into its two slots; one vanilla epoch at lr 1e-12
    reports evaluate's llh, and a few epochs at lr 0.01 move the network's arrays."""
    problem = SUITE / "019" / "petab" / "problem.yaml"
    config = tmp_path / "one.yaml"
    config.write_text("method: vanilla\nepochs: 1\nlr: 1.0e-12\nsolver: {rtol: 1.0e-12, atol: 1.0e-14}\n")
    run = tmp_path / "run"
    assert main(["petab", "fit", str(problem), "--out", str(run), "--config", str(config), "--quiet"]) == 0
    report = json.loads((run / "report.json").read_text())
    assert report["llh"] == pytest.approx(evaluate_problem(read_problem(problem)).llh, rel=1e-8)
    assert "put in by hodec petab fit" in (tmp_path / "run-problem" / "model.hode").read_text()
    config.write_text("method: vanilla\nepochs: 3\nlr: 0.01\n")
    assert main(["petab", "fit", str(problem), "--out", str(run), "--config", str(config), "--quiet",
                 "--force"]) == 0
    state = load_checkpoint(run / "checkpoint.pt")["resume"]["model"]
    with h5py.File(problem.parent / "net4_ps.hdf5", "r") as arrays:
        start = torch.as_tensor(arrays["parameters/net4/layer1/weight"][()]).double()
    assert not torch.equal(state["slot_modules.0.net.network.layers.layer1.weight"], start)


def test_a_network_run_before_simulation_is_a_slot_called_in_a_let(tmp_path):
    """Case 003: gamma = net1(net1_input1, net1_input2), the inputs set by each experiment's condition (numbers
    in e1, the parameters net1_input_pre1/2 in e2). The slot reads the trajectory's params: evaluate's llh."""
    problem = SUITE / "003" / "petab" / "problem.yaml"
    out = tmp_path / "out"
    assert main(["petab", "write", str(problem), "--out", str(out)]) == 0
    spec = (out / "model.hode").read_text()
    assert "let gamma = net1_o0_0(net1_input1, net1_input2)" in spec
    assert "param net1_input_pre1 = 1.0 fixed" in spec and "param net1_input1 = 0 fixed" in spec
    assert yaml.safe_load((out / "FIT.yaml").read_text())["conditions"] == {
        "e1": {"net1_input1": 10.0, "net1_input2": 20.0},
        "e2": {"net1_input1": "net1_input_pre1", "net1_input2": "net1_input_pre2"}}
    assert _llh_at_epoch_0(out) == pytest.approx(evaluate_problem(read_problem(problem)).llh, rel=1e-8, abs=0)


@pytest.mark.parametrize("command", ["write", "fit"])
def test_a_network_setting_an_initial_value_is_refused_located(tmp_path, capsys, command):
    """Case 007: prey's initial value = net1(two parameters): a slot is no .hode initial value."""
    out = tmp_path / "o"
    assert main(["petab", command, str(SUITE / "007" / "petab" / "problem.yaml"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "hybridization.tsv:2" in err and "network 'net1'" in err and "'prey'" in err
    assert not out.exists() and not (tmp_path / "o-problem").exists()


@pytest.mark.slow
@pytest.mark.skipif(not BENCHMARKS.is_dir(), reason="the benchmark problems are not in ../shared/data")
def test_dandekar_written_gives_its_reference_llh(tmp_path):
    """The Dandekar benchmark (SIR + quarantine network 3-10-1, silu): the written folder's epoch-0 llh is the
    reference training llh of expected_*.yaml (its SBML parameters carry names: written as the params' docs)."""
    folder = BENCHMARKS / "Dandekar_Patterns2020"
    out = tmp_path / "out"
    assert main(["petab", "write", str(folder / "train_Dandekar_Patterns2020.yaml"), "--out", str(out)]) == 0
    spec = (out / "model.hode").read_text()
    assert 'param beta = 0.2237607420105867 in (0.0, 10.0) "infection_rate"' in spec
    assert "neural net1_o0_0(x0, x1, x2) hidden 10 activation silu" in spec
    expected = yaml.safe_load((folder / "expected_Dandekar_Patterns2020.yaml").read_text())["llh"]["training"]
    assert _llh_at_epoch_0(out) == pytest.approx(expected, rel=1e-8, abs=0)


@pytest.mark.parametrize("command", ["write", "fit"])
def test_a_network_input_per_condition_from_an_array_file_is_refused_located(tmp_path, capsys, command):
    """Case 038: net6's second input is an array that differs by condition (the slot of a batch of experiments
    has one)."""
    out = tmp_path / "o"
    assert main(["petab", command, str(SUITE / "038" / "petab" / "problem.yaml"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "hybridization.tsv:3" in err and "'net6_input2'" in err and "cond1, cond2" in err
    assert not out.exists() and not (tmp_path / "o-problem").exists()


@pytest.mark.slow  # the network per sample (vmap) in solves at rtol 1e-12
def test_petab_fit_gives_a_network_its_array_input(tmp_path):
    """Case 036: net6 reads prey and an array the same for every condition; put in as it is, with that array,
    a 1-epoch fit at lr 1e-12 reports the suite's llh."""
    case = SUITE / "036"
    config = tmp_path / "one.yaml"
    config.write_text("method: vanilla\nepochs: 1\nlr: 1.0e-12\nsolver: {rtol: 1.0e-12, atol: 1.0e-14}\n")
    run = tmp_path / "run"
    assert main(["petab", "fit", str(case / "petab" / "problem.yaml"), "--out", str(run), "--config", str(config),
                 "--quiet"]) == 0
    expected = yaml.safe_load((case / "solutions.yaml").read_text())["llh"]
    assert json.loads((run / "report.json").read_text())["llh"] == pytest.approx(expected, rel=1e-6)


def _network(tmp_path, layers: list, nodes: list, gelu: str = "none"):
    """A Net of a 2-input network: `layers` (id, type, args), `nodes` (op, target, kwargs) applied in a chain."""
    from hodec.interop.petab.mapping import Net
    from hodec.interop.petab_sciml.network import Network
    from hodec.interop.petab_sciml.spec import read_network

    forward = [{"name": "x", "op": "placeholder", "target": "x", "args": [], "kwargs": {}}]
    for k, (op, target, kwargs) in enumerate(nodes):
        forward.append({"name": f"n{k}", "op": op, "target": target, "args": [forward[-1]["name"]], "kwargs": kwargs})
    forward.append({"name": "output", "op": "output", "target": "output", "args": [forward[-1]["name"]],
                    "kwargs": {}})
    path = tmp_path / "net.yaml"
    path.write_text(yaml.safe_dump({"nn_model_id": "n", "inputs": [{"input_id": "x"}], "forward": forward,
                                    "layers": [{"layer_id": i, "layer_type": t, "args": a} for i, t, a in layers]}))
    net = Net("n", Network(read_network(path), gelu=gelu).double())
    net.inputs = {(0, 0): "a", (0, 1): "b"}
    return net


LINEARS = [("l1", "Linear", {"in_features": 2, "out_features": 4}), ("l2", "Linear", {"in_features": 4,
                                                                                        "out_features": 1})]


@pytest.mark.parametrize("activation, gelu, expected", [
    (("call_function", "silu", {"inplace": False}), "none", "silu"),
    (("call_method", "tanh", {}), "none", "tanh"),
    (("call_function", "gelu", {}), "none", "gelu"),
    (("call_function", "gelu", {}), "tanh", "gelu_tanh"),
    (("call_function", "gelu", {"approximate": "tanh"}), "none", "gelu_tanh"),
    (("call_module", "act", {}), "none", "softplus"),
])
def test_an_mlp_is_its_slot_declaration_exactly(tmp_path, activation, gelu, expected):
    """The declaration's MLP (hodec.runtime.neural.mlp) with the written weights computes the network's output."""
    from hodec.interop.petab.slots import as_slot_mlp
    from hodec.runtime.neural import mlp

    layers = LINEARS + [("act", "Softplus", {})]
    net = _network(tmp_path, layers, [("call_module", "l1", {}), activation, ("call_module", "l2", {})], gelu)
    slot, why = as_slot_mlp(net, 1)
    assert why == "" and slot.hidden == (4,) and slot.activation == expected
    assert slot.declaration("s", 2) == f"neural s(x0, x1) hidden 4 activation {expected}"
    made = mlp(2, slot.hidden, 1, slot.activation).double()
    made.load_state_dict({key.removeprefix("net."): value for key, value in slot.weights(net).items()})
    x = torch.randn(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 3
    assert torch.allclose(made(x), net.network(x)[0], rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("layers, nodes, why", [
    ([("l1", "Linear", {"in_features": 2, "out_features": 4, "bias": False}), LINEARS[1]],
     [("call_module", "l1", {}), ("call_method", "tanh", {}), ("call_module", "l2", {})], "node 'n0'"),
    (LINEARS + [("l3", "Linear", {"in_features": 1, "out_features": 1})],
     [("call_module", "l1", {}), ("call_method", "tanh", {}), ("call_module", "l2", {}), ("call_method", "relu", {}),
      ("call_module", "l3", {})], "one activation"),
    (LINEARS, [("call_module", "l1", {}), ("call_function", "leaky_relu", {"negative_slope": 0.2}),
               ("call_module", "l2", {})], "node 'n1'"),
    (LINEARS, [("call_module", "l1", {}), ("call_function", "softmax", {}), ("call_module", "l2", {})], "node 'n1'"),
    ([LINEARS[0]], [("call_module", "l1", {})], "not Linear, activation"),
])
def test_other_networks_are_no_declaration(tmp_path, layers, nodes, why):
    from hodec.interop.petab.slots import as_slot_mlp

    slot, reason = as_slot_mlp(_network(tmp_path, layers, nodes), 1)
    assert slot is None and why in reason
