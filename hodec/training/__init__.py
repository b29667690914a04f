"""Training compiled models on data (`hodec fit`, `hodec sparsify`).

data.py       DATA.csv -> trajectories, checked against the model
options.py    config keys defined once (default, description, check) and the strict YAML reader
config.py     FIT.yaml: options, defaults, validation
groups.py     trajectories grouped by start time, solved batched on their union grid
initial.py    which trainable params each state's initial value reads (what `initial: data` may pin)
problem.py    the fitting problem: columns, initial states, simulations, checks, squared errors
methods/      the training methods by name (vanilla, homotopy, multiple shooting, forecast): set-up, loss, lambda
forecast/     forecast training: windows, state estimators (encoders, filters), forecasts, horizon metrics
spline.py     batched cubic smoothing spline (homotopy's coupling reference yhat)
reference.py  the spline as one cubic per grid interval (fast evaluation inside the vector field)
schedule.py   the homotopy schedule of lambda
loop.py       the training loop (Trainer): epochs, best state, per-epoch hook, resume
progress.py   the progress bar
result.py     FitResult, FitError
fit.py        hodec.fit
report.py     report.json, checkpoint.pt, fit.png, fitted.hode
run.py        a `hodec fit` run folder: new, --resume, --force
sparsify/     `hodec sparsify` (sparsify_config.py: SPARSIFY.yaml)
"""
