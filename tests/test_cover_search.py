"""The search without enumeration (search.py) and the budgets that send a component to it."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest
import scipy.sparse as sp

from migrator.planner import bounds, exact
from migrator.planner.bounds import compatibility, improve_by_swaps, incompatible_edges
from migrator.planner.cover import solve_cover, verify_cover
from migrator.planner.search import Pool, column_concepts, search_cover


def planted(seed: int, roles: int = 8, mailboxes: int = 40, apps: int = 90) -> dict[str, frozenset[str]]:
    """Apps made as unions of two or three of `roles` random mailbox sets: a cover by the planted roles exists,
    so the minimum is at most `roles` (no app holds a role alone, which the reductions would solve outright)."""
    rnd = random.Random(seed)
    boxes = [f"m{j}@x.test" for j in range(mailboxes)]
    role_sets = [frozenset(rnd.sample(boxes, rnd.randint(3, 9))) for _ in range(roles)]
    sets: dict[str, frozenset[str]] = {}
    for i in range(apps):
        picked = rnd.sample(range(roles), rnd.randint(2, 3))
        sets[f"app{i}"] = frozenset().union(*(role_sets[k] for k in picked))
    return sets


def test_search_reaches_the_planted_cover_without_enumerating(monkeypatch):
    monkeypatch.setattr(exact, "BICLIQUE_CAP", 1)            # every component with a choice goes to the search
    searched = 0
    for seed in range(8):
        app_sets = planted(seed)
        result = solve_cover(app_sets, time_limit=20)
        verify_cover(app_sets, result)
        solved = result.stats["solve"]
        assert solved["enumeration_capped"] == solved["searched"]
        searched += solved["searched"] > 0
        assert result.lower_bound <= len(result.groups) <= 8, seed
        if not result.optimal:
            assert "more than 1 maximal bicliques" in result.stats["cut"]
    assert searched >= 4                                     # most seeds are not settled by the bounds alone


def test_memory_budget_cut_is_reported_and_the_cover_stays_exact(monkeypatch):
    app_sets = planted(11, roles=10, mailboxes=50, apps=150)
    monkeypatch.setattr(exact, "MEMORY_BUDGET", 2_000)       # a few bicliques' worth
    result = solve_cover(app_sets, time_limit=20)
    verify_cover(app_sets, result)
    assert result.stats["solve"]["searched"] >= 1
    assert not result.optimal or len(result.groups) == result.lower_bound
    if not result.optimal:
        assert "memory budget" in result.stats["cut"]
        assert len(result.groups) - result.lower_bound == result.gap > 0


def test_an_expired_deadline_still_gives_a_cover_no_larger_than_the_trivial_one_and_says_so():
    rnd = np.random.default_rng(3)
    m = sp.csr_matrix(rnd.random((30, 12)) < 0.4)
    m = m[np.diff(m.indptr) > 0]
    stats: dict = {}
    extents, _lb, _optimal = search_cover(m, 1, time.perf_counter() - 1, 10**9, stats)
    info = stats["search"][0]
    assert len(extents) <= min(m.shape)                  # the quick greedy over both sides' concepts, at worst trivial
    assert info["initial_pool"] >= min(m.shape)
    assert info["cut"].startswith("time limit")
    # still a cover: every edge lies in one of the bicliques (extent x its columns' closure)
    dense = m.toarray().astype(bool)
    got = np.zeros_like(dense)
    for e in extents:
        cols = np.flatnonzero(dense[e].all(axis=0))
        got[np.ix_(e, cols)] = True
    assert (got == dense).all()


def test_time_limit_cut_is_reported_on_a_component_too_large_to_enumerate():
    app_sets = planted(5, roles=30, mailboxes=120, apps=600)
    result = solve_cover(app_sets, time_limit=0.01)
    verify_cover(app_sets, result)
    if not result.optimal:
        assert "time limit" in result.stats["cut"]


def test_pool_extents_are_the_rows_holding_each_intent_and_concepts_are_closed():
    rnd = np.random.default_rng(7)
    dense = rnd.random((25, 15)) < 0.5
    dense[:, 0] = True
    m = sp.csr_matrix(dense)
    pool = Pool(m.astype(np.int32))
    intents = column_concepts(m)
    assert pool.add_many(intents, 10**9) is None
    for intent, ext in zip(pool.intents, pool.extents):
        assert np.array_equal(ext, np.flatnonzero(dense[:, intent].all(axis=1)))
        closure = np.flatnonzero(dense[ext].all(axis=0))
        assert np.array_equal(closure, intent)               # a column concept is a maximal biclique
        assert len(pool.edges[pool.index_of(intent)]) == len(ext) * len(intent)


@pytest.mark.parametrize("method", ["column pairs", "gram", "gram transposed"])
def test_compatibility_counts_match_the_definition(monkeypatch, method):
    if method != "column pairs":
        monkeypatch.setattr(bounds, "PAIRS_LIMIT", 0)
    rnd = np.random.default_rng(1)
    for shape in ([(12, 7)] if method == "gram" else [(7, 12)] if method == "gram transposed" else [(12, 7), (7, 12)]):
        dense = rnd.random(shape) < 0.5
        m = sp.csr_matrix(dense)
        rows, cols, weight = compatibility(m)
        d = dense.astype(np.int64)
        expect = (d @ d.T @ d)[rows, cols]
        assert np.array_equal(weight, expect)


def test_swaps_keep_the_edges_pairwise_incompatible_and_never_shrink_the_set():
    rnd = np.random.default_rng(5)
    grew = 0
    for _ in range(40):
        dense = rnd.random((rnd.integers(3, 14), rnd.integers(3, 14))) < 0.6
        m = sp.csr_matrix(dense)
        edges = incompatible_edges(m)
        better = improve_by_swaps(m, edges)
        assert len(better) >= len(edges)
        grew += len(better) > len(edges)
        assert len(set(better)) == len(better)
        for i, (r1, c1) in enumerate(better):
            assert dense[r1, c1]
            for r2, c2 in better[i + 1:]:
                assert not (dense[r1, c2] and dense[r2, c1])     # no biclique holds both
    assert grew >= 1                                         # the swaps do find something on random matrices


def test_lp_row_duals_are_a_dual_solution_after_columns_are_added():
    # edges e0, e1, e2; bicliques {e0, e1}, {e1, e2}, {e0}, {e2}, then {e0, e1, e2}: with x <= 1 bounds HiGHS put
    # part of the objective on a bound dual and the row duals summed to 2 for an LP of value 1 (pricing stalled)
    from migrator.planner.search import _Lp
    lp = _Lp(3)
    lp.add(sp.csc_matrix(np.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 1]], dtype=float)))
    value, _x, duals = lp.solve(10)
    assert value == pytest.approx(2.0) and duals.sum() == pytest.approx(2.0)
    lp.add(sp.csc_matrix(np.ones((3, 1))))
    value, _x, duals = lp.solve(10)
    assert value == pytest.approx(1.0)
    assert duals.sum() == pytest.approx(value)            # strong duality: the duals price every column right
    assert (duals >= -1e-9).all() and duals.sum() <= 1 + 1e-9   # the all-edges column is not underpriced


@pytest.mark.parametrize("shape", [(40, 9), (9, 40)])
def test_small_side_pairs_are_the_closures_of_every_pair(shape):
    from migrator.planner.search import small_side_pairs
    rnd = np.random.default_rng(4)
    dense = rnd.random(shape) < 0.45
    m = sp.csr_matrix(dense.astype(np.int32))
    got = {tuple(x.tolist()) for x in small_side_pairs(m)}
    expect = set()
    n = min(shape)
    for i in range(n):
        for j in range(i + 1, n):
            if shape[0] <= shape[1]:
                cols = np.flatnonzero(dense[i] & dense[j])
            else:
                rows = np.flatnonzero(dense[:, i] & dense[:, j])
                cols = np.flatnonzero(dense[rows].all(axis=0)) if len(rows) else np.zeros(0, dtype=int)
            if len(cols):
                expect.add(tuple(cols.tolist()))
    assert got == expect
    for cols in got:                                      # each is a maximal biclique's intent
        rows = np.flatnonzero(dense[:, list(cols)].all(axis=1))
        assert tuple(np.flatnonzero(dense[rows].all(axis=0)).tolist()) == cols
    assert small_side_pairs(m, limit=n - 1) == []


def test_pool_extents_agree_between_packed_bits_and_the_sparse_product(monkeypatch):
    from migrator.planner import search
    rnd = np.random.default_rng(9)
    dense = rnd.random((60, 70)) < 0.3
    m = sp.csr_matrix(dense.astype(np.int32))
    intents = [np.sort(rnd.choice(70, rnd.integers(1, 4), replace=False)) for _ in range(200)]
    packed = Pool(m)
    assert packed.add_many(intents, 10**9) is None
    monkeypatch.setattr(search, "PACKED_BYTES", 0)
    product = Pool(m)
    assert product.add_many(intents, 10**9) is None
    assert [x.tolist() for x in packed.intents] == [x.tolist() for x in product.intents]
    for intent, a, b in zip(packed.intents, packed.extents, product.extents):
        assert np.array_equal(a, b)
        assert np.array_equal(a, np.flatnonzero(dense[:, intent].all(axis=1)))


def test_dense_few_columns_are_covered_from_the_compact_pool_of_pair_closures():
    # 14 mailboxes, 7 planted two-mailbox roles, every app holds three of them: the planted cover (7) is made of
    # pair closures, half the trivial one-group-per-mailbox cover (14)
    rnd = random.Random(2)
    roles = [np.array([2 * k, 2 * k + 1]) for k in range(7)]
    rows = {tuple(sorted(rnd.sample(range(7), 3))) for _ in range(60)}
    dense = np.zeros((len(rows), 14), dtype=bool)
    for i, picked in enumerate(sorted(rows)):
        for k in picked:
            dense[i, roles[k]] = True
    m = sp.csr_matrix(dense.astype(np.int32))
    stats: dict = {}
    lb = bounds.lower_bound(m)
    extents, _lb, _optimal = search_cover(m, lb, time.perf_counter() + 20, 10**9, stats)
    compact = stats["search"][0]["compact"]
    assert min(compact["greedy"], (compact.get("ilp") or {}).get("groups") or compact["greedy"]) <= 7
    assert len(extents) <= 7
    got = np.zeros_like(dense)
    for e in extents:
        got[np.ix_(e, np.flatnonzero(dense[e].all(axis=0)))] = True
    assert (got == dense).all()
