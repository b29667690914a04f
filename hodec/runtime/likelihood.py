"""Log densities of data under the noise models of observables (`observe x = e ~ normal(sigma)`), per data cell.

For a data value y, the observable's model value mu and the noise scale sigma > 0:

    normal      log N(y; mu, sigma)       = -log(2 pi)/2 - log sigma - (y - mu)^2 / (2 sigma^2)
    laplace     log Laplace(y; mu, sigma) = -log 2 - log sigma - |y - mu| / sigma
    lognormal   log N(log y; log mu, sigma) - log y     (y, mu > 0; sigma on the log scale)
    loglaplace  log Laplace(log y; log mu, sigma) - log y

The log-scale densities are densities of y (the -log y Jacobian term, as PEtab has it), so likelihoods of models
with different distributions compare. The names are the language's (hodec.model.model.NOISE_DISTRIBUTIONS).
"""
from __future__ import annotations

import math

import torch

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG_2 = math.log(2.0)


def normal(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    z = (y - mu) / sigma
    return -_HALF_LOG_2PI - torch.log(sigma) - 0.5 * z * z


def laplace(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return -_LOG_2 - torch.log(sigma) - torch.abs(y - mu) / sigma


def lognormal(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    log_y = torch.log(y)
    return normal(log_y, torch.log(mu), sigma) - log_y


def loglaplace(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    log_y = torch.log(y)
    return laplace(log_y, torch.log(mu), sigma) - log_y


LOG_DENSITIES = {"normal": normal, "laplace": laplace, "lognormal": lognormal, "loglaplace": loglaplace}
LOG_SCALE = frozenset({"lognormal", "loglaplace"})  # the distributions of log y: data and model values must be > 0


def log_densities(distributions, y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """[..., m]: column j of y, mu and sigma (broadcastable [..., m]) under distributions[j]."""
    y, mu, sigma = torch.broadcast_tensors(y, mu, sigma)
    return torch.stack([LOG_DENSITIES[d](y[..., j], mu[..., j], sigma[..., j])
                        for j, d in enumerate(distributions)], -1)
