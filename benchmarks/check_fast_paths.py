"""Self-checks for the performance paths added to hodec (run: python -m benchmarks.check_fast_paths; ~1 minute).

1. Merged products (codegen/vectorize.py _merge_products): for 40 random specs (params named so that factors
   print in different orders, 1-3 reactant laws, laws with an input, a squared state, observables), forward,
   observables and initial_state are bit-for-bit equal to the code generated with merging switched off, for
   several batch shapes; gradients agree to 1e-14 (autograd sums their contributions in another order).
2. CSR accumulation (runtime/model.py accumulate, forced on from 8 rows), float64, against the dense-matmul and
   index_add paths: forward bit-for-bit, gradients, gradcheck, gradgradcheck, forward-mode AD, a vectorised
   Jacobian (vmap over the backward), torch.func jacrev/vmap/jacfwd, functional_call, deepcopy, torch.save and
   pickle, .float(), and nested vs flat batches bit-for-bit.
"""
from __future__ import annotations

import copy
import io
import pickle
import random
import warnings

import torch
import torch.autograd.forward_ad as fwAD
from torch.autograd import gradcheck, gradgradcheck
from torch.func import functional_call, jacfwd, jacrev, vmap

import hodec
from benchmarks.networks import random_network
from hodec.codegen import vectorize
from hodec.compiler import load_source


def build(text: str, merge: bool, name: str):
    original = vectorize._merge_products
    if not merge:
        vectorize._merge_products = lambda scope, groups: list(groups)
    try:
        code = hodec.compile_source(text)
    finally:
        vectorize._merge_products = original
    return load_source(code, name)().double(), code


def random_spec(seed: int, n: int = 8, n_reactions: int = 12) -> str:
    rng = random.Random(seed)
    pname, sname = rng.choice(["k", "z", "a_", "Q"]), rng.choice(["x", "S", "b"])
    lines = ["model T"] + [f"param {pname}{i} = {rng.uniform(0.1, 1):.4f}" for i in range(n_reactions)]
    lines += ["input u"] if seed % 3 == 0 else []
    lines += [f"state {sname}{j} = {rng.uniform(0.1, 2):.3f}" for j in range(n)]
    for i in range(n_reactions):
        k = rng.choice([1, 1, 2, 2, 3])
        ins = rng.sample(range(n), k)
        out = rng.choice([j for j in range(n) if j not in ins])
        law = " * ".join([f"{pname}{i}"] + [f"{sname}{j}" for j in ins])
        if seed % 3 == 0 and i % 4 == 0:
            law += " * u"
        if seed % 4 == 1 and i % 5 == 0 and k == 1:
            law = f"{pname}{i} * {sname}{ins[0]} ^ 2"
        lines.append(f"reaction r{i}: {' + '.join(f'{sname}{j}' for j in ins)} -> {sname}{out} ; {law}")
    if seed % 2:
        lines += [f"observe o1 = {pname}0 * {sname}1", f"observe o2 = {pname}1 * {sname}2 * {sname}3",
                  f"observe o3 = {pname}2 * {sname}4"]
    return "\n".join(lines) + "\n"


def check_merged_products(n_specs: int = 40):
    merged, worst = 0, 0.0
    t = torch.tensor(0.3, dtype=torch.float64)
    for seed in range(n_specs):
        text = random_spec(seed)
        a, code = build(text, True, f"check_merge_{seed}_on")
        b, _ = build(text, False, f"check_merge_{seed}_off")
        merged += "ypad" in code
        if "input u" in text:
            for m in (a, b):
                m.set_inputs({"u": ([0.0, 1.0], [0.5, 1.5])})
        for shape in ((8,), (3, 8), (40, 8), (2, 20, 8)):
            y = (torch.rand(*shape, dtype=torch.float64) + 0.1).requires_grad_()
            oa, ob = a(t, y), b(t, y)
            assert torch.equal(oa, ob), (seed, shape)
            w = torch.rand_like(oa)
            ga = torch.autograd.grad((oa * w).sum(), [y, a.raw_free])
            gb = torch.autograd.grad((ob * w).sum(), [y, b.raw_free])
            for x, z in zip(ga, gb):
                assert torch.allclose(x, z, rtol=1e-14, atol=1e-15), (seed, shape)
                worst = max(worst, float((x - z).abs().max()))
            if a.observable_names:
                assert torch.equal(a.observables(t, y), b.observables(t, y))
        assert torch.equal(a.initial_state(), b.initial_state())
    print(f"merged products: {merged} of {n_specs} specs merged; forward bit-for-bit; max gradient diff {worst:.1e}")


