"""Which trainable quantities each state's initial value reads: `initial: data` pins only the states whose
initial value reads none (a param the user declared trainable is never ignored)."""
from __future__ import annotations

KINDS = ("free", "positive", "bounded")  # the order of the model's raw parameter vectors


def initial_sources(model) -> dict:
    """Per state, the trainable params its initial value reads, through lets (the generated class's initial_table,
    which the compiler derives from the symbolic model)."""
    fixed = {row[0] for row in model.parameters_table if row[2] == "fixed"}
    return {state: tuple(p for p in params if p not in fixed) for state, params in model.initial_table}
