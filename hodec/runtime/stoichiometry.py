"""The stoichiometry product dy/dt = flux @ S of generated models: a dense matmul, an index_add scatter, or, for
many-row batches on CPU, a CSR product. Mixed into CompiledModel; the generated forward calls accumulate(), the
generated jacobian scatter_jacobian()."""
from __future__ import annotations

import warnings
from typing import Callable

import torch

# On CPU, accumulate() multiplies by the stoichiometry in CSR form, instead of by index_add ("scatter" models) or
# a dense matmul ("dense" models), once batch rows x nonzeros >= SPARSE_MIN_WORK (its fixed cost, two sparse
# tensors and a transpose, is then paid off), except for dense models small enough that F * n < SPARSE_DENSE_RATIO *
# nonzeros, where the dense matmul stays faster at any batch. Measured in float32 on 1 thread with
# benchmarks/ablate_forward.py: the crossover is at ~10 rows for N=1000/R=3000, ~100 for N=100/R=300.
SPARSE_MIN_WORK = 100_000
SPARSE_DENSE_RATIO = 16
_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", lambda: False)
_CSR_WARNED = []


def _csr(rows, cols, values, size) -> torch.Tensor:
    if _CSR_WARNED:
        return torch.sparse_csr_tensor(rows, cols, values, size)
    with warnings.catch_warnings():  # "sparse CSR support is in beta", once per process: not the user's concern
        warnings.simplefilter("ignore")
        _CSR_WARNED.append(True)
        return torch.sparse_csr_tensor(rows, cols, values, size)


class _SparseAccumulate(torch.autograd.Function):
    """flux [rows, F] → flux @ S [rows, n], with S given as CSR matrices of S^T [n, F] and of S [F, n].

    Linear in flux: the gradient is the same product by the transpose (itself differentiable, so double backward
    works), and the forward-mode tangent is the product of the tangent."""

    @staticmethod
    def forward(ctx, flux, by_state, by_flux):
        ctx.matrices = (by_state, by_flux)
        return (by_state @ flux.t()).t().contiguous()

    @staticmethod
    def backward(ctx, grad):
        by_state, by_flux = ctx.matrices
        if _transforms_active():  # e.g. a batched vector-Jacobian product (vmap): sparse ops have no batching rule
            rows = torch.repeat_interleave(torch.arange(by_flux.shape[0], device=grad.device),
                                           by_flux.crow_indices().diff())
            out = grad.new_zeros(*grad.shape[:-1], by_flux.shape[0])
            return out.index_add(-1, rows, grad.index_select(-1, by_flux.col_indices()) * by_flux.values()), None, None
        return _SparseAccumulate.apply(grad.contiguous(), by_flux, by_state), None, None

    @staticmethod
    def jvp(ctx, flux_tangent, *_):
        by_state, _by_flux = ctx.matrices
        return (by_state @ flux_tangent.t()).t().contiguous()


class Stoichiometry:
    """Mixed into CompiledModel: `stoichiometry_table` rows are (flux, state, coefficient); `accumulation` is the
    generated code's choice between "dense" and "scatter"."""

    fluxes_table: tuple = ()
    stoichiometry_table: tuple = ()
    accumulation: str = "dense"

    def _init_stoichiometry(self, constant: Callable):
        """Buffers of the stoichiometry in every form accumulate() uses; constant(values[, dtype]) makes one (a
        float64 list or tensor in the model's dtype and device)."""
        n_flux, n_state = len(self.fluxes_table), len(self.state_names)
        flux, state, coef = zip(*self.stoichiometry_table) if self.stoichiometry_table else ((), (), ())
        if self.accumulation == "dense":
            dense = torch.zeros(n_flux, n_state, dtype=torch.float64)
            dense[list(flux), list(state)] = torch.tensor(coef, dtype=torch.float64)
            self.register_buffer("stoichiometry", constant(dense), persistent=False)
        else:
            self.register_buffer("stoich_flux", constant(flux, torch.long), persistent=False)
            self.register_buffer("stoich_state", constant(state, torch.long), persistent=False)
            self.register_buffer("stoich_coef", constant(coef), persistent=False)
        # The same stoichiometry in compressed-row form, by state (S^T, for dy/dt) and by flux (S, for the
        # gradient), as plain index/value buffers: a CSR matmul accumulates a many-row batch several times faster
        # than a dense matmul or an index_add along the last dimension (see accumulate).
        for name, major, minor, size in (("csr_t", state, flux, n_state), ("csr", flux, state, n_flux)):
            order = sorted(range(len(coef)), key=lambda e: (major[e], minor[e]))
            counts = [0] * (size + 1)
            for e in order:
                counts[major[e] + 1] += 1
            for i in range(size):
                counts[i + 1] += counts[i]
            self.register_buffer(f"{name}_rows", constant(counts, torch.long), persistent=False)
            self.register_buffer(f"{name}_cols", constant([minor[e] for e in order], torch.long), persistent=False)
            self.register_buffer(f"{name}_values", constant([coef[e] for e in order]), persistent=False)
        sparse = len(coef) > 0 and (self.accumulation != "dense" or n_flux * n_state >= SPARSE_DENSE_RATIO * len(coef))
        self._sparse_min_rows = -(-SPARSE_MIN_WORK // len(coef)) if sparse else None

    def accumulate(self, flux: torch.Tensor) -> torch.Tensor:
        """dy/dt from the flux vector [..., F] through the stoichiometry."""
        rows = self._sparse_min_rows
        if rows is not None and flux.dim() > 1 and flux.numel() >= rows * flux.shape[-1] > 0 \
                and flux.device.type == "cpu" and flux.dtype == self.csr_values.dtype and not _transforms_active():
            return self._accumulate_sparse(flux)
        if self.accumulation == "dense":
            return flux @ self.stoichiometry
        out = flux.new_zeros(*flux.shape[:-1], len(self.state_names))
        terms = flux.index_select(-1, self.stoich_flux) * self.stoich_coef
        if _transforms_active():  # under vmap, an in-place add of batched terms into unbatched zeros is refused
            return out.index_add(-1, self.stoich_state, terms)
        return out.index_add_(-1, self.stoich_state, terms)

    def scatter_jacobian(self, terms: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """The n x n Jacobian [..., n, n] with terms [..., E] summed into the flat positions at [E] (i * n + j)."""
        n = len(self.state_names)
        out = terms.new_zeros(*terms.shape[:-1], n * n)
        # In place: a batch of large Jacobians is memory-bound, and the out-of-place index_add copies it once more
        # (N=100, B=1024: about twice the time). Under vmap, an in-place add into unbatched zeros is refused.
        out = out.index_add(-1, at, terms) if _transforms_active() else out.index_add_(-1, at, terms)
        return out.reshape(*terms.shape[:-1], n, n)

    def _accumulate_sparse(self, flux: torch.Tensor) -> torch.Tensor:
        n_flux, n_state = len(self.fluxes_table), len(self.state_names)
        by_state = _csr(self.csr_t_rows, self.csr_t_cols, self.csr_t_values, (n_state, n_flux))
        by_flux = _csr(self.csr_rows, self.csr_cols, self.csr_values, (n_flux, n_state))
        out = _SparseAccumulate.apply(flux.reshape(-1, n_flux), by_state, by_flux)
        return out.reshape(*flux.shape[:-1], n_state)