def check_sparse_accumulation():
    warnings.filterwarnings("error", message=".*[Ss]parse.*")  # the beta warning must not reach users
    t = torch.tensor(0.0, dtype=torch.float64)
    for n_states, n_reactions in ((100, 300), (200, 300)):
        net = random_network(n_states, n_reactions)
        cls = load_source(hodec.compile_source(net.hode), f"check_sparse_{n_states}")
        m = cls().double()
        m._sparse_min_rows = 8

        def old(model, y):
            saved, model._sparse_min_rows = model._sparse_min_rows, None
            try:
                return model(t, y)
            finally:
                model._sparse_min_rows = saved

        y = (torch.rand(40, n_states, dtype=torch.float64) + 0.1).requires_grad_()
        assert torch.equal(m(t, y), old(m, y))
        w = torch.rand(40, n_states, dtype=torch.float64)
        new_grads = torch.autograd.grad((m(t, y) * w).sum(), [m.raw_free, y])
        old_grads = torch.autograd.grad((old(m, y) * w).sum(), [m.raw_free, y])
        assert all(torch.allclose(a, b, rtol=1e-13, atol=1e-14) for a, b in zip(new_grads, old_grads))
        small = y[:10].detach().clone().requires_grad_()
        assert gradcheck(lambda z: m(t, z), (small,))
        assert gradgradcheck(lambda z: m(t, z) ** 2, (small,))
        with fwAD.dual_level():
            tangent = torch.rand_like(y)
            jvp = fwAD.unpack_dual(m(t, fwAD.make_dual(y.detach(), tangent))).tangent
        _, jvp_old = torch.autograd.functional.jvp(lambda z: old(m, z), y.detach(), tangent)
        assert torch.allclose(jvp, jvp_old, rtol=1e-13, atol=1e-14)
        z = y[:12].detach()
        jac = torch.autograd.functional.jacobian(lambda v: m(t, v), z, vectorize=True)
        assert torch.allclose(jac, torch.autograd.functional.jacobian(lambda v: old(m, v), z))
        vmap(jacrev(lambda v: m(t, v)))(z)
        jacfwd(lambda v: m(t, v))(z[:2])
        params = {k: v.detach() + 0.01 for k, v in m.named_parameters()}
        called = functional_call(m, params, (t, y.detach()))
        m2 = copy.deepcopy(m)
        with torch.no_grad():
            m2.raw_free += 0.01
        assert torch.allclose(called, m2(t, y.detach()))
        buffer = io.BytesIO()
        torch.save(m, buffer)
        buffer.seek(0)
        assert torch.equal(torch.load(buffer, weights_only=False)(t, y), m(t, y))
        assert torch.equal(pickle.loads(pickle.dumps(m))(t, y), m(t, y))
        assert m.float()(t, y.float().detach()).dtype == torch.float32
        flat = cls().double()
        flat._sparse_min_rows = 8
        with torch.no_grad():
            ys = torch.rand(48, n_states, dtype=torch.float64)
            assert torch.equal(flat(t, ys), flat(t, ys.reshape(6, 8, n_states)).reshape(48, n_states))
    print("CSR accumulation: forward bit-for-bit; gradients, gradcheck, gradgradcheck, forward AD, vmap/jacrev/"
          "jacfwd, functional_call, deepcopy, save/pickle, float(), nested batches: ok")


if __name__ == "__main__":
    torch.manual_seed(0)
    check_merged_products()
    check_sparse_accumulation()
