"""Virtual-patient parameters of the `simglucose` package (MIT licence), mapped onto specs/uva_padova.hode.

The CSV is NOT in this repository. Install the package without its (heavy: gym, pandas, matplotlib)
dependencies, which is enough to read the file:

    pip install simglucose --no-deps

or point `--params` / `path=` at an unzipped wheel (the folder holding `simglucose/`), or at the CSV itself:

    pip download simglucose --no-deps -d /tmp/sg && cd /tmp/sg && unzip simglucose-*.whl
    python -m benchmarks.glucose.patients --params /tmp/sg

The package is located with importlib.util.find_spec, which does not import it (its __init__ imports gym).
Each CSV row (adolescent#001..010, adult#001..010, child#001..010) becomes a dict of the spec's parameter
names -> values, usable as `Model(**patient_overrides(row))`; `basal_insulin(row)` is simglucose's basal
rate u2ss * BW / 6000 in U/min, the rate at which the row's x0_ state is an equilibrium. Quest.csv (same folder)
gives each patient's carbohydrate ratio CR (g/U) and correction factor CF (mg/dL per U).
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
from pathlib import Path

# spec parameter name -> CSV column. The spec's remaining names are identical to the CSV's columns.
SPEC_PARAMS = ("BW", "Vg", "Vi", "kmax", "kmin", "kabs", "b", "d", "f", "kp1", "kp2", "kp3", "Fsnc", "k1", "k2",
               "Vm0", "Vmx", "Km0", "ke1", "ke2", "ksc", "m1", "m2", "m4", "m30", "ka1", "ka2", "kd", "ki", "p2u",
               "Ib", "Gpb", "Gtb", "Ipb", "Ilb", "isc1ss", "isc2ss")
# the spec's state order against the CSV's initial-state columns x0_ 1 .. x0_13
STATES = ("qsto1", "qsto2", "qgut", "Gp", "Gt", "Ip", "X", "I1", "Id", "Il", "Isc1", "Isc2", "Gs")
X0_COLUMNS = tuple(f"x0_{i:2d}" for i in range(1, 14))  # 'x0_ 1', ..., 'x0_13' as spelt in the CSV


def _params_dir(path: str | Path | None) -> Path:
    """The folder holding vpatient_params.csv and Quest.csv."""
    if path is not None:
        path = Path(path)
        for candidate in (path, path / "params", path / "simglucose" / "params"):
            if (candidate / "vpatient_params.csv").is_file():
                return candidate
        if path.is_file():
            return path.parent
        raise FileNotFoundError(f"no vpatient_params.csv under {path}")
    spec = importlib.util.find_spec("simglucose")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("simglucose is not installed: `pip install simglucose --no-deps`, or pass the "
                                  "unzipped wheel's folder as path=/--params")
    return Path(list(spec.submodule_search_locations)[0]) / "params"


def load_rows(path: str | Path | None = None) -> list[dict]:
    """The CSV's rows as dicts (Name a string, every other column a float), merged with Quest.csv (CR, CF, Age,
    TDI) where that file is present."""
    folder = _params_dir(path)
    with open(folder / "vpatient_params.csv", newline="") as fh:
        rows = [{k: (v if k == "Name" else float(v)) for k, v in r.items()} for r in csv.DictReader(fh)]
    quest = folder / "Quest.csv"
    if quest.is_file():
        with open(quest, newline="") as fh:
            extra = {r["Name"]: {k: float(v) for k, v in r.items() if k != "Name"} for r in csv.DictReader(fh)}
        for r in rows:
            r.update(extra.get(r["Name"], {}))
    return rows


def patient_overrides(row: dict) -> dict:
    """Spec parameter name -> value for one CSV row: `Model(**patient_overrides(row))`."""
    return {name: float(row[name]) for name in SPEC_PARAMS}


def initial_state(row: dict) -> list[float]:
    """The row's x0_ columns in the spec's state order (its basal equilibrium under basal_insulin(row))."""
    return [float(row[c]) for c in X0_COLUMNS]


def basal_insulin(row: dict) -> float:
    """simglucose's basal insulin rate, U/min."""
    return float(row["u2ss"]) * float(row["BW"]) / 6000.0


def load_patients(path: str | Path | None = None, names=None) -> dict[str, dict]:
    """Name -> {'params': overrides, 'x0': initial state, 'basal': U/min, 'CR': g/U, 'CF': mg/dL/U, 'group'}."""
    out = {}
    for r in load_rows(path):
        if names is not None and r["Name"] not in names:
            continue
        out[r["Name"]] = {"params": patient_overrides(r), "x0": initial_state(r), "basal": basal_insulin(r),
                          "CR": r.get("CR"), "CF": r.get("CF"), "group": r["Name"].split("#")[0]}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", help="unzipped simglucose wheel folder, its params/ folder, or the CSV")
    args = ap.parse_args(argv)
    for name, p in load_patients(args.params).items():
        print(f"{name:16s} BW={p['params']['BW']:7.2f} Gb={p['params']['Gpb'] / p['params']['Vg']:7.2f} mg/dL "
              f"basal={p['basal']:.5f} U/min CR={p['CR']}")


if __name__ == "__main__":
    main()
