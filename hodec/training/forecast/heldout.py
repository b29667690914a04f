"""A trained model scored on held-out data (`hodec fit --test TEST.csv`): with method forecast, TEST.csv cut into
windows as training cuts its data, each window forecast by the best model and estimator, and the horizon metrics
(metrics.py); with the other methods, the uncoupled objective and per-column MSE of the trajectory fit. Also the
plot of a few test windows' forecasts against their data (forecast.png)."""
from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...errors import HodecError
from ...files import write_atomic
from ..data import Dataset, read_data
from ..config import ForecastConfig, load_config
from ..problem import Problem, finite
from ..report import add_to_report, load_checkpoint
from ..result import FitError
from .base import Estimator
from .estimators import make_estimator
from .metrics import horizon_metrics
from .predict import forecast, window_groups
from .windows import Windows, make_windows


@dataclasses.dataclass
class Scoring:
    """What `hodec fit --test` asks for: the held-out file and the thresholds of its metrics (metrics.py: peak, a
    column's peak threshold; classes, a column's class thresholds)."""
    path: str
    peak: dict = dataclasses.field(default_factory=dict)
    classes: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Heldout:
    """Held-out data read and checked against the run before training starts."""
    scoring: Scoring
    data: Dataset


def read_heldout(scoring: Scoring, model_class, config, columns) -> Heldout:
    """TEST.csv read with the config's data keys, its fitted columns those of the training data (put in their
    order), and with method forecast at least one whole window: every error before the run folder is touched."""
    for option, given in (("--peak", scoring.peak), ("--classes", scoring.classes)):
        for name in given:
            if name not in columns:
                raise HodecError(f"{option} {name}: not a fitted column (fitted columns: {', '.join(columns)})")
    data = with_columns(read_data(scoring.path, model_class, config), columns, "the training data's")
    if config.method == "forecast":
        problem = Problem(model_class(), data, config)
        window_groups(problem, heldout_windows(problem, config))  # what forecasts refuse (dose records)
    return Heldout(scoring, data)


def with_columns(data: Dataset, columns, whose: str) -> Dataset:
    """The dataset with its fitted columns in the order of `columns` (the same set, else an error)."""
    if set(data.columns) != set(columns):
        raise HodecError(f"the fitted columns ({', '.join(data.columns)}) differ from {whose} "
                         f"({', '.join(columns)})", data.source)
    order = [data.columns.index(name) for name in columns]
    return dataclasses.replace(data, columns=tuple(columns),
                               trajectories=[dataclasses.replace(tr, y=tr.y[:, order]) for tr in data.trajectories])


def heldout_windows(problem: Problem, config) -> Windows:
    options = config.forecast_options
    return make_windows(problem, history=options.history, horizon=options.horizon, stride=options.stride,
                        pool=options.pool)


def heldout_report(heldout: Heldout, model, saved_estimator: Optional[dict], config, plot=None) -> dict:
    """report.json's "test" section for the best model (and, with method forecast, its estimator as the method
    saves it: {"options", "state"}); plot: where to draw forecast.png (method forecast only)."""
    data = heldout.data
    problem = Problem(model, data, config)
    out = {"data": heldout.scoring.path, "trajectories": len(data.trajectories), "n_cells": data.n_cells}
    if config.method != "forecast":
        return {**out, "objective": "-llh per data cell" if problem.noise.active else "mse",
                "value": finite(problem.evaluate(model)), "column_mse": problem.column_mse(model)}
    windows = heldout_windows(problem, config)
    pred = predictions(model, saved(problem, saved_estimator), windows, problem)
    if plot is not None:
        plot_forecasts(plot, windows, pred, [tr.id for tr in data.trajectories])
    return {**out, **horizon_metrics(pred, windows.horizon_y, windows.horizon_mask,
                                     windows.horizon_t - windows.origin, windows.columns, heldout.scoring.peak,
                                     heldout.scoring.classes)}


