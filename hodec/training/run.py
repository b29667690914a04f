"""A `hodec fit` run: check everything, claim the run folder (new, --resume, --force), train, write the outputs.

Spec, data and config are all checked before the run folder is touched, so a bad input leaves nothing behind. The
run folder is claimed with a lock (RunLock) held for the whole run, so a second run into it is refused. The
checkpoint is written after every epoch (atomically; see Checkpoints for the cost), so a SIGKILL loses at most
the epoch in progress. SIGINT and SIGTERM stop the run at once, even in the middle of an epoch: the trainer goes
back to the last checkpoint (the end of the last whole epoch, so epoch numbers stay exact) and report.json and
fitted.hode are written from it; fit.png and the per-column MSEs, which simulate the model again, are left to a
run that ends by itself. Whatever else ends the run (completion, a FitError) the outputs are written from the
best epoch so far.
"""
from __future__ import annotations

import atexit
import fcntl
import gc
import hashlib
import io
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import torch

from ..compiler import compile as compile_spec
from ..errors import HodecError
from ..files import write_atomic
from ..version import __version__
from .config import load_config
from .data import read_data
from .forecast.heldout import Scoring, heldout_report, heldout_summary, read_heldout
from .loop import Trainer
from .options import first_line
from .report import (OUTPUTS, checkpoint_bytes, fitted_spec, load_checkpoint, plot_fit, read_checkpoint, score,
                     write_report)

REPORT_EVERY = 15.0  # seconds between rewrites of report.json while training (the checkpoint: every epoch)
WHO = "hodec fit"  # the "file" named by run-level errors
LOCK = ".hodec-lock"

# The interpreter's last garbage collections walk every object torch and sympy made (half a second on a busy
# machine); frozen at exit, they are skipped, so that a run stopped by a signal also ends at once.
atexit.register(gc.freeze)


def run_fit(spec, data, config: Optional[str] = None, out: Optional[str] = None, resume=None, force: bool = False,
            progress: bool = True, slots: Optional[dict] = None, test: Optional[Scoring] = None) -> int:
    """slots: {slot name: torch module} put into the model's neural slots (`Model(slots=...)`) in place of the
    MLPs the spec declares (hodec petab fit's networks); a resume must give the same. test: held-out data scored
    after training into report.json's "test" (forecast/heldout.py), read and checked before training starts."""
    spec = Path(spec)
    rundir, resume = run_folder(spec, out, resume, force)
    compilation = compile_spec(spec)
    model_class = compilation.model_class()
    cfg = data_config(config, rundir, resume)
    dataset = read_data(data, model_class, cfg)
    heldout = None if test is None else read_heldout(test, model_class, cfg, dataset.columns)
    if progress:  # a large file takes a while to set up (splines, groups): say what was read before the bar starts
        print(f"hodec fit: {data}: {len(dataset.trajectories)} trajectories, {dataset.n_cells} values in "
              f"{', '.join(dataset.columns)}; setting up", file=sys.stderr, flush=True)
    meta = fit_meta(spec, compilation.source, data, dataset)
    trainer = None if resume else _trainer(model_class, dataset, cfg, slots)
    with claim_rundir(rundir, force, resume=resume):
        if resume:
            trainer = _resumed(model_class, dataset, config, meta, rundir, slots)
        status, failure = _train(trainer, rundir, meta, progress)
        result = trainer.result(evaluate=status != "interrupted")
        if failure is not None:
            result.metrics["error"] = failure.diagnostics[0].message
        tested = None
        if heldout is not None and status != "interrupted" and trainer.best_state is not None:
            tested = heldout_report(heldout, result.model, trainer.method.state().get("estimator"), trainer.config,
                                    plot=rundir / "forecast.png")
        write_report(rundir / "report.json", result, meta, test=tested)
        if trainer.best_state is not None:
            cfg = trainer.config
            summary = (f"Fitted by hodec fit ({cfg.method}) on {Path(data).name}: best epoch {result.best_epoch} of "
                       f"{trainer.epoch}, {score(result)}.")
            write_atomic(rundir / "fitted.hode",
                         fitted_spec(compilation, result.params, summary, float32=cfg.dtype == "float32"))
            if status != "interrupted":
                plot_fit(rundir / "fit.png", trainer, result.model)
    if failure is not None:
        raise failure
    if status == "interrupted":
        print(f"hodec fit: interrupted after epoch {trainer.epoch}; best epoch {result.best_epoch} kept in "
              f"{rundir} (continue with --resume {rundir})", file=sys.stderr)
        return 130
    print(f"{spec} -> {rundir}: {trainer.config.method}, best epoch {result.best_epoch} of {trainer.epoch}, "
          f"{score(result)}{heldout_summary(tested)}")
    return 0


