"""PEtab (v2, and v1 where it falls out) and PEtab-SciML problems: the problem files read with located errors
(tables.py, problem.py), mapped onto a hodec model, data and conditions (mapping.py), and evaluated at the
nominal parameters through hodec's own simulate and likelihood, gradients by autograd (evaluate.py)."""
