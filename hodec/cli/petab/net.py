"""`hodec petab net NET.yaml [--params PS.hdf5] --input IN.hdf5 [--input IN2.hdf5] --out OUT.hdf5`: one
PEtab-SciML network evaluated, input and output in the PEtab-SciML test suite's HDF5 layout."""
from __future__ import annotations

from ..outputs import check_outputs


def add_parser(sub):
    p = sub.add_parser("net", help="evaluate one PEtab-SciML network (YAML) on HDF5 inputs, write HDF5 outputs")
    p.add_argument("network", metavar="NET.yaml")
    p.add_argument("--params", metavar="PS.hdf5", help="the network's arrays (parameters/NET_ID/LAYER/ARRAY)")
    p.add_argument("--input", action="append", required=True, metavar="IN.hdf5",
                   help="input arrays (inputs/INPUT_ID/data); repeat for a network of several inputs")
    p.add_argument("--out", required=True, metavar="OUT.hdf5", help="outputs/outputK/data for each output K")
    p.add_argument("--passes", type=int, default=1,
                   help="average this many forward passes (a network with dropout is random; default 1)")
    p.add_argument("--seed", type=int, help="random seed of the passes")
    add_gelu_option(p)
    return p


def add_gelu_option(p):
    p.add_argument("--gelu", choices=("none", "tanh"), default="none",
                   help="the GELU a file's gelu means when it does not say: none (PyTorch's exact form, the "
                        "default) or tanh (the approximation Lux and JAX use)")


def run(args) -> int:
    from ...interop.petab_sciml.arrays import write_outputs  # torch and h5py load only for this command
    from ...interop.petab_sciml.evaluate import evaluate, load_network, read_network_inputs

    inputs = [args.network, *([args.params] if args.params else []), *args.input]
    check_outputs(inputs, [args.out])
    network = load_network(args.network, args.params, gelu=args.gelu)
    outputs = evaluate(network, read_network_inputs(network.spec, args.input), passes=args.passes, seed=args.seed)
    write_outputs(args.out, outputs)
    shapes = ", ".join(str(tuple(output.shape)) for output in outputs)
    print(f"{args.network} -> {args.out} ({len(outputs)} output(s): {shapes})")
    return 0
