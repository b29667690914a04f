"""What a `hodec fit` run leaves in RUNDIR, every file written atomically:

    report.json     method, best_epoch, best_mse, params, history, metrics, status, config, inputs' digests; with
                    noise models also llh, aic, bic, n_params, n_cells, standard_errors (training/information.py)
    checkpoint.pt   the best model's state_dict and everything --resume needs (torch.save of tensors and
                    plain data only: it loads with weights_only=True)
    fit.png         data against the best model's uncoupled trajectories
    fitted.hode     the spec with the best epoch's param values written in place of the originals
    forecast.png    with --test and method forecast: a few test windows' forecasts against their data
"""
from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np

from ..files import read_text, write_atomic
from ..errors import HodecError
from .options import first_line

OUTPUTS = ("report.json", "checkpoint.pt", "fit.png", "fitted.hode", "forecast.png")
CHECKPOINT_FORMAT = "hodec-fit-1"


# ---------------------------------------------------------------- files
def checkpoint_bytes(trainer, meta: dict) -> bytes:
    """The checkpoint of a trainer as it stands: only tensors and plain data (dicts, lists, numbers, strings), so
    that it loads with torch.load(weights_only=True) and loading it can run no code."""
    import torch

    payload = {"format": CHECKPOINT_FORMAT, "meta": meta, "config": trainer.config.to_dict(),
               "best_epoch": trainer.best_epoch, "best_mse": trainer.best_mse,
               "model": trainer.best_state if trainer.best_state is not None else trainer.model.state_dict(),
               "resume": trainer.state()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_checkpoint(path, trainer, meta: dict) -> bytes:
    data = checkpoint_bytes(trainer, meta)
    write_atomic(path, data)
    return data


def load_checkpoint(path) -> dict:
    """A checkpoint written by save_checkpoint. Load the best model with model.load_state_dict(ckpt['model'])."""
    path = Path(path)
    if not path.is_file():
        raise HodecError(f"no checkpoint at {path}", "hodec fit")
    return read_checkpoint(path, str(path))


def read_checkpoint(source, name: str) -> dict:
    """A checkpoint's payload from a path or a binary stream, loaded with weights_only=True: a file holding
    anything but tensors and plain data (a pickled object, which could run code while loading) is refused."""
    import pickle

    import torch

    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise HodecError(f"{name} is not a hodec fit checkpoint: it holds objects other than tensors and plain "
                         f"data, which hodec never loads (loading them could run code)", "hodec fit") from None
    except Exception as err:  # a truncated or foreign file
        raise HodecError(f"cannot read checkpoint {name}: {first_line(err)}", "hodec fit") from None
    shape = {"meta": dict, "config": dict, "resume": dict}
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT or \
            not all(isinstance(payload.get(key), kind) for key, kind in shape.items()):
        raise HodecError(f"{name} is not a hodec fit checkpoint", "hodec fit")
    return payload


def write_report(path, result, meta: dict, test: Optional[dict] = None):
    """report.json; test: the held-out data's scores (`hodec fit --test`, forecast/heldout.py), if any."""
    report = {
        "method": result.method,
        "status": result.status,
        "best_epoch": result.best_epoch,
        "best_mse": result.best_mse,
        **(result.likelihood or {}),
        "params": result.params,
        "metrics": result.metrics,
        "history": result.history,
        "config": result.config.to_dict(),
        **meta,
        **({} if test is None else {"test": test}),
    }
    write_atomic(path, json.dumps(_jsonable(report), indent=1) + "\n")
    return report


def add_to_report(path, key: str, value):
    """report.json given one more top-level key (a run scored after it was written: a multi-start's kept run)."""
    report = json.loads(read_text(path))
    report[key] = value
    write_atomic(path, json.dumps(_jsonable(report), indent=1) + "\n")


def score(result) -> str:
    """The best model's score for one-line summaries: its MSE, or with noise models its llh and AIC."""
    if result.likelihood is not None and result.likelihood["llh"] is not None:
        return f"llh {result.likelihood['llh']:.6g}, AIC {result.likelihood['aic']:.6g}"
    return "MSE n/a" if result.best_mse is None else f"MSE {result.best_mse:.6g}"


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


# ---------------------------------------------------------------- fitted.hode
_NUMBER = r"(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?"


def fitted_spec(spec, values: dict, summary: str, float32: bool = False) -> str:
    """A Compilation's spec with fitted param values written back, under a header: the summary line, and where the
    neural slots' weights are (they have no place in the text)."""
    header = f"# {summary}\n"
    if spec.model.slots:
        header += "# The neural slots' weights are in checkpoint.pt (load_state_dict(checkpoint['model'])).\n"
    return fitted_source(spec.source, spec.model.params, values, float32, header)


def fitted_source(source: str, params, values: dict, float32: bool = False, header: str = "") -> str:
    """The spec text with each param in `values` given its new value, replaced at the param's source span
    (comments, layout and everything else kept)."""
    lines = source.splitlines(keepends=True)
    starts = np.cumsum([0] + [len(line) for line in lines]).tolist()
    edits = []
    for p in params:
        if p.name not in values:
            continue
        begin = starts[p.span.line - 1] + p.span.column - 1
        end = starts[p.span.end_line - 1] + p.span.end_column - 1 if p.span.end_line <= len(lines) else len(source)
        text = source[begin:end]
        match = re.match(rf"param\s+{re.escape(p.name)}\s*=\s*(-?\s*{_NUMBER})", text)
        if match is None:  # cannot happen for a spec that parsed; refuse rather than write a wrong file
            raise HodecError(f"cannot locate the value of param '{p.name}' in the spec text")
        edits.append((begin + match.start(1), begin + match.end(1), format_value(values[p.name], float32)))
    out = source
    for a, b, text in sorted(edits, reverse=True):
        out = out[:a] + text + out[b:]
    return header + out


def format_value(value: float, float32: bool = False) -> str:
    """Shortest text that reads back as the value (at float32 precision for a float32 run)."""
    text = str(np.float32(value)) if float32 else repr(float(value))
    return text if re.fullmatch(rf"-?{_NUMBER}", text) else repr(float(value))


# ---------------------------------------------------------------- plot
def plot_fit(path, trainer, model, max_trajectories: int = 6, points: int = 400):
    """Data (dots) against the model's uncoupled trajectories (lines), one panel per fitted column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    columns = trainer.columns
    fine = []
    for g in trainer.groups:
        lo, hi = float(g.t[0]), float(g.t[-1])
        grid = np.union1d(np.linspace(lo, hi, points), g.t.cpu().numpy())
        fine.append(torch.as_tensor(grid, dtype=g.t.dtype))
    try:
        predictions = trainer.predictions(model, fine)
    except HodecError:
        predictions = None
    n = len(columns)
    fig, axes = plt.subplots(n, 1, figsize=(7.5, 2.2 * n + 0.6), sharex=True, squeeze=False)
    shown = 0
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for gi, g in enumerate(trainer.groups):
        for b, label in enumerate(g.ids):
            if shown >= max_trajectories:
                break
            color = colors[shown % len(colors)]
            shown += 1
            for c, ax in enumerate(axes[:, 0]):
                have = g.mask[:, b, c].cpu().numpy()
                ax.plot(g.t.cpu().numpy()[have], g.y[:, b, c].cpu().numpy()[have], ".", color=color, ms=3,
                        label=f"data {label}" if c == 0 and len(trainer.data.trajectories) > 1 else None)
                if predictions is not None:
                    ts, pred = predictions[gi]
                    ax.plot(ts.cpu().numpy(), pred[:, b, c].cpu().numpy(), "-", color=color, lw=1.2)
    for c, ax in enumerate(axes[:, 0]):
        ax.set_ylabel(columns[c])
    axes[-1, 0].set_xlabel("t")
    title = f"{trainer.config.method}: best epoch {trainer.best_epoch}"
    if math.isfinite(trainer.best_mse):
        title += f", {'-llh/n' if trainer.problem.noise.active else 'MSE'} {trainer.best_mse:.3g}"
    if predictions is None:
        title += " (simulation of the best model failed)"
    axes[0, 0].set_title(title)
    if len(trainer.data.trajectories) > 1:
        axes[0, 0].legend(fontsize=7, ncol=3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
