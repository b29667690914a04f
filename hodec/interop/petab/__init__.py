"""PEtab v1 and v2 and PEtab-SciML problems: the problem files read with located errors (tables.py, problem.py;
v1's tables in v2's shape: v1.py), mapped onto a hodec model, data and conditions (mapping.py; the observables'
placeholder parameters: placeholders.py), and evaluated at the nominal parameters through hodec's own simulate,
steady states and likelihood, period by period, gradients by autograd (evaluate.py)."""
