"""The noise models of observables as SymPy: each `observe x = e ~ normal(sigma)` gives its scale sigma over the
model's leaves (params; a param that an event assigns reads as its state) and one symbol for x's own model value.
The lets sigma reads are inlined (the checks allow only lets of params and numbers)."""
from __future__ import annotations

from dataclasses import dataclass

import sympy

from .expressions import Converter
from .lower import SymbolicModel, substitute_lets


@dataclass(frozen=True)
class NoiseScale:
    observable: int  # index into the model's observables
    distribution: str
    sigma: sympy.Expr
    own: sympy.Symbol  # the observable's model value where sigma reads its name


def noise_scales(sm: SymbolicModel) -> list[NoiseScale]:
    """One per observable with a noise model, in declaration order."""
    out = []
    for index, observable in enumerate(sm.model.observables):
        if observable.noise is None:
            continue
        own = sympy.Dummy(observable.name, real=True)  # unique by identity, like every leaf symbol
        convert = Converter(lambda name: own if name == observable.name else sm.symbols[name])
        sigma = substitute_lets(sm, convert(observable.noise.sigma))
        out.append(NoiseScale(index, observable.noise.distribution, sigma, own))
    return out