def heldout_summary(section: Optional[dict]) -> str:
    """The test scores for `hodec fit`'s last line: ', test ...' (empty without --test)."""
    if section is None:
        return ""
    if "columns" not in section:
        value = section["value"]
        return f", test {section['objective']} " + ("n/a" if value is None else f"{value:.6g}")
    rmse = ", ".join(f"{name} {'n/a' if c['rmse'] is None else format(c['rmse'], '.4g')}"
                     for name, c in section["columns"].items())
    return f", test RMSE {rmse} ({section['windows']} windows, {section['diverged']} diverged)"


def score_run(heldout: Heldout, model_class, rundir) -> dict:
    """heldout_report of the run in rundir (its checkpoint's best model and estimator), added to its report.json:
    a multi-start fit's kept start, scored once the starts are done."""
    rundir = Path(rundir)
    checkpoint = load_checkpoint(rundir / "checkpoint.pt")
    config = load_config(checkpoint["config"])
    section = heldout_report(heldout, saved_model(model_class, checkpoint, config, rundir),
                             checkpoint["resume"].get("estimator"), config, plot=rundir / "forecast.png")
    add_to_report(rundir / "report.json", "test", section)
    return section


def saved_model(model_class, checkpoint: dict, config, rundir):
    """The best model a run's checkpoint holds (refused when it does not fit the class)."""
    model = model_class().to(getattr(torch, config.dtype))
    try:
        model.load_state_dict(checkpoint["model"])
    except (KeyError, RuntimeError) as err:
        raise HodecError(f"the checkpoint in {rundir} does not fit {model_class.__name__}: "
                         f"{str(err).splitlines()[0]}") from None
    return model


def saved(problem, estimator: dict) -> Estimator:
    """An estimator as the forecast method saves it (Method.state()["estimator"]), built for the problem."""
    out = make_estimator(problem, ForecastConfig(**estimator["options"]))
    try:
        out.load_state_dict(estimator["state"])
    except RuntimeError as err:  # a checkpoint of another hodec version's estimator
        raise HodecError(f"the saved {out.name} estimator does not load: {str(err).splitlines()[-1].strip()}; "
                         f"refit") from None
    return out.eval()


def predictions(model, estimator, windows: Windows, problem: Problem) -> np.ndarray:
    """[Tf, W, m] forecasts; NaN for every window when the batched solve fails (scored as diverged)."""
    try:
        return forecast(model, estimator, windows, problem).detach().cpu().numpy()
    except FitError:
        return np.full(tuple(windows.horizon_y.shape), np.nan)


def plot_forecasts(path, windows: Windows, pred: np.ndarray, ids: list, shown: int = 4):
    """A few windows (spread over the test windows), one row per fitted column: the history data, the horizon's
    data and the forecast."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = np.unique(np.linspace(0, windows.size - 1, min(shown, windows.size)).round().astype(int))
    m = len(windows.columns)
    fig, axes = plt.subplots(m, len(picks), figsize=(3.2 * len(picks) + 0.8, 2.3 * m + 0.6), squeeze=False)
    for k, w in enumerate(picks):
        for c, ax in enumerate(axes[:, k]):
            have, ahead = windows.hist_mask[:, w, c].numpy(), windows.horizon_mask[:, w, c].numpy()
            ax.plot(windows.hist_t[have, w], windows.hist_y[have, w, c], ".", color="0.5", ms=3, label="history")
            ax.plot(windows.horizon_t[ahead, w], windows.horizon_y[ahead, w, c], ".", color="k", ms=4,
                    label="data")
            ax.plot(windows.horizon_t[:, w], pred[:, w, c], "-", color="C1", lw=1.4, label="forecast")
            ax.axvline(float(windows.origin[w]), color="0.7", lw=0.8)
            if k == 0:
                ax.set_ylabel(windows.columns[c])
        label = f"{ids[int(windows.trajectory[w])]}, " if len(ids) > 1 else ""
        axes[0, k].set_title(f"{label}origin t = {float(windows.origin[w]):g}", fontsize=9)
        axes[-1, k].set_xlabel("t")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())

