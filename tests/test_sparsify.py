"""`hodec sparsify`: gates, the pruned spec's equivalence, a planted redundant reaction, the CLI, config errors."""
import copy
import json
import math

import numpy as np
import pytest
import torch

from hodec.cli import main
from hodec.compiler import compile_text, load_text, symbolic
from hodec.errors import HodecError
from hodec.graph.prune import prune_spec
from hodec.training.data import Dataset, Trajectory
from hodec.runtime.transfer import transfer
from hodec.symbolic.folding import folded_gates
from hodec.training.sparsify import data_mse, effective_params, sparsify
from hodec.training.sparsify_config import load_sparsify_config

GATED = """
model Gated
param k1 = 0.8 positive
param k2 = 0.4 positive
param k3 = 0.3 positive
param d = 0.1
input u
state A = 1
state B = 0
state C = 0
reaction r1: A -> B ; k1 * A
reaction r2: B -> C ; k2 * B keep
reaction r3: A -> C ; k3 * A
der C = -d * C + 0.5 * u
neural f(A, keep B) -> C hidden 4
observe c = C
"""

ABC = """model ABC "A -> B -> C with a planted shortcut A -> C"
param k1 = 0.8 positive
param k2 = 0.4 positive
param k3 = 0.3 positive
state A = 1
state B = 0
state C = 0
reaction r1: A -> B ; k1 * A
reaction r2: B -> C ; k2 * B
reaction r3: A -> C ; k3 * A  # redundant: the generator's rate is 0
"""

FAST = {"solver": {"method": "rk4", "step_size": 0.1}, "lr": 0.05}


def gated_model(seed=0):
    torch.manual_seed(seed)
    m = load_text(GATED, "gated.hode", gates=True)().double()
    m.set_inputs({"u": ([0.0], [0.7])})
    return m


def hand_field(m, y, zero=()):
    """dy/dt written out by hand, with the named edges removed."""
    p = m.params()
    A, B, C = y[..., 0], y[..., 1], y[..., 2]
    r1 = 0 if "r1" in zero else p["k1"] * A
    r2 = p["k2"] * B
    r3 = 0 if "r3" in zero else p["k3"] * A
    t0 = 0 if "der_C.0" in zero else -p["d"] * C
    t1 = 0 if "der_C.1" in zero else 0.5 * 0.7 * torch.ones_like(C)
    a = 0 * A if "f.A" in zero else A
    net = m.slot("f")(torch.stack([a, B], -1))[..., 0]
    z = torch.zeros_like(A)
    return torch.stack([z - r1 - r3, z + r1 - r2, z + r2 + r3 + t0 + t1 + net], -1)


