"""Minimum exact biclique cover (first version: per-app groups with a component lower bound; exact solver next)."""

from __future__ import annotations

from collections.abc import Mapping

import networkx as nx


def minimal_cover_lower_bound(app_sets: Mapping[str, frozenset[str]]) -> int:
    """Each connected component of the app-mailbox graph with an edge needs at least one group."""
    g = nx.Graph()
    for app, s in app_sets.items():
        for m in s:
            g.add_edge(("a", app), ("m", m))
    return nx.number_connected_components(g)


def minimal_cover(app_sets, *, time_limit=60.0, preferred=()):
    from migrator.planner.cover import CoverResult, order_groups, per_app_groups
    groups, app_groups = order_groups(app_sets, per_app_groups(app_sets))
    lb = minimal_cover_lower_bound(app_sets)
    return CoverResult(groups, app_groups, lb, len(groups) == lb, "minimal", {"note": "placeholder"})
