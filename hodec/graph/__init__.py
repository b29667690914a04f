"""The model's interaction graph and the HGS graph edits (issue 4): extract, edit, draw."""
import importlib

_EXPORTS = {
    "cut_vertices": "edits", "full_transitive_closure": "edits", "merge_sccs": "edits",
    "partial_transitive_closure": "edits", "shortcut_edges": "edits",
    "EdgeCause": "extract", "edge_names": "extract", "edges_by_cause": "extract", "gate_edges": "extract",
"interaction_graph": "extract", "resolve_nodes": "extract",
}

__all__ = ["EdgeCause", "interaction_graph", "edge_names", "edges_by_cause", "gate_edges",
           "resolve_nodes", "merge_sccs", "cut_vertices", "partial_transitive_closure", "full_transitive_closure",
           "shortcut_edges"]


def __getattr__(name):
    """Exports load on first use (PEP 562): importing hodec.graph should not pay for networkx (~0.13 s)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
