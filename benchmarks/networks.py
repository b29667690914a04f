"""Deterministic random mass-action networks, as .hode text and as plain data for reference implementations.

    net = random_network(n_states=100, n_reactions=300, seed=0)
    net.hode        # the spec: model, free params k_i, states x_j, reactions r_i
    net.reactants   # list of tuples of state indices (1 or 2, distinct): rate = k_i * prod(y[reactants])
    net.products    # list of tuples of state indices (1 or 2, distinct, disjoint from the reactants)
    net.rates       # rate constants k_i (float)
    net.initial     # initial values (positive floats)

Each reaction is uni- (`k_i * A`) or bimolecular (`k_i * A * B`) with one or two products. The same seed always
gives the same network (Python's own `random.Random`, no global state touched).
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Network:
    name: str
    state_names: tuple
    initial: tuple
    rates: tuple
    reactants: tuple  # per reaction: tuple of state indices
    products: tuple  # per reaction: tuple of state indices
    hode: str

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    @property
    def n_reactions(self) -> int:
        return len(self.rates)

    def stoichiometry(self) -> list:
        """(reaction, state, net coefficient) triples, non-zero only."""
        out = []
        for r, (ins, outs) in enumerate(zip(self.reactants, self.products)):
            coef: dict = {}
            for s in ins:
                coef[s] = coef.get(s, 0) - 1
            for s in outs:
                coef[s] = coef.get(s, 0) + 1
            out += [(r, s, c) for s, c in sorted(coef.items()) if c]
        return out


def random_network(n_states: int, n_reactions: int, seed: int = 0, bimolecular: float = 0.5) -> Network:
    if n_states < 4:
        raise ValueError("need at least 4 states (2 reactants + 2 distinct products)")
    rng = random.Random(f"hodec-bench:{n_states}:{n_reactions}:{seed}")
    names = tuple(f"x{j}" for j in range(n_states))
    initial = tuple(round(rng.uniform(0.1, 2.0), 4) for _ in range(n_states))
    rates, reactants, products = [], [], []
    for _ in range(n_reactions):
        n_in = 2 if rng.random() < bimolecular else 1
        n_out = rng.choice((1, 2))
        picked = rng.sample(range(n_states), n_in + n_out)
        reactants.append(tuple(picked[:n_in]))
        products.append(tuple(picked[n_in:]))
        rates.append(round(10 ** rng.uniform(-2, 0), 6))
    name = f"net_{n_states}_{n_reactions}_{seed}"
    lines = [f"model {name}", ""]
    lines += [f"param k{i} = {k!r}" for i, k in enumerate(rates)]
    lines.append("")
    lines += [f"state {s} = {v!r}" for s, v in zip(names, initial)]
    lines.append("")
    for i, (ins, outs) in enumerate(zip(reactants, products)):
        lhs = " + ".join(names[s] for s in ins)
        rhs = " + ".join(names[s] for s in outs)
        law = " * ".join([f"k{i}"] + [names[s] for s in ins])
        lines.append(f"reaction r{i}: {lhs} -> {rhs} ; {law}")
    return Network(name, names, initial, tuple(rates), tuple(reactants), tuple(products), "\n".join(lines) + "\n")


SIZES = ((10, 20), (100, 300), (1000, 3000))

if __name__ == "__main__":
    import sys

    n, r = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (10, 20)
    sys.stdout.write(random_network(n, r).hode)
