"""The model's interaction graph and the HGS graph edits (issue 4): extract, edit, draw."""
from .edits import (cut_vertices, full_transitive_closure, merge_sccs, partial_transitive_closure,
                    shortcut_edges)
from .extract import (EdgeCause, edge_names, edges_by_cause, gate_edges, graph_of_source, interaction_graph,
                      resolve_nodes)

__all__ = ["EdgeCause", "interaction_graph", "graph_of_source", "edge_names", "edges_by_cause", "gate_edges",
           "resolve_nodes", "merge_sccs", "cut_vertices", "partial_transitive_closure", "full_transitive_closure",
           "shortcut_edges"]
