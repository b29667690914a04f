"""Values PEtab sets before simulation (hybridization rows whose networks read parameters and conditions, not
states) as `.hode` text hodec fit trains: the parameter a row sets becomes a let of its formula, each network
output in it a call of a neural slot on the network's input expressions (`let gamma = net1_o0_0(p1, p2)`). The
slot is evaluated with the other params of the trajectory (FIT.yaml's conditions set the inputs per experiment),
so its value is the one PEtab computes once per experiment, and its weights train like any slot's."""
from __future__ import annotations

import re

from .mapping import NAME, ArrayInput, Hybrid, _hode
from .problem import Problem


def presim_lets(problem: Problem, hybrid: Hybrid, text: str) -> tuple[str, dict]:
    """The text with each parameter set before simulation declared as a let of its formula, the slots it calls
    declared (placeholders, as mapping's) and the PEtab parameters their arguments read declared as params
    (fixed at 0: the written spec takes the table's values, conditions the experiment's); and {slot: (net id,
    output index, element)} of the slots added."""
    lines = text.rstrip("\n").split("\n")
    slots: dict = {}
    params = {line.split()[1] for line in lines if line.startswith("param ")}
    for target, row in problem.hybridization.items():
        name = hybrid.names.get(target, target)
        if target in problem.mapping or name not in hybrid.presim:
            continue
        ports = [hybrid.outputs[w] for w in NAME.findall(row["targetValue"]) if w in hybrid.outputs]
        if name not in params:
            by = f" by network '{ports[0].net}'" if ports else ""
            row.fail(f"'{target}' is an initial value set before simulation{by} ({row['targetValue']}): a network "
                     f"output or formula cannot be a .hode initial value hodec fit trains yet")
        for port in ports:
            if any(isinstance(source, ArrayInput) for source in hybrid.nets[port.net].inputs.values()):
                row.fail(f"network '{port.net}', run before simulation, reads an input from an array file: its "
                         f"slot takes only inputs given by formulas yet")
        pattern = re.compile(rf"^param {re.escape(name)} = ")
        let = f"let {name} = {_hode(row['targetValue'], hybrid.names, hybrid.outputs, hybrid.nets, slots, True)}"
        lines = [let if pattern.match(line) else line for line in lines]
    read = {w for slot in slots.values() for e in hybrid.nets[slot[0]].expressions() for w in NAME.findall(e)}
    read |= {row["targetValue"].strip() for rows in problem.conditions.values() for row in rows
             if row["targetValue"].strip() in problem.parameters}  # a condition's value: another parameter
    declared = params | {line.split()[1] for line in lines if line.startswith(("state ", "compartment ", "let "))}
    lines += [f"param {word} = 0 fixed" for word in sorted(read - declared - set(hybrid.names))]
    for slot, (net_id, _, _) in slots.items():
        formal = ", ".join(f"x{k}" for k in range(len(hybrid.nets[net_id].expressions())))
        lines.append(f"neural {slot}({formal}) hidden 1")
    return "\n".join(lines) + "\n", slots
