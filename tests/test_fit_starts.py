"""`starts: N` of `hodec fit`: start 0 is the plain fit, the others start from perturbed params, the run folder
holds the best start's files and starts.csv; --resume skips finished starts."""
import csv
import json
import math

import numpy as np
import pytest
import torch

from hodec.cli import main
from hodec.compiler import load_text
from hodec.training.config import load_config
from hodec.training.fit import fit
from hodec.training.trials import SPREAD, perturb

from test_sweep import SPEC, folder  # noqa: F401


def run(folder, *extra):
    return main(["fit", str(folder / "decay.hode"), "--data", str(folder / "decay.csv"), "--config",
                 str(folder / "fit.yaml"), "--out", str(folder / "run"), "--quiet", *extra])


def starts(folder) -> list:
    with open(folder / "run" / "starts.csv") as f:
        return list(csv.DictReader(f))


def test_the_run_folder_holds_the_best_of_the_starts_and_start_0_is_the_plain_fit(folder):  # noqa: F811
    (folder / "fit.yaml").write_text((folder / "fit.yaml").read_text() + "starts: 3\n")
    assert run(folder) == 0
    rows = starts(folder)
    assert [r["start"] for r in rows] == ["0", "1", "2"] and all(r["status"] == "complete" for r in rows)
    plain = fit(load_text(SPEC, "decay.hode"), str(folder / "decay.csv"), load_config(folder / "fit.yaml"))
    assert float(rows[0]["best_mse"]) == pytest.approx(plain.best_mse, rel=1e-12)
    mses = [float(r["best_mse"]) for r in rows]
    assert len(set(mses)) == 3  # the perturbed starts are other fits
    report = json.loads((folder / "run" / "report.json").read_text())
    assert report["best_mse"] == min(mses)
    best = mses.index(min(mses))
    assert (folder / "run" / "fitted.hode").read_text() == \
        (folder / "run" / "starts" / f"{best + 1:03d}" / "fitted.hode").read_text()


def test_resume_skips_the_finished_starts(folder, capsys):  # noqa: F811
    (folder / "fit.yaml").write_text((folder / "fit.yaml").read_text() + "starts: 2\n")
    assert run(folder) == 0
    record = folder / "run" / "starts" / "001" / "trial.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "best_mse": 1e-30}))
    (folder / "run" / "starts" / "002" / "trial.json").unlink()
    capsys.readouterr()
    assert main(["fit", str(folder / "decay.hode"), "--data", str(folder / "decay.csv"), "--resume",
                 str(folder / "run")]) == 0
    assert "1 of 2 trials already done, skipped" in capsys.readouterr().err
    rows = starts(folder)
    assert rows[0]["best_mse"] == "1e-30" and rows[1]["status"] == "complete"
    assert run(folder) == 1  # an existing run folder without --resume or --force


def test_perturb_moves_positive_params_by_a_log_normal_factor():
    sums = [" + ".join(f"k{i}" for i in range(j, j + 20)) for j in range(0, 400, 20)]
    spec = "model Many\n" + "".join(f"param k{i} = 0.5 positive\n" for i in range(400)) + \
        "".join(f"let s{j} = {text}\n" for j, text in enumerate(sums)) + \
        "state x = 1\nder x = -(" + " + ".join(f"s{j}" for j in range(20)) + ") * x\n"
    model = load_text(spec, "many.hode")().double()
    before = model.params()
    perturb(model, 7)
    logs = np.log([model.params()[name] / value for name, value in before.items()])
    assert abs(logs.mean()) < 4 * SPREAD / math.sqrt(400) and logs.std() == pytest.approx(SPREAD, rel=0.15)
    again = load_text(spec, "many.hode")().double()
    perturb(again, 7)
    assert again.params() == model.params()  # seeded: the same start in any process
    assert torch.equal(again.raw_parameters(), model.raw_parameters())
