"""Training compiled models on data (`hodec fit`).

spline.py     batched cubic smoothing spline (the coupling's reference yhat)
reference.py  the spline as one cubic per grid interval (fast evaluation inside the vector field)
schedule.py   the homotopy schedule of lambda
data.py       DATA.csv -> trajectories, checked against the model
config.py     FIT.yaml: options, defaults, validation
fit.py        the trainer (homotopy, vanilla, multiple shooting) and hodec.fit
report.py     report.json, checkpoint.pt, fit.png, fitted.hode
run.py        a `hodec fit` run folder: new, --resume, --force
"""
