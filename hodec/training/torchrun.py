"""`hodec fit` as one of several processes (torchrun): process 0 runs the ordinary run (run.py: the run folder,
checkpoints, outputs) with a sharded trainer (distributed.py); the others build the same model and data, take
the config and the starting state (new or resumed) from process 0, and train beside it without outputs."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

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
                        progress: bool = True, test=None) -> int:
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo")
    try:
        if dist.get_rank() != 0:
            return follow(spec, data)
        code = 1
        try:
            code = run_fit(spec, data, config=config, out=out, resume=resume, force=force, progress=progress,
                           test=test)
        finally:
            finish(code)
        return code
    finally:
        with contextlib.suppress(RuntimeError):  # wait for process 0's outputs: torchrun stops all at the first exit
            dist.barrier()
        dist.destroy_process_group()


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
