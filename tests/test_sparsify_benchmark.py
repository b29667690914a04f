"""The synthetic sparsify benchmark's own pieces: the true edges, edge scoring through an SCC merge, and the
no-state-dropping refit of its hgs-drop row."""
import torch

from benchmarks.sparsify import synthetic as S  # noqa: E402  (python -m pytest puts the repo root on sys.path)

SPEC = S.spec_text("Comprehensive", S.COMPREHENSIVE_EXTRA, latent=S.LATENT)


def test_true_edges_are_the_generators_interaction_graph():
    assert S.true_edges() == {("X1", "X1"), ("X1", "X2"), ("X1", "X3"), ("X1", "X4"), ("X2", "X2"), ("X2", "X3"),
                              ("X3", "X1"), ("X3", "X3"), ("X3", "X4"), ("X4", "X4")}


def test_slot_scorer_scores_on_the_condensed_graph_after_a_merge():
    specs = S.mnode_specs(SPEC)
    base, merged = specs["mnode+l1"], specs["hgs-closure"]
    names = S.gate_names(base)
    assert S.slot_scorer(base)(names) == {"precision": 10 / 19, "recall": 1.0, "edges_kept": 19, "edges": 19}
    # X1, X2, X3 and L2 form one super-state S: the 7 true edges among X1..X3 become (X1, S), (X2, S), (X3, S)
    score = S.slot_scorer(merged)
    super_slot = next(n.split(".")[0] for n in S.gate_names(merged) if n.endswith(".L2"))
    true = [f"{super_slot}.X1", f"{super_slot}.X2", f"{super_slot}.X3", "f_X4.X1", "f_X4.X3", "f_X4.X4"]
    assert score(true) == {"precision": 1.0, "recall": 1.0, "edges_kept": 6, "edges": 11}
    assert score(true[:3] + ["f_L1.L1"]) == {"precision": 0.75, "recall": 0.5, "edges_kept": 4, "edges": 11}


def test_the_full_closure_adds_nothing_after_the_merge():
    """Why the MNODE track's hgs-closure row reuses hgs: on this spec the two specs are the same."""
    specs = S.mnode_specs(SPEC)
    assert S.body(specs["hgs"]) == S.body(specs["hgs-closure"])
    assert S.body(specs["hgs-merge"]) != S.body(specs["mnode+l1"])
    assert len(S.gate_names(specs["hgs-merge"])) > len(S.gate_names(specs["mnode+l1"]))


def test_refit_pruned_with_every_state_observed_drops_no_state():
    torch.manual_seed(0)
    ts = torch.linspace(0, 8, 5, dtype=torch.float64)
    data = S.generate(S.COMPREHENSIVE_EXTRA, 0.0, 2, 1, ts, 0.0, S.LATENT)
    cfg = S.load_sparsify_config({"epochs": 2, "refit_epochs": 2, "lr": 0.01,
                                  "solver": {"method": "rk4", "step_size": 0.4}})
    gated = S.load_text(SPEC, S.SPEC, gates=True)()
    pruned = ["a1", "b1", "a2", "b2"]
    states = S.state_names(SPEC)
    pruning, model = S.refit_pruned(SPEC, gated, pruned, states, data, cfg)
    assert pruning.states_kept == states and model.state_names == states
    assert S.prune_spec(SPEC, pruned, S.STATES, S.SPEC).states_dropped == ("L1", "L2")  # what hgs does instead
    assert S.params_of(pruning.source) == 14


def test_the_oracle_row_prunes_hgs_to_exactly_the_true_edges():
    hgs = S.mnode_specs(SPEC)["hgs"]
    super_slot = next(n.split(".")[0] for n in S.gate_names(hgs) if n.endswith(".L2"))
    assert sorted(S.false_slot_gates(hgs)) == sorted([f"{super_slot}.L2", "f_X4.X2", "f_X4.L1", "f_L1.X1",
                                                       "f_L1.L1"])
    oracle = S.prune_spec(hgs, S.false_slot_gates(hgs), S.STATES, S.SPEC)
    assert oracle.states_kept == S.STATES  # L1 and L2 no longer reach data
    assert S.slot_scorer(oracle.source)(S.gate_names(oracle.source)) == {"precision": 1.0, "recall": 1.0,
                                                                         "edges_kept": 6, "edges": 6}
