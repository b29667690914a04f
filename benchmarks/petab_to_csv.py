"""The PEtab-SciML Dandekar_Patterns2020 benchmark (../shared/data/petab_sciml_benchmarks/) for hodec: its
measurements as a hodec DATA.csv (t, obs_infected, obs_recovered), its network weights (net1_ps_*.hdf5) loaded
into benchmarks/specs/dandekar.hode's slot, and its log-likelihood (normal noise, sigma from the observable table)
to check the spec against expected_*.yaml.

    python benchmarks/petab_to_csv.py [--out DATA.csv]      # writes the CSV, prints the llh check

The data stay in ../shared/data: the CSV is generated at run time, never committed.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DANDEKAR = ROOT.parent / "shared" / "data" / "petab_sciml_benchmarks" / "Benchmark-Models" / "Dandekar_Patterns2020"
SPEC = ROOT / "benchmarks" / "specs" / "dandekar.hode"
PROBLEM = "Dandekar_Patterns2020"


def read_tsv(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def measurements(split: str = "train", folder: Path = DANDEKAR) -> tuple:
    """Times [T] and values [T, m] (NaN where missing) of the split's measurement table, columns = observable ids
    in the observable table's order."""
    columns = [row["observableId"] for row in read_tsv(folder / f"observables_{PROBLEM}.tsv")]
    rows = read_tsv(folder / f"measurements_{split}_{PROBLEM}.tsv")
    times = sorted({float(r["time"]) for r in rows})
    values = np.full((len(times), len(columns)), np.nan)
    for r in rows:
        values[times.index(float(r["time"])), columns.index(r["observableId"])] = float(r["measurement"])
    return np.array(times), values, columns


def write_csv(path: Path, split: str = "train", folder: Path = DANDEKAR) -> Path:
    t, y, columns = measurements(split, folder)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", *columns])
        for ti, row in zip(t, y):
            w.writerow([repr(float(ti)), *("" if math.isnan(v) else repr(float(v)) for v in row)])
    return path


def load_weights(model, folder: Path = DANDEKAR) -> bool:
    """Sets the slot net1 to the benchmark's weights; False (model unchanged) when h5py is not installed."""
    try:
        import h5py
    except ImportError:
        return False
    linears = [m for m in model.slot("net1").net if isinstance(m, torch.nn.Linear)]
    with h5py.File(folder / f"net1_ps_{PROBLEM}.hdf5", "r") as f, torch.no_grad():
        for layer, name in zip(linears, ("layer1", "layer2")):
            layer.weight.copy_(torch.as_tensor(np.asarray(f[f"parameters/net1/{name}/weight"])))
            layer.bias.copy_(torch.as_tensor(np.asarray(f[f"parameters/net1/{name}/bias"])))
    return True


def model(dtype=torch.float64):
    """The compiled spec at the benchmark's nominal parameters and network weights (if h5py is installed)."""
    from hodec.compiler import load

    m = load(SPEC)().to(dtype)
    if not load_weights(m):
        print("h5py is not installed: net1 keeps hodec's initialisation, not the benchmark's weights",
              file=sys.stderr)
    return m


def log_likelihood(m, split: str = "train", folder: Path = DANDEKAR, rtol: float = 1e-10) -> float:
    """sum over measurements of log N(y; h(u(t)), sigma^2), sigma per observable from the observable table."""
    t, y, columns = measurements(split, folder)
    sigma = np.array([float(r["noiseFormula"]) for r in read_tsv(folder / f"observables_{PROBLEM}.tsv")])
    with torch.no_grad():  # PEtab simulates from t = 0 (the validation data start at t = 64)
        ts = torch.as_tensor(np.concatenate([[0.0], t]) if t[0] > 0 else t, dtype=torch.float64)
        ys = m.simulate(ts, rtol=rtol, atol=1e-12)  # every state is >= 10 people
        obs = m.observe(ys, ts)[len(ts) - len(t):]
    index = [m.observable_names.index(c) for c in columns]
    pred = obs[:, index].double().numpy()
    ok = np.isfinite(y)
    z = (y - pred) / sigma
    return float(-(0.5 * np.log(2 * np.pi) + np.log(sigma) + 0.5 * z ** 2)[ok].sum())


def expected_llh(split: str = "train", folder: Path = DANDEKAR) -> float:
    for line in (folder / f"expected_{PROBLEM}.yaml").read_text().splitlines():
        key, _, value = line.strip().partition(":")
        if key == ("training" if split == "train" else split):
            return float(value)
    raise KeyError(split)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="write the training data here as hodec DATA.csv")
    args = parser.parse_args()
    if args.out:
        print(f"wrote {write_csv(args.out)}")
    m = model()
    for split in ("train", "validation"):
        got, want = log_likelihood(m, split), expected_llh(split)
        print(f"llh {split}: {got:.10f}, expected {want:.10f}, difference {got - want:.2e}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
