"""One `hodec fit` as a trial of a multi-start fit or a sweep: a pure function of plain data (the spec's text, the
Dataset, the config, the start), so that a Ray worker reproduces it exactly; it gives back the files of its run
folder (report.json, fitted.hode, checkpoint.pt) as bytes, written by the caller, so that a worker on another
machine needs no shared file system. The checkpoint is a `hodec fit` checkpoint: `hodec fit SPEC --data DATA
--resume FOLDER` on a trial's folder continues it, or (complete) rewrites its outputs with fit.png."""
from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..compiler import compile_text
from ..files import write_atomic
from ..version import __version__
from .config import load_config
from .data import Dataset
from .loop import Trainer
from .report import fitted_source, save_checkpoint, write_report

SPREAD = 0.5  # a perturbed start's params: log and logit coordinates + SPREAD N(0, 1), free ones x exp(SPREAD N(0, 1))
FILES = ("report.json", "fitted.hode", "checkpoint.pt")


@dataclass(frozen=True)
class FitTrial:
    source: str
    filename: str
    path: str
    data: Dataset
    config: dict  # FIT.yaml keys; its seed seeds the neural weights' initialisation
    meta: dict  # what report.json and the checkpoint record of the inputs (fit_meta)
    start: int = 0  # 0: the spec's values; n > 0: perturbed with a generator seeded by seed + n


def fit_meta(spec, source: str, data, dataset: Dataset) -> dict:
    """The inputs as `hodec fit` records them (so that --resume accepts a trial's folder)."""
    digest = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    return {"spec": str(spec), "spec_sha256": digest(source.encode()), "data": str(data),
            "data_sha256": digest(Path(data).read_bytes()), "columns": list(dataset.columns),
            "hodec_version": __version__}


def perturb(model, seed: int):
    """Move the model's trainable mechanistic params away from the spec's values (a multi-start's start)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        free, *constrained = model.mechanistic_parameters()
        for raw in constrained:
            raw.add_(SPREAD * torch.randn(raw.shape, generator=generator, dtype=torch.float64).to(raw.dtype))
        free.mul_(torch.exp(SPREAD * torch.randn(free.shape, generator=generator, dtype=torch.float64)).to(free.dtype))


def run_fit_trial(trial: FitTrial) -> dict:
    """Train one trial; its record (status, best_mse, best_epoch, epochs, seconds) and its files' bytes."""
    compilation = compile_text(trial.source, trial.filename, trial.path)
    config = load_config(trial.config)
    torch.manual_seed(config.seed + trial.start)
    model = compilation.model_class()()
    if trial.start:
        perturb(model, config.seed + trial.start)
    trainer = Trainer(model, trial.data, config)
    trainer.train()
    if trainer.status == "interrupted":
        raise KeyboardInterrupt
    result = trainer.result()
    header = (f"# Fitted by hodec fit ({config.method}, start {trial.start}) on {Path(trial.meta['data']).name}: "
              f"best epoch {result.best_epoch} of {trainer.epoch}, MSE {result.best_mse:.6g}.\n")
    with tempfile.TemporaryDirectory(prefix="hodec-trial-") as folder:
        folder = Path(folder)
        write_report(folder / "report.json", result, trial.meta)
        save_checkpoint(folder / "checkpoint.pt", trainer, trial.meta)
        write_atomic(folder / "fitted.hode", fitted_source(compilation.source, compilation.model.params,
                                                           result.params, float32=config.dtype == "float32",
                                                           header=header))
        files = {name: (folder / name).read_bytes() for name in FILES}
    return {"status": result.status, "best_mse": result.best_mse, "best_epoch": result.best_epoch,
            "epochs": trainer.epoch, "seconds": round(trainer.elapsed, 3), "files": files}


def write_trial(folder: Path, record: dict):
    """A trial's files into its folder (each atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in record["files"].items():
        write_atomic(folder / name, data)


def best_of(records: list) -> Optional[int]:
    """The index of the record with the lowest best MSE (the first on ties); None if none has one."""
    scored = [(r["best_mse"], i) for i, r in enumerate(records) if r.get("best_mse") is not None]
    return min(scored)[1] if scored else None
