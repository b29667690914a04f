"""`hodec.fit`: train a compiled model on data with one of the methods of methods/ (homotopy, vanilla, multiple
shooting) in the one training loop (loop.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch

from ..compiler import Compilation, compile as compile_spec
from .config import load_config
from .data import Dataset, read_data
from .loop import Trainer
from .result import FitError, FitResult

__all__ = ["FitError", "FitResult", "Trainer", "fit"]


def fit(model, data, config=None, *, inputs: Optional[dict] = None, progress: bool = False,
        on_epoch: Optional[Callable] = None) -> FitResult:
    """Train a compiled model on data; returns the best model, the history and metrics.

    model: a spec path, a Compilation, a compiled model class (instantiated after seeding) or an instance (trained
    in place). data: a Dataset (hodec.training.data) or a CSV path. config: FitConfig, a mapping, a FIT.yaml path,
    or None. inputs: signals for model inputs that have no data column (name -> (times, values) or Signal).
    """
    config = load_config(config)
    if isinstance(model, (str, Path)):
        model = compile_spec(model)
    if isinstance(model, Compilation):
        model = model.model_class()
    torch.manual_seed(config.seed)
    if isinstance(model, type):
        model = model()
    if not isinstance(data, Dataset):
        data = read_data(data, model, config)
    trainer = Trainer(model, data, config, inputs)
    try:
        trainer.train(progress=progress, on_epoch=on_epoch)
    except FitError as err:
        if trainer.best_state is not None:
            err.partial = trainer.result(evaluate=False)
        raise
    return trainer.result()
