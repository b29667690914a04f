"""A `hodec fit` run: check everything, own the run folder (new, --resume, --force), train, write the outputs.

Spec, data and config are all checked before the run folder is touched, so a bad input leaves nothing behind.
While training, the checkpoint and report are rewritten at most every CHECKPOINT_EVERY seconds; whatever ends
the run (completion, Ctrl-C, a FitError, a crash) the final outputs are written from the best epoch so far.
"""
from __future__ import annotations

import contextlib
import hashlib
import signal
import sys
import time
from pathlib import Path
from typing import Optional

from ..errors import HodecError
from .report import OUTPUTS, fitted_source, load_checkpoint, plot_fit, save_checkpoint, write_report

CHECKPOINT_EVERY = 15.0  # seconds
WHO = "hodec fit"  # the "file" named by run-level errors


def run_fit(spec, data, config: Optional[str] = None, out: Optional[str] = None, resume=None, force: bool = False,
            progress: bool = True) -> int:
    import torch

    from .. import __version__
    from ..compiler import analyse, load, read_source
    from .config import load_config
    from .data import read_data
    from .fit import Trainer

    spec = Path(spec)
    if isinstance(resume, str):
        if out and Path(out) != Path(resume):
            raise HodecError(f"--resume {resume} and --out {out} name different run folders", WHO)
        out = resume
    resume = bool(resume)
    if resume and force:
        raise HodecError("--resume continues a run and --force starts it over: give one of them", WHO)
    rundir = Path(out) if out else Path("runs") / spec.stem

    source = read_source(spec)
    typed = analyse(source, spec.name)
    model_class = load(spec)
    dataset = read_data(data, model_class)
    meta = {"spec": str(spec), "spec_sha256": _digest(source.encode()), "data": str(data),
            "data_sha256": _digest(Path(data).read_bytes()), "columns": list(dataset.columns),
            "hodec_version": __version__}

    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(rundir / "checkpoint.pt")
        cfg = load_config(checkpoint["config"])
        if config is not None and load_config(config).to_dict() != cfg.to_dict():
            raise HodecError(f"{config} differs from the config of the run in {rundir}; resume without --config, "
                             f"or start over with --force", WHO)
        for key, what in (("spec_sha256", "spec"), ("data_sha256", "data")):
            if checkpoint["meta"].get(key) != meta[key]:
                raise HodecError(f"the {what} changed since the run in {rundir} started; start over with --force", WHO)
    else:
        cfg = load_config(config)
        claim_rundir(rundir, force)

    torch.manual_seed(cfg.seed)
    trainer = Trainer(model_class(), dataset, cfg)
    if checkpoint is not None:
        trainer.restore(checkpoint["resume"])
    rundir.mkdir(parents=True, exist_ok=True)

    last_save = [time.monotonic()]

    def on_epoch(tr, improved):
        if time.monotonic() - last_save[0] >= CHECKPOINT_EVERY:
            save_checkpoint(rundir / "checkpoint.pt", tr, meta)
            write_report(rundir / "report.json", tr.result(evaluate=False), meta)
            last_save[0] = time.monotonic()

    failure = None
    try:
        if trainer.epoch >= cfg.total_epochs:
            print(f"hodec fit: the run in {rundir} is already complete ({trainer.epoch} epochs); outputs rewritten",
                  file=sys.stderr)
            trainer.status = "complete"
        else:
            with _sigterm_as_interrupt():
                trainer.train(progress=progress, on_epoch=on_epoch)
    except HodecError as err:
        failure = err
        trainer.status = "failed"
    finally:  # Ctrl-C inside train() returns 'interrupted'; anything else still leaves the best checkpoint
        save_checkpoint(rundir / "checkpoint.pt", trainer, meta)
    result = trainer.result()
    if failure is not None:
        result.metrics["error"] = failure.diagnostics[0].message
    write_report(rundir / "report.json", result, meta)
    if trainer.best_state is not None:
        header = (f"# Fitted by hodec fit ({cfg.method}) on {Path(data).name}: best epoch {result.best_epoch} of "
                  f"{trainer.epoch}, MSE {result.best_mse:.6g}.\n")
        if model_class.slots_table:
            header += "# The neural slots' weights are in checkpoint.pt (load_state_dict(checkpoint['model'])).\n"
        text = fitted_source(source, typed.params, result.params, float32=cfg.dtype == "float32", header=header)
        from ..files import write_atomic

        write_atomic(rundir / "fitted.hode", text)
        plot_fit(rundir / "fit.png", trainer, result.model)
    if failure is not None:
        raise failure
    if trainer.status == "interrupted":
        print(f"hodec fit: interrupted at epoch {trainer.epoch}; best epoch {result.best_epoch} kept in {rundir} "
              f"(continue with --resume {rundir})", file=sys.stderr)
        return 130
    best = "n/a" if result.best_mse is None else f"{result.best_mse:.6g}"
    print(f"{spec} -> {rundir}: {cfg.method}, best epoch {result.best_epoch} of {trainer.epoch}, MSE {best}")
    return 0


def claim_rundir(rundir: Path, force: bool, outputs=None, who: str = None, resumable: bool = True):
    """Make sure a run folder may be written: new, empty, or (with --force) cleared of the run's own outputs."""
    outputs, who = outputs or OUTPUTS, who or WHO
    if rundir.exists() and not rundir.is_dir():
        raise HodecError(f"run folder {rundir} exists and is not a folder", who)
    if rundir.is_dir() and any(rundir.iterdir()):
        if not force:
            how = "continue it with --resume, or overwrite it with --force" if resumable else "overwrite it with --force"
            raise HodecError(f"run folder {rundir} already exists: {how}", who)
        for name in outputs:
            (rundir / name).unlink(missing_ok=True)


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """A batch system's SIGTERM ends the run like Ctrl-C: best checkpoint written, resumable."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
