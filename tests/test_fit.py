"""`hodec fit` and hodec.fit: training methods, data checks, outputs, resuming."""
import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import hodec
from hodec.cli import main
from hodec.compiler import analyse, compile_source, load, load_source
from hodec.errors import HodecError
from hodec.training.config import load_config
from hodec.training.data import make_dataset, read_data
from hodec.training.fit import FitError, Trainer
from hodec.training.report import fitted_source, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
LV = ROOT / "specs" / "lotka_volterra.hode"
TRUE = {"a": 1.3, "b": 0.9, "c": 0.8, "d": 1.8}
FAST_SOLVER = {"rtol": 1e-5, "atol": 1e-7}


def lv_data(n=31, dt=0.2, noise=0.02, seed=0):
    model = load(LV)().double()
    ts = torch.arange(n, dtype=torch.float64) * dt
    with torch.no_grad():
        ys = model.simulate(ts, rtol=1e-9, atol=1e-11).numpy()
    rng = np.random.default_rng(seed)
    return ts.numpy(), ys + rng.normal(size=ys.shape) * noise * ys.mean(0)


def write_csv(path, header, rows):
    lines = [",".join(header)] + [",".join("" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(v)
                                          for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def lv_csv(tmp_path):
    t, y = lv_data(n=11, dt=0.4)
    return write_csv(tmp_path / "lv.csv", ["t", "prey", "predators"],
                     [[float(a), float(b), float(c)] for a, (b, c) in zip(t, y)])


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "fit.yaml"
    path.write_text("steps: 2\nepochs_per_step: 3\nlr: 0.02\nk: 4\nsolver: {rtol: 1e-5, atol: '1e-7'}\n")
    return path


# ---------------------------------------------------------------- the method
@pytest.mark.slow  # convergence: 90 epochs to 5% of the truth
def test_lotka_volterra_homotopy_recovers_parameters_within_5_percent():
    t, y = lv_data(n=31, dt=0.2, noise=0.02, seed=0)
    M = load(LV)
    data = make_dataset(M, t, {"prey": y[:, 0], "predators": y[:, 1]})
    start = M(a=1.0, b=1.1, c=0.6, d=2.2)  # 15-25% off
    result = hodec.fit(start, data, {"steps": 3, "epochs_per_step": 30, "lr": 0.03, "k": 5, "smoothing": 1e-3,
                                     "solver": FAST_SOLVER})
    assert result.method == "homotopy" and result.status == "complete"
    assert [h["lam"] for h in result.history[::30]] == pytest.approx([1.0, 0.375, 0.0])
    for name, value in TRUE.items():
        assert result.params[name] == pytest.approx(value, rel=0.05), name
    assert result.best_mse == pytest.approx(result.history[result.best_epoch - 1]["mse"])
    assert result.best_mse == min(h["mse"] for h in result.history if h["mse"] is not None)


@pytest.mark.parametrize("method", ["vanilla", "multiple_shooting"])
def test_baselines_run_and_pick_the_best_uncoupled_epoch(method):
    t, y = lv_data(n=16, dt=0.4)
    M = load(LV)
    data = make_dataset(M, t, {"prey": y[:, 0], "predators": y[:, 1]})
    result = hodec.fit(M(a=1.2, b=1.0, c=0.7, d=1.9), data,
                       {"method": method, "epochs": 8, "segments": 3, "lr": 0.02, "solver": FAST_SOLVER})
    assert len(result.history) == 8 and all(h["lam"] == 0.0 for h in result.history)
    mses = [h["mse"] for h in result.history]
    assert result.best_mse == min(mses) and result.best_epoch == mses.index(min(mses)) + 1
    if method == "vanilla":
        assert all(h["loss"] == h["mse"] for h in result.history)
    assert set(result.params) == set(TRUE)


def test_multiple_shooting_segments_match_scipy_batched_or_not():
    """An autonomous model's segments are solved as one batch on the union of their relative grids; each must
    still be the solution from its own start over its own (non-uniform) times."""
    from scipy.integrate import solve_ivp

    M = load(LV)
    assert M.forward_uses_time is False and load(ROOT / "specs" / "pk_two_compartment.hode").forward_uses_time
    t = np.cumsum(np.r_[0.0, np.random.default_rng(1).uniform(0.1, 0.5, 14)])
    data = make_dataset(M, t, {"prey": 1 + 0 * t, "predators": 1 + 0 * t})
    config = load_config({"method": "multiple_shooting", "epochs": 1, "segments": 4, "dtype": "float64",
                          "solver": {"rtol": 1e-10, "atol": 1e-12}})
    trainer = Trainer(M().double(), data, config)
    g, bounds = trainer.groups[0], trainer.method.segments[0].bounds
    starts = [torch.tensor([[0.5 + i, 2.0 - 0.3 * i]], dtype=torch.float64) for i in range(4)]
    a, b, c, d = (TRUE[k] for k in "abcd")
    lv = lambda _, y: [a * y[0] - b * y[0] * y[1], c * y[0] * y[1] - d * y[1]]  # noqa: E731
    for autonomous in (True, False):
        trainer.model.forward_uses_time = not autonomous
        with torch.no_grad():
            pieces = trainer.method.solve_segments(g, bounds, starts)
        for i, ys in enumerate(pieces):
            ts = t[bounds[i]:bounds[i + 1] + 1]
            ref = solve_ivp(lv, (ts[0], ts[-1]), starts[i][0].tolist(), t_eval=ts, rtol=1e-11, atol=1e-12).y.T
            assert ys.shape == (len(ts), 1, 2)
            np.testing.assert_allclose(ys[:, 0].numpy(), ref, rtol=1e-7, atol=1e-9)


def test_trajectories_with_different_grids_starts_inputs_and_gaps(tmp_path):
    """Two subjects on one grid start, a third later: batched solves must equal one-by-one simulations."""
    M = load(ROOT / "specs" / "pk_two_compartment.hode")
    rows = []
    truth = M().double()
    for sid, (start, times, rate) in enumerate([(0.0, [0, 0.5, 1, 2, 4, 6], 100.0), (0.0, [0, 0.7, 1.5, 3, 5], 60.0),
                                                (1.0, [1, 2, 3.5, 6], 80.0)]):
        ts = torch.tensor(times, dtype=torch.float64)
        truth.set_inputs({"infusion": ([start, start + 1.0], [rate, 0.0], "previous")})
        with torch.no_grad():
            conc = truth.observe(truth.simulate(ts, y0=torch.tensor([0.0, 0.0], dtype=torch.float64)), ts)[:, 0]
        for k, time in enumerate(times):
            value = float(conc[k]) if not (sid == 1 and k == 2) else None  # one missing cell
            rows.append([float(time), float(sid), value, rate if time < start + 1.0 else 0.0])
    path = write_csv(tmp_path / "pk.csv", ["t", "id", "conc", "infusion"], rows)
    data = read_data(path, M)
    assert [tr.id for tr in data.trajectories] == ["0", "1", "2"]
    config = load_config({"steps": 2, "epochs_per_step": 2, "k": 2.0, "solver": FAST_SOLVER})
    trainer = Trainer(M(CL=4.0), data, config)
    assert [g.members for g in trainer.groups] == [[0, 1], [2]]
    trainer.train()
    assert len(trainer.history) == 4 and all(h["mse"] is not None for h in trainer.history)
    model = trainer.best_model()
    for g, (ts, pred) in zip(trainer.groups, trainer.predictions(model)):
        for b, index in enumerate(g.members):
            tr = data.trajectories[index]
            model.set_inputs({"infusion": (tr.t, tr.u[:, 0])})
            with torch.no_grad():
                alone = model.observe(model.simulate(torch.as_tensor(tr.t), y0=torch.zeros(2, dtype=torch.float64),
                                                     rtol=1e-5, atol=1e-7), torch.as_tensor(tr.t))[:, 0]
            on_grid = pred[np.searchsorted(g.t.numpy(), tr.t), b, 0]
            torch.testing.assert_close(on_grid, alone, rtol=1e-3, atol=1e-3)


def test_divergence_ends_the_run_with_a_located_message():
    source = "model Blow\nparam a = 3 positive\nstate x = 1\nder x = a * x^2\nobserve o = x\n"
    M = load_source(compile_source(source, "blow.hode"), "hodec_test_blow")
    data = make_dataset(M, [0.0, 0.5, 1.0, 2.0], {"o": [1.0, 2.0, 3.0, 4.0]})
    with pytest.raises(FitError, match=r"epoch 1.*(underflow|not finite|became|steps)"):
        hodec.fit(M(), data, {"method": "vanilla", "epochs": 2, "solver": {"max_steps": 2000}})


def test_a_failure_after_some_epochs_keeps_the_best_result_on_the_error():
    source = "model Late\nparam a = 0.01 positive\nstate x = 1\nder x = -x + a * x^2\nobserve o = x\n"
    M = load_source(compile_source(source, "late.hode"), "hodec_test_late")
    data = make_dataset(M, [0.0, 0.5, 1.0, 2.0], {"o": [1.0, 0.61, 0.37, 0.14]})

    def sabotage(trainer, improved):  # after epoch 2 the field blows up before t = 2
        if trainer.epoch == 2:
            trainer.model.set_params({"a": 20.0})

    with pytest.raises(FitError, match=r"epoch 3") as caught:
        hodec.fit(M(), data, {"method": "vanilla", "epochs": 5, "solver": {"max_steps": 2000}}, on_epoch=sabotage)
    partial = caught.value.partial
    assert partial is not None and partial.best_epoch in (1, 2) and len(partial.history) == 2
    assert partial.params["a"] < 0.1 and math.isfinite(partial.best_mse)


def test_neural_observable_needs_k_zero_to_be_fitted_with_homotopy():
    source = ("model N\nstate x = 1\nstate y = 0.5\nneural g(x) hidden 4\nder x = -x\nder y = x - y\n"
              "observe o = g(x) + y\nobserve xo = x\n")
    M = load_source(compile_source(source, "n.hode"), "hodec_test_neural_obs")
    data = make_dataset(M, [0.0, 0.5, 1.0, 1.5], {"o": [1.0, 0.8, 0.7, 0.6], "xo": [1.0, 0.6, 0.37, 0.22]})
    with pytest.raises(HodecError, match="neural slot"):
        hodec.fit(M, data, {"steps": 2, "epochs_per_step": 1})
    result = hodec.fit(M, data, {"steps": 2, "epochs_per_step": 1, "k": {"xo": 3.0}, "solver": FAST_SOLVER})
    assert len(result.history) == 2


def test_config_defaults_strings_and_errors():
    cfg = load_config(None)
    assert (cfg.method, cfg.steps, cfg.epochs_per_step, cfg.kappa, cfg.total_epochs) == ("homotopy", 6, 100, 0.6, 600)
    cfg = load_config({"lr": "1e-3", "solver": {"rtol": "1e-7", "method": "rk4", "step_size": "0.01"}})
    assert cfg.lr == 1e-3 and cfg.solver["rtol"] == 1e-7 and cfg.solver["step_size"] == 0.01
    with pytest.raises(HodecError, match="did you mean 'epochs'"):
        load_config({"epoch": 3})
    with pytest.raises(HodecError, match="solver.method"):
        load_config({"solver": {"method": "dopri55"}})
    with pytest.raises(HodecError, match="steps: must be >= 2"):
        load_config({"steps": 1})
    M = load(LV)
    data = make_dataset(M, [0.0, 1.0], {"prey": [1.0, 2.0]})
    with pytest.raises(HodecError, match="not a fitted column"):
        Trainer(M(), data, load_config({"k": {"predators": 1.0}}))



def test_lr_end_anneals_by_cosine_and_the_trainer_uses_it():
    cfg = load_config({"method": "vanilla", "epochs": 5, "lr": 0.1, "lr_end": 0.01})
    # cos(pi * (e - 1) / 4) for e = 1..5 is 1, 1/sqrt2, 0, -1/sqrt2, -1
    expected = [0.1 * (0.01 + 0.99 * (1 + c) / 2) for c in (1, 0.5 ** 0.5, 0, -0.5 ** 0.5, -1)]
    assert [cfg.lr_at(e) for e in range(1, 6)] == pytest.approx(expected, rel=1e-12)
    assert load_config({"lr": 0.1}).lr_at(300) == 0.1  # the default: constant
    M = load(LV)
    data = make_dataset(M, [0.0, 1.0], {"prey": [1.0, 2.0]})
    trainer = Trainer(M(), data, replace(cfg, solver={**cfg.solver, **FAST_SOLVER}))
    seen = []
    trainer.train(on_epoch=lambda t, _: seen.append(t.optimizer.param_groups[0]["lr"]))
    assert seen == pytest.approx(expected, rel=1e-12)
    for bad, message in ((1.5, "at most 1"), (0, "must be > 0"), ("x", "finite number")):
        with pytest.raises(HodecError, match=f"lr_end: .*{message}"):
            load_config({"lr_end": bad})

def test_fitted_source_replaces_values_at_their_spans():
    source = ("model P\n# a comment: param k = 5\nparam k = 2.5 positive \"rate\"\nparam  m=-1 \nparam b = 0.5 in (0, 1)\n"
              "param g = 9.81 fixed\nstate x = k\nder x = -k * x + m + b + g\n")
    typed = analyse(source, "p.hode")
    out = fitted_source(source, typed.params, {"k": 3.25, "m": -0.125, "b": 0.75})
    assert out == source.replace("k = 2.5", "k = 3.25").replace("m=-1", "m=-0.125").replace("b = 0.5", "b = 0.75")
    assert {p.name: p.value for p in analyse(out, "p.hode").params} == {"k": 3.25, "m": -0.125, "b": 0.75, "g": 9.81}


# ---------------------------------------------------------------- the command line
REPORT_KEYS = {"method", "best_epoch", "best_mse", "params", "history"}


def test_cli_fit_end_to_end(tmp_path, lv_csv, tiny_config, capsys):
    out = tmp_path / "run"
    code = main(["fit", str(LV), "--data", str(lv_csv), "--config", str(tiny_config), "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report["method"] == "homotopy" and report["status"] == "complete"
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3, 4, 5, 6]
    assert all({"epoch", "lam", "loss", "mse", "seconds"} <= set(h) for h in report["history"])
    assert [h["lam"] for h in report["history"]] == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert set(report["params"]) == set(TRUE)
    assert 1 <= report["best_epoch"] <= 6
    assert report["best_mse"] == report["history"][report["best_epoch"] - 1]["mse"]
    assert (out / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fitted = (out / "fitted.hode").read_text()
    assert {p.name: p.value for p in analyse(fitted, "fitted.hode").params} == report["params"]
    model = load(LV)().double()
    model.load_state_dict(load_checkpoint(out / "checkpoint.pt")["model"])
    assert model.params() == pytest.approx(report["params"], rel=1e-12)


@pytest.mark.parametrize("content,message", [
    ("t,prey,predatorz\n0,1,2\n1,2,3\n", "unknown column 'predatorz'"),
    ("t,prey,predators\n0,1,2\n1,2,3\n0.5,2,3\n", "does not increase"),
    ("", "empty"),
    ("t,prey,predators\n0,1,\n1,2,\n", "column 'predators' has no values"),
    ("t,prey,predators\n0,1,nan\n1,2,nan\n", "column 'predators' has no values"),
    ("t,prey,predators\n", "no data rows"),
])
def test_bad_data_exits_1_with_a_message(tmp_path, capsys, content, message):
    data = tmp_path / "bad.csv"
    data.write_text(content)
    out = tmp_path / "run"
    assert main(["fit", str(LV), "--data", str(data), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_bad_data_exit_code_from_the_shell(tmp_path):
    data = tmp_path / "bad.csv"
    data.write_text("t,prey,wolves\n0,1,2\n")
    proc = subprocess.run([sys.executable, "-m", "hodec.cli", "fit", str(LV), "--data", str(data), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    assert "unknown column 'wolves'" in proc.stderr and "Traceback" not in proc.stderr


def test_existing_run_folder_needs_resume_or_force(tmp_path, lv_csv, tiny_config, capsys):
    out = tmp_path / "run"
    args = ["fit", str(LV), "--data", str(lv_csv), "--config", str(tiny_config), "--out", str(out), "--quiet"]
    assert main(args) == 0
    first = json.loads((out / "report.json").read_text())
    capsys.readouterr()
    assert main(args) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(args + ["--resume", "--force"]) == 1
    assert main(args + ["--resume"]) == 0  # complete: nothing to train, outputs rewritten
    assert json.loads((out / "report.json").read_text())["history"] == first["history"]
    (out / "notes.txt").write_text("mine")
    assert main(args + ["--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # --force replaces the run's outputs only
    again = json.loads((out / "report.json").read_text())
    assert [h["loss"] for h in again["history"]] == [h["loss"] for h in first["history"]]  # same seed, same run


def test_interrupted_run_resumes_where_it_stopped(tmp_path, lv_csv, tiny_config, monkeypatch, capsys):
    out = tmp_path / "run"
    args = ["fit", str(LV), "--data", str(lv_csv), "--config", str(tiny_config), "--out", str(out), "--quiet"]
    assert main(args) == 0
    reference = json.loads((out / "report.json").read_text())["history"]

    real_step = Trainer.step

    def step_until_4(self):
        if self.epoch == 4:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", step_until_4)
    assert main(args + ["--force"]) == 130
    stopped = json.loads((out / "report.json").read_text())
    assert stopped["status"] == "interrupted" and len(stopped["history"]) == 4
    assert "--resume" in capsys.readouterr().err
    monkeypatch.setattr(Trainer, "step", real_step)
    assert main(["fit", str(LV), "--data", str(lv_csv), "--resume", str(out), "--quiet"]) == 0
    resumed = json.loads((out / "report.json").read_text())
    assert resumed["status"] == "complete"
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(resumed["history"], reference):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-9) and a["lam"] == b["lam"]


def test_resume_refuses_a_changed_data_file(tmp_path, lv_csv, tiny_config, capsys):
    out = tmp_path / "run"
    args = ["fit", str(LV), "--data", str(lv_csv), "--config", str(tiny_config), "--out", str(out), "--quiet"]
    assert main(args) == 0
    lv_csv.write_text(lv_csv.read_text().replace("\n0.4,", "\n0.41,", 1))
    assert main(args + ["--resume"]) == 1
    assert "data changed" in capsys.readouterr().err
