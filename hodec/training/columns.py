"""What each column of a data file is: the time, the id, a NONMEM-style record column (evid, amt, rate, cmt, dv,
dvid, mdv), a fitted observable or state, an input, a param's per-trajectory value, or a column to ignore.

A header name that is exactly a model's name (state, observable, input, param) is that name, so data written for a
model with a state called `rate` still reads as before; `t` and `id` are never model names. Otherwise the
conventional names are matched ignoring case (`TIME`, `Id`, `EVID`, ...), `time` being another name for `t`.
Text is allowed in `id` (a subject's label), `cmt`, `dvid` and the columns FIT.yaml's `ignore_columns` lists; every
other cell is a number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..errors import did_you_mean
from ..tables import Table

RECORDS = ("evid", "amt", "rate", "dur", "cmt", "addl", "ii", "ss", "dv", "dvid", "mdv")  # NONMEM's, that hodec reads
CONVENTIONAL = ("t", "id") + RECORDS
ALIASES = {"time": "t"}
TEXT = ("id", "cmt", "dvid")
TEXT_NOTE = "text is allowed only in id, cmt, dvid and the columns FIT.yaml's ignore_columns lists"


@dataclass
class Layout:
    """Column indices by role: conventional name -> index; the fitted, input and param columns in file order."""

    roles: dict = field(default_factory=dict)
    fitted: list = field(default_factory=list)  # (name, index)
    inputs: list = field(default_factory=list)
    params: list = field(default_factory=list)

    def has(self, role: str) -> bool:
        return role in self.roles

    def get(self, role: str, default: Optional[int] = None) -> Optional[int]:
        return self.roles.get(role, default)


def role(name: str, model, ignored) -> Optional[str]:
    """A header name's role: 'ignore', 'model' (a model name) or a conventional name; None if unknown."""
    if name in ignored:
        return "ignore"
    if name not in ("t", "id") and name in model_names(model):
        return "model"
    key = name.lower()
    key = ALIASES.get(key, key)
    return key if key in CONVENTIONAL else None


def is_text(name: str, model, ignored) -> bool:
    """Whether a column may hold text (the reader keeps its cells as text)."""
    return role(name, model, ignored) in ("ignore",) + TEXT


def model_names(model) -> set:
    return {*model.state_names, *model.observable_names, *model.input_names, *model.param_names}


def layout(table: Table, model, ignored) -> Layout:
    """The role of every column; duplicate, unknown and conflicting columns are errors naming them."""
    out = Layout()
    seen = {}
    for index, name in enumerate(table.header):
        if name in seen:
            table.fail(f"column '{name}' appears twice in the header")
        seen[name] = index
        kind = role(name, model, ignored)
        if kind is None:
            _unknown(table, name, model)
        elif kind == "model":
            _model_column(table, out, name, index, model)
        elif kind in out.roles:
            first = table.header[out.roles[kind]]
            table.fail(f"columns '{first}' and '{name}' are both the '{kind}' column; keep one (or list the other "
                       "in FIT.yaml's ignore_columns)")
        elif kind != "ignore":
            out.roles[kind] = index
    if "t" not in out.roles:
        table.fail(f"no 't' (or 'time') column (the header is: {', '.join(table.header) or 'empty'})")
    if "dvid" in out.roles and "dv" not in out.roles:
        table.fail(f"a '{table.header[out.roles['dvid']]}' column names what each row's 'dv' value is, but there "
                   "is no 'dv' column")
    return out


def _model_column(table: Table, out: Layout, name: str, index: int, model):
    if name in model.observable_names or name in model.state_names:
        out.fitted.append((name, index))
    elif name in model.input_names:
        out.inputs.append((name, index))
    else:
        kinds = {row[0]: row[2] for row in model.parameters_table}
        if kinds[name] != "fixed":
            table.fail(f"column '{name}' is a trained param of {type_name(model)}: a data column gives a param a "
                       f"known value per trajectory (a covariate); declare '{name}' fixed, or list the column in "
                       "FIT.yaml's ignore_columns")
        out.params.append((name, index))


def _unknown(table: Table, name: str, model):
    names = [*model.observable_names, *model.state_names, *model.input_names]
    hint = did_you_mean(name, [*names, *model.param_names, *CONVENTIONAL, "time"])
    table.fail(f"unknown column '{name}': not an observable, state, input or param of {type_name(model)}, nor "
               f"one of {', '.join(CONVENTIONAL)}" + (f"; {hint}" if hint else f" (known: {', '.join(names)})")
               + "; list columns hodec should not read in FIT.yaml's ignore_columns")


def type_name(model) -> str:
    return model.__name__ if isinstance(model, type) else type(model).__name__