def fit_meta(spec, source: str, data, dataset) -> dict:
    """The inputs as report.json and the checkpoint record them (--resume checks the digests)."""
    return {"spec": str(spec), "spec_sha256": sha256(source.encode()), "data": str(data),
            "data_sha256": sha256(Path(data).read_bytes()), "columns": list(dataset.columns),
            "hodec_version": __version__}


def data_config(config, rundir: Path, resume: bool):
    """The config whose data keys (ignore_columns, dose_state, ...) read DATA.csv: --config's, or on --resume
    without it the run's own (its checkpoint's)."""
    if config is None and resume and (rundir / "checkpoint.pt").is_file():
        return load_config(load_checkpoint(rundir / "checkpoint.pt")["config"])
    return load_config(config)


def run_folder(spec: Path, out, resume, force: bool) -> tuple[Path, bool]:
    if isinstance(resume, str):
        if out and Path(out) != Path(resume):
            raise HodecError(f"--resume {resume} and --out {out} name different run folders", WHO)
        out = resume
    if resume and force:
        raise HodecError("--resume continues a run and --force starts it over: give one of them", WHO)
    return (Path(out) if out else Path("runs") / spec.stem), bool(resume)


def _trainer(model_class, dataset, cfg, slots: Optional[dict] = None) -> Trainer:
    torch.manual_seed(cfg.seed)
    return Trainer(model_class(slots=slots or {}), dataset, cfg)


def _resumed(model_class, dataset, config, meta: dict, rundir: Path, slots: Optional[dict] = None) -> Trainer:
    """The trainer of the run in rundir, as its checkpoint left it; refused if the inputs changed."""
    checkpoint = load_checkpoint(rundir / "checkpoint.pt")
    cfg = load_config(checkpoint["config"])
    if config is not None and load_config(config).to_dict() != cfg.to_dict():
        raise HodecError(f"{config} differs from the config of the run in {rundir}; resume without --config, "
                         f"or start over with --force", WHO)
    for key, what in (("spec_sha256", "spec"), ("data_sha256", "data")):
        if checkpoint["meta"].get(key) != meta[key]:
            raise HodecError(f"the {what} changed since the run in {rundir} started; start over with --force", WHO)
    trainer = _trainer(model_class, dataset, cfg, slots)
    _restore(trainer, checkpoint["resume"], rundir / "checkpoint.pt")
    return trainer


