"""Forecast training (FIT.yaml `method: forecast`): the data cut into windows, each window's state at its origin
estimated from its history, the model run over the horizon.

windows.py     Windows, make_windows: the trajectories cut into history + horizon windows (masks, inputs)
base.py        Estimator: the interface of a state estimator
encoders.py    learned encoders over the history (gru, lstm, mlp), trained with the model
estimators.py  ESTIMATORS, make_estimator: the estimators by name
predict.py     forecast: the model run from the estimated states over the horizons (one batched solve)
params.py      forecast.estimate: params the encoder infers per window
pool.py        forecast.pool: those params pooled over the trajectory's earlier histories
"""
from .base import Estimator
from .estimators import ESTIMATORS, make_estimator
from .predict import forecast
from .windows import Windows, make_windows

__all__ = ["ESTIMATORS", "Estimator", "Windows", "forecast", "make_estimator", "make_windows"]
