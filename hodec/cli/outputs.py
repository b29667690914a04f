"""Checks on the files a command is about to write, made before anything is written: an output never replaces
one of the command's inputs, two outputs never share a path, and an output's folder is a folder."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import HodecError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): compare where they would resolve to
        return a.resolve() == b.resolve()


def check_outputs(inputs: Iterable, outputs: Iterable):
    """Refuse outputs that are inputs (or links to them) and outputs that collide with each other."""
    inputs, outputs = [Path(p) for p in inputs], [Path(p) for p in outputs]
    for out in outputs:
        for inp in inputs:
            if _same_file(out, inp):
                raise HodecError(f"the output {out} is the input {inp}: refusing to overwrite it "
                                 f"(name another output)")
    for i, out in enumerate(outputs):
        for other in outputs[:i]:
            if _same_file(out, other):
                raise HodecError(f"two outputs would be written to {out}: give the inputs different names or "
                                 f"write them one by one with -o")


def check_folder(folder, option: str = "--out-dir"):
    """Refuse an output folder that names an existing file."""
    if Path(folder).exists() and not Path(folder).is_dir():
        raise HodecError(f"{option} {folder} exists and is not a folder")


def output_folder(folder) -> Path:
    """A folder to write into (checked with check_folder before), made if missing."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise HodecError(f"cannot create the output folder {folder}: {err.strerror or err}") from None
    return folder
