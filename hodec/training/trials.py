"""One `hodec fit` as a trial of a multi-start fit or a sweep: a pure function of plain data (the spec's text, the
Dataset, the config, the start), so that a Ray worker reproduces it exactly; it gives back the files of its run
folder (report.json, fitted.hode, checkpoint.pt) as bytes, written by the caller, so that a worker on another
machine needs no shared file system. The checkpoint is a `hodec fit` checkpoint: `hodec fit SPEC --data DATA
--resume FOLDER` on a trial's folder continues it, or (complete) rewrites its outputs with fit.png."""
from __future__ import annotations

import csv
import io
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..compiler import compile_text
from ..errors import HodecError
from ..files import read_text, write_atomic
from .config import load_config
from .data import Dataset
from .executor import Executor, Failed
from .loop import Trainer
from .report import fitted_spec, save_checkpoint, write_report

SPREAD = 0.5  # a perturbed start's params: log and logit coordinates + SPREAD N(0, 1), free ones x exp(SPREAD N(0, 1))
FILES = ("report.json", "fitted.hode", "checkpoint.pt")
RECORD = "trial.json"
COLUMNS = ("status", "best_mse", "best_epoch", "epochs", "seconds", "error")


@dataclass(frozen=True)
class FitTrial:
    source: str
    filename: str
    path: str
    data: Dataset
    config: dict  # FIT.yaml keys; its seed seeds the neural weights' initialisation
    meta: dict  # what report.json and the checkpoint record of the inputs (run.fit_meta)
    start: int = 0  # 0: the spec's values; n > 0: perturbed with a generator seeded by seed + n


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
    summary = (f"Fitted by hodec fit ({config.method}, start {trial.start}) on {Path(trial.meta['data']).name}: "
               f"best epoch {result.best_epoch} of {trainer.epoch}, MSE {result.best_mse:.6g}.")
    with tempfile.TemporaryDirectory(prefix="hodec-trial-") as folder:
        folder = Path(folder)
        write_report(folder / "report.json", result, trial.meta)
        save_checkpoint(folder / "checkpoint.pt", trainer, trial.meta)
        write_atomic(folder / "fitted.hode",
                     fitted_spec(compilation, result.params, summary, float32=config.dtype == "float32"))
        files = {name: (folder / name).read_bytes() for name in FILES}
    return {"status": result.status, "best_mse": result.best_mse, "best_epoch": result.best_epoch,
            "epochs": trainer.epoch, "seconds": round(trainer.elapsed, 3), "files": files}


class TrialRun:
    """A run folder of fit trials: the plan (PLAN, a JSON file), each trial's folder SUB/NNN/ with its files and
    trial.json, its record, written last (a trial without one is run again by --resume)."""

    def __init__(self, rundir: Path, who: str, plan_file: str, sub: str):
        self.rundir, self.who, self.plan_file, self.sub = rundir, who, plan_file, sub

    def folder(self, i: int) -> Path:
        return self.rundir / self.sub / f"{i + 1:03d}"

    def run(self, plan: dict, trials: list, points: list, resume: bool, force: bool, progress: bool):
        """Run the trials not finished yet with the executor of trial 0's config; every trial's record in order,
        or None when interrupted (Ctrl-C; the finished trials are kept for --resume)."""
        say = (lambda line: print(f"{self.who}: {line}", file=sys.stderr, flush=True)) if progress else None
        self.start(plan, resume, force)
        records = [self.record(i) for i in range(len(trials))]
        todo = [i for i, record in enumerate(records) if record is None]
        if say and len(todo) < len(trials):
            say(f"{len(trials) - len(todo)} of {len(trials)} trials already done, skipped")

        def finished(j, result):
            records[todo[j]] = self.save(todo[j], points[todo[j]], result)

        try:
            Executor.of(load_config(trials[0].config)).map(run_fit_trial, [trials[i] for i in todo], say, finished)
        except KeyboardInterrupt:
            print(f"{self.who}: interrupted after {sum(r is not None for r in records)} of {len(trials)} trials; "
                  f"continue with --resume (--out {self.rundir})", file=sys.stderr)
            return None
        return records

    def start(self, plan: dict, resume: bool, force: bool):
        """Check a resumed run's plan against this one; a new or forced run writes its plan, trials cleared."""
        path = self.rundir / self.plan_file
        if resume:
            if not path.is_file():
                raise HodecError(f"nothing to resume in {self.rundir} (no {self.plan_file})", self.who)
            if json.loads(read_text(path)) != json.loads(json.dumps(plan)):
                raise HodecError(f"the spec, data, config or points changed since the run in {self.rundir} "
                                 f"started; start over with --force", self.who)
            return
        if force:
            shutil.rmtree(self.rundir / self.sub, ignore_errors=True)
        write_atomic(path, json.dumps(plan, indent=1) + "\n")

    def record(self, i: int) -> Optional[dict]:
        path = self.folder(i) / RECORD
        return json.loads(read_text(path)) if path.is_file() else None

    def save(self, i: int, point: dict, result) -> dict:
        """A finished trial's files, then its record."""
        folder = self.folder(i)
        folder.mkdir(parents=True, exist_ok=True)
        record = {"trial": i + 1, "point": point}
        if isinstance(result, Failed):
            record.update(status="failed", error=result.message)
        else:
            for name, data in result["files"].items():
                write_atomic(folder / name, data)
            record.update({key: value for key, value in result.items() if key != "files"})
        write_atomic(folder / RECORD, json.dumps(record, indent=1) + "\n")
        return record

    def finish(self, table: Path, best_folder: Path, records: list) -> int:
        """The results table (one row per trial) and a copy of the best trial's files in best_folder; the best's
        index (the lowest best MSE, the first on ties)."""
        keys = list(dict.fromkeys(key for record in records for key in record["point"]))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["trial", *keys, *COLUMNS])
        for record in records:
            writer.writerow([record["trial"], *(_cell(record["point"].get(k)) for k in keys),
                             *(record.get(c) for c in COLUMNS)])
        write_atomic(table, out.getvalue())
        scored = [(r["best_mse"], i) for i, r in enumerate(records) if r.get("best_mse") is not None]
        if not scored:
            raise HodecError(f"every trial failed (see {table})", self.who)
        best = min(scored)[1]
        best_folder.mkdir(exist_ok=True)
        for name in (*FILES, RECORD):
            write_atomic(best_folder / name, (self.folder(best) / name).read_bytes())
        return best


def _cell(value) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
