"""The generated noise_scale method: sigma of each noise model, one assignment per row with the spec's text as a
comment. Sigma reads params (p), the observable's own value (obs) and, for a param that an event assigns, its
state (y); nothing else (the model's checks)."""
from __future__ import annotations

from ..symbolic.lower import SymbolicModel
from ..symbolic.noise import noise_scales
from ..syntax.unparse import unparse_expr
from .printer import print_expr

_VECTOR = {"param": "p", "state": "y"}


def noise_table(sm: SymbolicModel) -> list[tuple[str, str]]:
    """(observable, distribution) per noise model: the rows of noise_scale's last axis."""
    return [(sm.model.observables[n.observable].name, n.distribution) for n in noise_scales(sm)]


def noise_scale_body(sm: SymbolicModel) -> list[str]:
    rows = noise_scales(sm)
    lines = [f"sigma = obs.new_empty(*obs.shape[:-1], {len(rows)})"]
    if any(sm.leaves[s].kind == "param" for n in rows for s in n.sigma.free_symbols if s in sm.leaves):
        lines.insert(0, "p = self.parameter_values()")
    for k, n in enumerate(rows):
        names = {sym: f"{_VECTOR[leaf.kind]}[..., {leaf.index}]" for sym, leaf in sm.leaves.items()
                 if leaf.kind in _VECTOR}
        names[n.own] = f"obs[..., {n.observable}]"
        observable = sm.model.observables[n.observable]
        spec = f"{observable.name} ~ {n.distribution}({unparse_expr(observable.noise.sigma)})"
        lines.append(f"sigma[..., {k}] = {print_expr(n.sigma, names, like='obs')}  # {spec}")
    return lines + ["return sigma"]
