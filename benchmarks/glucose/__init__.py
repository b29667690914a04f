"""Benchmark 2 of issue 4 (glucose): UVA/Padova virtual patients, see patients.py and simulate.py."""
