"""PEtab-SciML neural networks: the network YAML format (spec.py) as torch modules (network.py), the HDF5 array
files of parameters, inputs and outputs (arrays.py), and one network evaluated on them (evaluate.py)."""