def _restore(trainer: Trainer, state: dict, name):
    try:
        trainer.restore(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:  # a hodec checkpoint, but not of this run
        raise HodecError(f"{name} does not fit this spec and config ({first_line(err)}); start over with --force",
                         WHO) from None


def _train(trainer: Trainer, rundir: Path, meta: dict, progress: bool) -> tuple[str, Optional[HodecError]]:
    """Train the remaining epochs, checkpointing; returns the status and the failure that ended the run, if any.
    An interrupted or failed run is set back to its last checkpoint (the end of its last whole epoch)."""
    if trainer.epoch >= trainer.config.total_epochs:
        print(f"hodec fit: the run in {rundir} is already complete ({trainer.epoch} epochs); outputs rewritten",
              file=sys.stderr)
        trainer.status = "complete"
        return trainer.status, None
    checkpoints = Checkpoints(rundir, meta)
    checkpoints.save(trainer)  # from the start: a run killed in its first epoch can be resumed
    failure = None
    stuck = (lambda: f"hodec fit: interrupted in an epoch that could not be stopped at once; the checkpoint of "
             f"epoch {checkpoints.epoch} is kept in {rundir} (continue with --resume {rundir})")
    with Interrupts(stuck) as interrupts:
        try:
            trainer.train(progress=progress, on_epoch=lambda tr, _: interrupts.finish_first(checkpoints.save, tr))
        except HodecError as err:
            failure = err
            trainer.status = "failed"
    if trainer.status != "complete":
        status = trainer.status
        last = read_checkpoint(io.BytesIO(checkpoints.last), "the last checkpoint")
        _restore(trainer, last["resume"], "the last checkpoint")
        trainer.status = status
    return trainer.status, failure


class Checkpoints:
    """checkpoint.pt rewritten after every epoch, atomically (temporary file, then rename), and report.json every
    REPORT_EVERY seconds. A checkpoint of a small model takes a few milliseconds to write (Lotka-Volterra on 60
    points: 3 ms next to 0.26 s epochs, about 1 %), so every epoch is cheap enough."""

    def __init__(self, rundir: Path, meta: dict):
        self.path, self.report, self.meta = rundir / "checkpoint.pt", rundir / "report.json", meta
        self.last: bytes = b""
        self.epoch = 0  # of the last checkpoint written
        self.reported_at = time.monotonic()

    def save(self, trainer: Trainer):
        self.last = checkpoint_bytes(trainer, self.meta)
        write_atomic(self.path, self.last)
        self.epoch = trainer.epoch
        if time.monotonic() - self.reported_at >= REPORT_EVERY:
            write_report(self.report, trainer.result(evaluate=False), self.meta)
            self.reported_at = time.monotonic()


class Interrupts:
    """While active, SIGINT and SIGTERM (a batch system's stop) raise KeyboardInterrupt in the main thread at once,
    wherever it is (the trainer's loop turns it into status 'interrupted'); inside finish_first they wait for the
    end of what it runs (a checkpoint being written).

    Python runs a signal handler only between bytecodes, so a main thread inside one long C++ call (the backward
    pass of a solve of 100000 steps) would take it only when that call returns. A watchdog thread hears the signal
    at once (signal.set_wakeup_fd); if the handler has not run within GRACE seconds it prints `stuck()` and ends
    the process: the checkpoint on disk is the last whole epoch's."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    GRACE = 0.5

    def __init__(self, stuck=lambda: "hodec: interrupted"):
        self.pending = self.deferring = False
        self.previous: dict = {}
        self.stuck, self.taken, self.watchdog = stuck, threading.Event(), None

    def __enter__(self):
        try:
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signals stay as they are
            return self
        self.hear, self.tell = socket.socketpair()
        self.tell.setblocking(False)
        self.previous_fd = signal.set_wakeup_fd(self.tell.fileno(), warn_on_full_buffer=False)
        self.watchdog = threading.Thread(target=self._watch, name="hodec-interrupts", daemon=True)
        self.watchdog.start()
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if self.watchdog is not None:
            signal.set_wakeup_fd(self.previous_fd)
            self.tell.send(b"\0")  # not a signal number: the watchdog's cue to end
            self.watchdog.join()
            self.hear.close()
            self.tell.close()

    def _watch(self):
        while self.hear.recv(1) != b"\0":
            if not self.taken.wait(self.GRACE):
                os.write(2, (self.stuck() + "\n").encode())
                os._exit(130)

    def _handle(self, signum, frame):
        self.taken.set()
        self.pending = True
        if not self.deferring:
            raise KeyboardInterrupt

    def finish_first(self, function, *args):
        self.deferring = True
        try:
            function(*args)
        finally:
            self.deferring = False
        if self.pending:
            raise KeyboardInterrupt


# ---------------------------------------------------------------- the run folder
_HELD: dict = {}  # run folder (resolved) -> the RunLock this process holds on it


class RunLock:
    """An exclusive claim on a run folder: fcntl.flock on RUNDIR/.hodec-lock, kept open while held. The kernel
    drops the lock when the holder exits however it ends (SIGKILL included), so a lock left by a dead process is
    simply taken over; the file names the holder (pid, host, start time) for the message to a second run."""

    def __init__(self, rundir: Path, who: str):
        self.rundir, self.who, self.fd = rundir, who, None

    def acquire(self):
        path = self.rundir / LOCK
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise HodecError(f"cannot claim run folder {self.rundir}: {err.strerror}", self.who) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise HodecError(f"run folder {self.rundir} is in use by {holder}; wait for that run to end, or give "
                             f"another --out", self.who) from None
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.who} (pid {os.getpid()} on {socket.gethostname()}, started {started})\n".encode(), 0)
        self.fd = fd
        _HELD[self.rundir.resolve()] = self
        return self

    def release(self):
        if self.fd is not None:
            _HELD.pop(self.rundir.resolve(), None)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def claim_rundir(rundir: Path, force: bool = False, outputs=None, who: str = None, resumable: bool = True,
                 resume: bool = False) -> RunLock:
    """Claim a run folder for this process and make sure it may be written: a new run needs it new or empty, or
    (force) clears it of the run's own outputs; resume needs it to exist. Returns the lock, held until released
    (`with claim_rundir(...):`) or until the process ends; a second claim by this process returns the same lock.
    Refused with a message naming the holder when another process holds it."""
    rundir, outputs, who = Path(rundir), outputs or OUTPUTS, who or WHO
    if rundir.exists() and not rundir.is_dir():
        raise HodecError(f"run folder {rundir} exists and is not a folder", who)
    if resume and not rundir.is_dir():
        raise HodecError(f"no run folder {rundir} to resume", who)
    held = _HELD.get(rundir.resolve()) if rundir.is_dir() else None
    if held is None:
        try:
            rundir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise HodecError(f"cannot create run folder {rundir}: {err.strerror}", who) from None
        held = RunLock(rundir, who).acquire()
    if not resume and any(p.name != LOCK for p in rundir.iterdir()):
        if not force:
            held.release()
            how = "continue it with --resume, or overwrite it with --force" if resumable else \
                "overwrite it with --force"
            raise HodecError(f"run folder {rundir} already exists: {how}", who)
        for name in outputs:
            (rundir / name).unlink(missing_ok=True)
    return held


def sha256(data: bytes) -> str:
    """The hex digest the run records of its inputs (and `hodec forecast` checks a spec against)."""
    return hashlib.sha256(data).hexdigest()