def test_gate_of_zero_removes_exactly_its_edge():
    m = gated_model()
    y = torch.rand(7, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(m(torch.tensor(0.0), y), hand_field(m, y), atol=1e-12)
        for name in [row[0] for row in m.gates_table]:
            m.set_gates({g: 1.0 for g in m.gates})
            m.set_gates({name: 0.0})
            assert torch.allclose(m(torch.tensor(0.0), y), hand_field(m, y, {name}), atol=1e-12), name
        m.set_gates({g: 0.0 for g in m.gates})
        assert torch.allclose(m(torch.tensor(0.0), y), hand_field(m, y, set(m.gates)), atol=1e-12)


def test_keep_edges_are_never_gated():
    m = gated_model()
    assert {row[0]: row[1] for row in m.gates_table} == {
        "r1": "reaction", "r3": "reaction", "der_C.0": "term", "der_C.1": "term", "f.A": "neural_input"}
    assert "r2" not in m.gates and "f.B" not in m.gates
    # the edges of keep causes are still in the graph's edge list
    assert ("B", "C", "reaction", "r2") in m.edges and ("B", "C", "neural_input", "f.B") in m.edges


@pytest.mark.parametrize("pruned", [["r3"], ["r1"], ["f.A", "der_C.1"], ["r1", "r3", "f.A"]])
def test_pruned_spec_has_the_vector_field_of_the_gated_original(pruned):
    m = gated_model(seed=3)
    with torch.no_grad():
        m.raw_positive.add_(torch.randn(3, dtype=torch.float64) * 0.3)
        m.raw_free.add_(0.2)
    gates = {g: float(v) for g, v in zip(m.gates, torch.rand(len(m.gates)) + 0.5)}
    gates.update({g: 0.0 for g in pruned})
    m.set_gates(gates)
    result = prune_spec(compile_text(GATED, "gated.hode"), pruned, ["C"])
    small = load_text(result.source, "gated.hode")().double()
    small.set_inputs({"u": ([0.0], [0.7])})
    transfer(m, small, gates, folded_gates(symbolic(GATED, "gated.hode"), m, gates))
    if "der_C.1" not in pruned:  # 0.5 * u has no param to fold its gate into: compare at gate 1 there
        m.set_gates({"der_C.1": 1.0})
    y = torch.rand(9, 3, dtype=torch.float64)
    keep = [m.state_names.index(s) for s in small.state_names]
    with torch.no_grad():
        full = m(torch.tensor(0.3), y)[..., keep]
        assert torch.allclose(small(torch.tensor(0.3), y[..., keep]), full, atol=1e-12)
    if "r1" in pruned:  # B is then fed by nothing; it still reaches C (the keep reaction r2), so it stays
        assert "B" in result.states_kept


def test_pruned_spec_drops_states_that_no_longer_reach_an_observable():
    spec = ABC.replace('model ABC "A -> B -> C with a planted shortcut A -> C"', "model ABC") + "observe c = C\n"
    result = prune_spec(compile_text(spec, "abc.hode"), ["r2"], [])
    assert result.states_dropped == ("B",) and result.states_kept == ("A", "C")
    m = load_text(result.source, "abc.hode")()
    assert m.state_names == ("A", "C")


def synthetic(n=6, seed=0, k3=0.0):
    cls = load_text(ABC, "abc.hode", gates=True)
    m = cls().double()
    m.set_params({"k1": 1.0, "k2": 0.5, "k3": max(k3, 1e-3)})
    m.set_gates({"r3": 1.0 if k3 else 0.0})
    ts = torch.linspace(0, 5, 11, dtype=torch.float64)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        y0 = torch.tensor([rng.uniform(0.5, 2), rng.uniform(0, 1), rng.uniform(0, 0.5)], dtype=torch.float64)
        with torch.no_grad():
            ys = m.simulate(ts, y0=y0, method="rk4", step_size=0.05)
        out.append(Trajectory(str(i), ts.numpy(), ys.numpy(), np.zeros((len(ts), 0))))
    return Dataset(("A", "B", "C"), (), out)


def write_csv(path, data: Dataset):
    lines = ["id,t,A,B,C"]
    for tr in data.trajectories:
        for t, row in zip(tr.t, tr.y):
            lines.append(",".join([tr.id, repr(float(t))] + [repr(float(v)) for v in row]))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.slow  # convergence: the refit must reach the true rates
def test_planted_redundant_reaction_is_removed():
    config = {**FAST, "epochs": 60, "lambda1": [0, 1e-2], "folds": 2, "refit_epochs": 30, "lambda2": 1e-4}
    data = synthetic()
    r = sparsify(ABC, data, config, filename="abc.hode")
    kept = {e["name"]: e["kept"] for e in r.edges}
    assert kept == {"r1": True, "r2": True, "r3": False}
    assert "reaction r3" not in r.fitted_source and "reaction r1" in r.fitted_source
    assert [e["lambda1"] for e in r.path] == [0.0, 0.01] and all(e["val_mse"] is not None for e in r.path)
    assert r.params_before == 3 and r.params_after == 2
    assert r.refit.best_mse < 1e-4
    assert set(r.timings) == {"cross_validation", "l1_fit", "refit"} and min(r.timings.values()) > 0
    assert sum(r.timings.values()) <= r.seconds
    # the refit started from the L1 model's vector field (gates folded into k1, k2)
    gated = copy.deepcopy(r.gated_model)
    gated.set_gates({name: 0.0 for name in r.pruned_names})
    assert r.refit.history[0]["mse"] == pytest.approx(data_mse(gated, data, load_sparsify_config(config).fit),
                                                      rel=1e-9)
    assert r.train_mse_sparse == pytest.approx(r.refit.history[0]["mse"], rel=1e-9)  # pruned, before the refit
    # pruned.hode compiles to exactly the refitted model
    fitted = load_text(r.fitted_source, "abc.hode")().double()
    assert fitted.params() == r.model.params()
    assert r.refit.params["k1"] == pytest.approx(1.0, rel=0.05) and r.refit.params["k2"] == pytest.approx(0.5, rel=0.05)


def test_the_path_is_warm_started():
    """Each lambda1's fit starts where the previous one ended (a warm-started path), compared with the same two fits
    chained by hand; with warm_start false each starts from the same fresh initialisation."""
    from hodec.training.sparsify import PenalisedTrainer, l1_path, spec_prior

    data = synthetic(3)
    cls = load_text(ABC, "abc.hode", gates=True)
    for warm in (True, False):
        cfg = load_sparsify_config({**FAST, "epochs": 15, "lambda1": [1e-3, 1e-1], "warm_start": warm})
        phi0 = spec_prior(cls, cfg.fit)
        (_, first), (_, second) = list(l1_path(cls, data, cfg, cfg.lambda1, phi0))
        torch.manual_seed(cfg.fit.seed)
        hand = PenalisedTrainer(cls(), data, cfg.fit, 1e-3, cfg.lambda2, phi0)
        hand.train()
        start = copy.deepcopy(hand.model) if warm else (torch.manual_seed(cfg.fit.seed), cls())[1]
        hand = PenalisedTrainer(start, data, cfg.fit, 1e-1, cfg.lambda2, phi0)
        hand.train()
        for name, value in hand.model.state_dict().items():
            torch.testing.assert_close(second.model.state_dict()[name], value, rtol=0, atol=0)
        assert first.model.gate_weights.detach().abs().min() > second.model.gate_weights.detach().abs().min()


def test_the_final_l1_model_runs_the_path_up_to_the_chosen_lambda1():
    from hodec.training.sparsify import l1_path, spec_prior

    data = synthetic()
    cls = load_text(ABC, "abc.hode", gates=True)
    for warm in (True, False):
        config = {**FAST, "epochs": 12, "lambda1": [0, 1e-3, 1e-2], "folds": 2, "refit_epochs": 5,
                  "warm_start": warm}  # cross-validation picks 1e-2 warm or cold: the whole path is replayed
        r = sparsify(ABC, data, config, filename="abc.hode")
        position = [e["lambda1"] for e in r.path].index(r.lambda1)
        assert position >= 1  # else warm and cold starts coincide and this test says nothing
        cfg = load_sparsify_config(config)
        lineage = cfg.lambda1[:position + 1] if warm else [r.lambda1]
        *_, (_, end) = l1_path(cls, data, cfg, lineage, spec_prior(cls, cfg.fit))
        for name, value in end.model.state_dict().items():
            torch.testing.assert_close(r.gated_model.state_dict()[name], value, rtol=0, atol=0)
        assert r.l1_epochs == 12 * len(lineage)


def test_reaction_gates_never_reverse_their_reaction():
    """Data in which A -> C runs backwards (the generator's r3 gate is -1): an unconstrained gate would follow it
    below 0, which no positive k3 could then represent after pruning; the projected gate stops at exactly 0."""
    from hodec.training.sparsify import PenalisedTrainer

    cls = load_text(ABC, "abc.hode", gates=True)
    gen = cls().double()
    gen.set_params({"k1": 1.0, "k2": 0.5, "k3": 0.3})
    gen.set_gates({"r3": -1.0})
    ts = torch.linspace(0, 5, 11, dtype=torch.float64)
    with torch.no_grad():
        ys = gen.simulate(ts, y0=torch.tensor([[1.5, 0.5, 1.0], [1.0, 0.2, 2.0]], dtype=torch.float64),
                          method="rk4", step_size=0.05)
    data = Dataset(("A", "B", "C"), (), [Trajectory(str(i), ts.numpy(), ys[:, i].numpy(), np.zeros((11, 0)))
                                         for i in range(2)])
    cfg = load_sparsify_config({**FAST, "epochs": 80}).fit
    torch.manual_seed(0)
    trainer = PenalisedTrainer(cls(), data, cfg)
    trainer.train()
    gates = trainer.model.gates
    assert gates["r3"] == 0.0 and gates["r1"] > 0.5 and gates["r2"] > 0.5


def test_lambdas_are_unit_free():
    """The same system in units 100 times smaller (every concentration x 100; first-order rates unchanged) gets
    the same gates: the lambdas weigh against MSE / variance, not the raw MSE (10^4 times larger here)."""
    config = {**FAST, "epochs": 40, "lambda1": [1e-2], "refit_epochs": 5}
    data = synthetic(4)
    scaled = Dataset(data.columns, (), [Trajectory(tr.id, tr.t, 100 * tr.y, tr.u) for tr in data.trajectories])
    assert scaled.variance == pytest.approx(1e4 * data.variance, rel=1e-12)
    small = sparsify(ABC, data, config, filename="abc.hode")
    large = sparsify(ABC.replace("state A = 1", "state A = 100"), scaled, config, filename="abc.hode")
    gates = lambda r: np.array([e["gate"] for e in r.edges])  # noqa: E731
    assert abs(gates(small)[2]) < 0.5  # the L1 term bites: the redundant gate has moved well away from 1
    np.testing.assert_allclose(gates(large), gates(small), rtol=1e-3, atol=1e-4)
    assert large.data_variance == pytest.approx(1e4 * small.data_variance)


def test_data_variance_is_the_mean_of_the_columns_variances():
    y1 = np.array([[1.0, np.nan], [2.0, 5.0], [4.0, 5.0]])
    y2 = np.array([[0.0, 7.0], [np.nan, np.nan]])
    data = Dataset(("a", "b"), (), [Trajectory("1", np.arange(3.0), y1, np.zeros((3, 0))),
                                    Trajectory("2", np.arange(2.0), y2, np.zeros((2, 0)))])
    a, b = np.array([1.0, 2.0, 4.0, 0.0]), np.array([5.0, 5.0, 7.0])
    assert data.variance == pytest.approx((np.mean((a - a.mean()) ** 2) + np.mean((b - b.mean()) ** 2)) / 2)
    constant = Dataset(("a",), (), [Trajectory("1", np.arange(2.0), np.ones((2, 1)), np.zeros((2, 0)))])
    assert constant.variance == 1.0  # nothing to scale by: the lambdas stay as given


def test_drop_states_false_keeps_states_cut_off_by_pruning_and_refit_lr_reaches_the_refit():
    """r1 and r3 pruned (threshold above every gate): A no longer reaches C, the only fitted column."""
    spec = ABC.replace("k2 * B", "k2 * B keep")
    full = synthetic(3)
    data = Dataset(("C",), (), [Trajectory(tr.id, tr.t, tr.y[:, 2:], tr.u) for tr in full.trajectories])
    config = {**FAST, "epochs": 2, "lambda1": [0.1], "threshold": 10.0, "refit_epochs": 2, "refit_lr": 1e-3}
    dropped = sparsify(spec, data, config, filename="abc.hode")
    kept = sparsify(spec, data, {**config, "drop_states": False}, filename="abc.hode")
    assert dropped.pruned_names == kept.pruned_names == ["r1", "r3"]
    assert dropped.states_kept == ("B", "C") and kept.states_kept == ("A", "B", "C")
    assert kept.model.state_names == ("A", "B", "C") and "state A" in kept.fitted_source
    assert [g["lr"] for g in kept.refit_trainer.optimizer.param_groups] == [1e-3] * len(
        kept.refit_trainer.optimizer.param_groups)


def test_effective_params_counts_used_params_and_slot_weights():
    from hodec.compiler import symbolic

    m = gated_model()
    # k1, k2, k3, d trainable and used; f: (2*4+4) + (4*1+1) weights
    assert effective_params(symbolic(GATED, "g.hode"), m) == 4 + 12 + 5
    spec = GATED.replace("reaction r3: A -> C ; k3 * A\n", "")
    assert effective_params(symbolic(spec, "g.hode"), load_text(spec, "g.hode")()) == 3 + 12 + 5


def test_cli_end_to_end(tmp_path):
    spec = tmp_path / "abc.hode"
    spec.write_text(ABC)
    write_csv(tmp_path / "train.csv", synthetic(4, seed=1))
    write_csv(tmp_path / "test.csv", synthetic(2, seed=2))
    config = tmp_path / "sparsify.yaml"
    config.write_text("epochs: 25\nlr: 0.05\nlambda1: [1e-3]\nrefit_epochs: 10\n"
                      "solver: {method: rk4, step_size: 0.25}\n")
    out = tmp_path / "run"
    args = ["sparsify", str(spec), "--data", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
            "--config", str(config), "--out", str(out), "--quiet"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    for key in ("edges", "states_kept", "params_before", "params_after", "path", "test_mse"):
        assert key in report, key
    assert {e["name"] for e in report["edges"]} == {"r1", "r2", "r3"}
    for e in report["edges"]:
        assert set(e) >= {"kind", "name", "source", "target", "gate", "kept"} and e["kind"] == "reaction"
    assert report["path"][0]["lambda1"] == 1e-3 and report["test_mse"] is not None
    train = synthetic(4, seed=1)
    assert report["data_variance"] == pytest.approx(np.mean([np.concatenate([tr.y[:, j] for tr in train.trajectories])
                                                             .var() for j in range(3)]), rel=1e-9)
    assert set(report["timings"]) == {"cross_validation", "l1_fit", "refit"}
    assert (out / "graph.png").stat().st_size > 0
    pruned = (out / "pruned.hode").read_text()
    load_text(pruned, "pruned.hode")
    assert main(args) == 1  # the run folder exists
    assert main(args + ["--force"]) == 0


@pytest.mark.parametrize("text, message", [
    ("lambda1: [-1]\n", "lambda1"),
    ("lambda1: fast\n", "lambda1"),
    ("folds: 1\n", "folds"),
    ("threshold: 0\n", "threshold"),
    ("lamda2: 0.1\n", "lambda2"),
    ("refit_epochs: 2.5\n", "refit_epochs"),
    ("method: nope\n", "method"),
    ("cv_refit: 3\n", "cv_refit"),
    ("refit_lr: 0\n", "refit_lr"),
    ("drop_states: maybe\n", "drop_states"),
    ("warm_start: 1\n", "warm_start"),
])
def test_config_errors_exit_1(tmp_path, capsys, text, message):
    spec = tmp_path / "abc.hode"
    spec.write_text(ABC)
    write_csv(tmp_path / "train.csv", synthetic(2))
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    out = tmp_path / "run"
    code = main(["sparsify", str(spec), "--data", str(tmp_path / "train.csv"), "--config", str(config),
                 "--out", str(out), "--quiet"])
    assert code == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_config_defaults_and_bad_inputs(tmp_path):
    cfg = load_sparsify_config(None)
    assert cfg.fit.method == "vanilla" and cfg.lambda1 == [0.0, 1e-4, 1e-3, 1e-2, 1e-1]
    assert (cfg.lambda2, cfg.folds, cfg.threshold, cfg.refit_epochs, cfg.cv_refit) == (1e-4, 3, 0.05, None, True)
    assert cfg.refit.epochs == cfg.fit.epochs
    assert (cfg.refit_lr, cfg.drop_states, cfg.refit.lr, cfg.warm_start) == (None, True, cfg.fit.lr / 10, True)
    cfg = load_sparsify_config({"lambda1": ["1e-2", 0], "method": "homotopy", "refit_epochs": 60,
                                "refit_lr": "1e-3", "lr": 0.05})
    assert cfg.lambda1 == [0.0, 0.01] and cfg.refit.total_epochs == 60
    assert (cfg.refit.lr, cfg.fit.lr, cfg.refit.method) == (1e-3, 0.05, "homotopy")
    with pytest.raises(HodecError, match="at least 2 trajectories"):
        sparsify(ABC, synthetic(1), {**FAST, "epochs": 2, "lambda1": [0, 1]}, filename="abc.hode")
    spec = tmp_path / "abc.hode"
    spec.write_text(ABC)
    assert main(["sparsify", str(spec), "--data", str(tmp_path / "missing.csv"), "--out",
                 str(tmp_path / "run")]) == 1
    assert not (tmp_path / "run").exists()


def test_lambda1_selection_rules():
    from hodec.training.sparsify import choose_lambda1, paired_standard_errors, standard_error

    path = [{"lambda1": 0.0, "val_mse": 1.00, "val_se": 0.0},
            {"lambda1": 1e-3, "val_mse": 1.04, "val_se": 0.05},  # within one SE of its difference to the best
            {"lambda1": 1e-2, "val_mse": 1.20, "val_se": 0.05}]
    assert choose_lambda1(path, "min") == 0.0
    assert choose_lambda1(path, "one_se") == 1e-3
    # paired: trajectories of very different difficulty (MSE 1 and 100), lambda1 = 0.1 worse by 0.5 on each; the
    # unpaired standard error (~50) would call them equal, the paired one (0) does not
    cells = np.array([10.0, 10.0])
    errors = {0.0: (np.array([10.0, 1000.0]), cells), 0.1: (np.array([15.0, 1005.0]), cells)}
    path = [{"lambda1": lam, "val_mse": float(e.sum() / 20), "val_se": None} for lam, (e, _) in errors.items()]
    assert standard_error(errors[0.0][0], cells) > 40
    paired_standard_errors(path, errors)
    assert path[1]["val_se"] == pytest.approx(0.0, abs=1e-12) and choose_lambda1(path, "one_se") == 0.0
    errors[0.1] = (np.array([16.0, 1004.0]), cells)  # worse by 0.6 and by 0.4 a cell: mean 0.5, SE 0.1
    path[1]["val_mse"] = 51.0
    paired_standard_errors(path, errors)
    assert path[1]["val_se"] == pytest.approx(math.sqrt(2 * ((6 - 5) ** 2 + (4 - 5) ** 2)) / 20)
    assert choose_lambda1(path, "one_se") == 0.0
    tied = [{"lambda1": 0.0, "val_mse": 2.0, "val_se": None}, {"lambda1": 0.1, "val_mse": 2.0, "val_se": None}]
    assert choose_lambda1(tied, "min") == 0.1  # ties go to the sparser model
    # equal cells: sd (ddof 1) of the per-trajectory MSEs over sqrt(n); here MSEs 0.5 and 1.5: sd sqrt(0.5)
    assert standard_error([1.0, 3.0], [2, 2]) == pytest.approx(math.sqrt(0.5) / math.sqrt(2))
    # unequal cells: n/(n-1) sum c_i^2 (m_i - M)^2 / (sum c)^2, m_i the trajectory's MSE, M the pooled MSE
    sse, cells = np.array([1.0, 6.0, 2.0]), np.array([1.0, 3.0, 4.0])
    m, pooled = sse / cells, sse.sum() / cells.sum()
    assert standard_error(sse, cells) == pytest.approx(math.sqrt(1.5 * (cells ** 2 * (m - pooled) ** 2).sum()) / 8)
    assert standard_error([1.0], [1]) is None and standard_error([1.0, float("inf")], [1, 1]) is None


def test_per_trajectory_errors_pool_to_the_data_mse():
    from hodec.training.sparsify import trajectory_errors

    data = synthetic(5)
    model = load_text(ABC, "abc.hode")().double()  # the spec's values, not the generator's: errors are not 0
    cfg = load_sparsify_config(FAST).fit
    sse, cells = trajectory_errors(model, data, cfg)
    assert (cells == 33).all() and (sse > 0).all()
    assert sse.sum() / cells.sum() == pytest.approx(data_mse(model, data, cfg), rel=1e-12)
    one = Dataset(data.columns, (), data.trajectories[2:3])
    assert sse[2] / 33 == pytest.approx(data_mse(model, one, cfg), rel=1e-12)
