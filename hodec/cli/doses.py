"""`--dose STATE=AMOUNT@TIME[,rate=R|dur=D][,ii=II,addl=N]` options of `hodec simulate` as runtime Doses.

The keys are NONMEM's, which pharmacometricians already write in their data: `rate` (amount per time: a zero-order
infusion), `dur` (the infusion's duration: rate = amount / dur), `ii` (the interval between repeated doses) and
`addl` (how many more doses follow the first, every ii). Without rate or dur a dose is a bolus.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import HodecError

KEYS = ("rate", "dur", "ii", "addl")
SYNTAX = "STATE=AMOUNT@TIME[,rate=R|dur=D][,ii=II,addl=N]"


def parse_doses(items: Sequence[str], state_names: Sequence[str]):
    """The --dose options as one Doses (every dose into the named state), or None without any."""
    if not items:
        return None
    from ..runtime import Doses  # torch loads only for the commands that simulate

    rows = [row for item in items for row in _expand(item, state_names)]
    time, amount, state, rate = zip(*rows)
    return Doses(list(time), list(amount), list(state), list(rate))


def _expand(item: str, state_names: Sequence[str]) -> list:
    """One --dose option as (time, amount, state index, rate) rows, its addl repeats included."""
    head, *extras = item.split(",")
    name, sep, rest = head.partition("=")
    amount_text, at, time_text = rest.partition("@")
    if not (sep and at and name.strip()):
        raise HodecError(f"--dose {item!r}: expected {SYNTAX}")
    name = name.strip()
    if name not in state_names:
        raise HodecError(f"--dose {item!r}: {name!r} is not a state of the model ({', '.join(state_names)})")
    amount, time = _number(item, "amount", amount_text), _number(item, "time", time_text)
    options = _options(item, extras)
    rate = _rate(item, amount, options)
    ii, addl = options.get("ii", 0.0), options.get("addl", 0.0)
    if addl != int(addl) or addl < 0:
        raise HodecError(f"--dose {item!r}: addl must be a whole number >= 0, got {addl:g}")
    if addl > 0 and not ii > 0:
        raise HodecError(f"--dose {item!r}: addl needs an interval ii > 0")
    index = list(state_names).index(name)
    return [(time + k * ii, amount, index, rate) for k in range(int(addl) + 1)]


def _options(item: str, extras: list) -> dict:
    options = {}
    for extra in extras:
        key, sep, value = extra.partition("=")
        key = key.strip()
        if not sep or key not in KEYS:
            raise HodecError(f"--dose {item!r}: {extra!r} is not one of {', '.join(k + '=...' for k in KEYS)}")
        if key in options:
            raise HodecError(f"--dose {item!r}: {key} is given twice")
        options[key] = _number(item, key, value)
    return options


def _rate(item: str, amount: float, options: dict) -> float:
    """The infusion rate (NaN: a bolus)."""
    if "rate" in options and "dur" in options:
        raise HodecError(f"--dose {item!r}: give rate or dur, not both")
    if "dur" in options:
        if not options["dur"] > 0:
            raise HodecError(f"--dose {item!r}: dur must be > 0")
        return amount / options["dur"]
    if "rate" in options:
        if not options["rate"] > 0:
            raise HodecError(f"--dose {item!r}: rate must be > 0 (leave it out for a bolus)")
        return options["rate"]
    return math.nan


def _number(item: str, what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise HodecError(f"--dose {item!r}: {what} {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise HodecError(f"--dose {item!r}: {what} must be finite")
    return value
