"""`hodec fit` as one of several processes (torchrun): process 0 runs the ordinary run (run.py: the run folder,
checkpoints, outputs) with a sharded trainer (distributed.py); the others build the same model and data, take
the config and the starting state (new or resumed) from process 0, and train beside it without outputs."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist

from ..compiler import compile as compile_spec
from .config import load_config
from .data import read_data
from .distributed import STARTED
from .loop import Trainer
from .result import FitError
from .run import run_fit


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher) as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def run_fit_distributed(spec, data, config=None, out=None, resume=None, force: bool = False,
                        progress: bool = True, test=None) -> NoReturn:
    """Ends the process (see leave) with the run's exit code; a HodecError propagates as from run_fit."""
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    try:
        if dist.get_rank() != 0:
            code = follow(spec, data)
        else:
            code = 1
            try:
                code = run_fit(spec, data, config=config, out=out, resume=resume, force=force, progress=progress,
                               test=test)
            finally:
                finish(code)
    except BaseException:
        _barrier()
        dist.destroy_process_group()
        raise
    _barrier()
    leave(code)


def _barrier():
    with contextlib.suppress(RuntimeError):  # wait for process 0's outputs: torchrun stops all at the first exit
        dist.barrier()


def leave(code: int) -> NoReturn:
    """End a finished process without tearing gloo down: every process has passed the last barrier, so nothing is
    in flight. Why: destroy_process_group (or the interpreter's teardown after it) while the other process closes
    its connections aborted process 0 now and then ("terminate called without an active exception", exit -6) after
    its outputs were written: 3 of ~10 slow-suite runs, always resuming a complete run (the shortest life of a
    process group), never reproduced alone (10 of 10 passed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def follow(spec, data) -> int:
    """A process other than 0: trains with the config and state sent by process 0 and writes nothing. Returns the
    exit code (process 0 reports what went wrong)."""
    model_class = compile_spec(Path(spec)).model_class()
    message = [None]
    dist.broadcast_object_list(message, src=0)
    kind, *rest = message[0]
    if kind == "stop":
        return rest[0]
    config, state = rest
    config = load_config(config)
    trainer = Trainer(model_class(), read_data(data, model_class, config), config)
    trainer.restore(state)
    trainer.shard.started = True
    try:
        trainer.train()
    except FitError:
        return 1
    return 0


def finish(code: int):
    """Process 0 at the end of its run: if it ended before training (a bad run folder, a complete run), the others
    still wait for their start: tell them to stop, with its exit code."""
    if not STARTED["sent"]:
        with contextlib.suppress(RuntimeError):  # they may have ended already (the same bad input)
            dist.broadcast_object_list([("stop", code)], src=0)
