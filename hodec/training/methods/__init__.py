"""Training methods by name: each a strategy (set-up, loss, per-epoch lambda, own trainable tensors) behind the
one training loop (loop.py). Adding a method is one module here plus its row in METHODS."""
from __future__ import annotations

from .base import Method
from .forecast import Forecast
from .homotopy import Homotopy
from .shooting import MultipleShooting
from .vanilla import Vanilla

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (Homotopy, Vanilla, MultipleShooting, Forecast)}

__all__ = ["METHODS", "Method"]
