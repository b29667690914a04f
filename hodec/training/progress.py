"""The progress bar of a training run (tqdm), or nothing."""
from __future__ import annotations

import math


def postfix(entry: dict, best: float, show_lambda: bool) -> dict:
    out = {}
    if show_lambda:
        out["lam"] = f"{entry['lam']:.3f}"
    out["loss"] = f"{entry['loss']:.3e}"
    out["mse"] = "n/a" if entry["mse"] is None else f"{entry['mse']:.3e}"
    out["best"] = f"{best:.3e}" if math.isfinite(best) else "n/a"
    return out


class NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass


def progress_bar(total: int, done: int, method: str, enabled: bool):
    if not enabled:
        return NoBar()
    from tqdm.auto import tqdm  # a dependency; imported here so that a run without a bar does not load it

    return tqdm(total=total, initial=done, desc=method, unit="epoch", dynamic_ncols=True, leave=True)
