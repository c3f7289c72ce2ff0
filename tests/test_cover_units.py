"""Unit tests of the cover's parts: reductions, lower bound, verification, edge cases, a real benchmark instance."""

from __future__ import annotations

import dataclasses
import gzip
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.planner.bounds import incompatible_edges
from migrator.planner.cover import CoverResult, solve_cover, verify_cover
from migrator.planner.reduce import reduce_matrix, subset_pairs, union_of_subsets, unique_rows

ROLEMINING = Path(__file__).resolve().parent / "data" / "rolemining"  # gzipped copies, see SOURCE.md there


def csr(rows: list[list[int]]) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(rows, dtype=np.int8))


# --- reductions ---------------------------------------------------------------------------------------------

def test_unique_rows_keeps_first_of_each_class():
    reps, cls = unique_rows(csr([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 0, 0], [0, 1, 0]]))
    assert reps.tolist() == [0, 1, 3]
    assert cls.tolist() == [0, 1, 0, 2, 1]


def test_union_of_subsets_flags_only_exact_unions():
    m = csr([[1, 1, 0, 0],     # {0,1}
             [0, 0, 1, 0],     # {2}
             [1, 1, 1, 0],     # {0,1,2} = row0 | row1  -> removable
             [1, 1, 1, 1],     # {0,1,2,3}: its subsets miss column 3 -> kept
             [1, 0, 0, 0]])    # {0}
    assert union_of_subsets(m).tolist() == [False, False, True, False, False]


def test_union_of_subsets_with_heavy_columns_matches_plain_product():
    # a column every row holds (a mailbox all apps send as) makes the product quadratic: it is handled as bits
    rng = np.random.default_rng(3)
    base = rng.random((12, 30)) < 0.15
    rows = [base[i] for i in range(12)] + [base[rng.choice(12, 2, replace=False)].any(0) for _ in range(30)]
    dense = np.array(rows).astype(np.int8)
    dense[:, 0] = 1
    dense = np.unique(dense, axis=0)
    m = sp.csr_matrix(dense)
    plain = union_of_subsets(m, budget=10**9)
    for budget in (1500, 600, 300):                        # the densest columns leave the product, as bits
        heavy = union_of_subsets(m, budget=budget)
        assert heavy is not None and heavy.tolist() == plain.tolist()
    assert 0 < plain.sum() < len(plain)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=6, max_size=6), min_size=1, max_size=12),
       st.sampled_from([0, 3, 10, 10**6]))
def test_subset_pairs_match_brute_force(rows, budget):
    dense = np.unique(np.array(rows, dtype=np.int8), axis=0)
    dense = dense[dense.any(axis=1)]
    if len(dense) == 0:
        return
    pairs = subset_pairs(sp.csr_matrix(dense), budget=budget)
    if pairs is None:                                      # too costly under this budget: allowed to refuse
        return
    got = set(zip(pairs[0].tolist(), pairs[1].tolist()))
    want = {(i, j) for i in range(len(dense)) for j in range(len(dense))
            if i != j and not (dense[i] & ~dense[j]).any()}
    assert got == want


def test_reduce_matrix_reaches_a_fixpoint_and_keeps_a_submatrix():
    # rows: a, b, a|b (removable), c; columns 3 and 4 identical (merged)
    m = csr([[1, 1, 0, 0, 0],
             [0, 0, 1, 0, 0],
             [1, 1, 1, 0, 0],
             [0, 0, 0, 1, 1]])
    red = reduce_matrix(m)
    assert red.rows.tolist() == [0, 1, 3]
    assert len(red.cols) == 3                             # col 1 = col 0 after merging, col 4 = col 3
    assert red.stats["rows_union_removed"] == 1
    sub = red.matrix().toarray()
    assert (sub == m.toarray()[np.ix_(red.rows, red.cols)]).all()


# --- lower bound ----------------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.booleans(), min_size=5, max_size=5), min_size=1, max_size=8))
def test_incompatible_edges_are_pairwise_incompatible(rows):
    m = np.array(rows, dtype=bool)
    edges = incompatible_edges(m)
    assert all(m[r, c] for r, c in edges)
    for (r1, c1), (r2, c2) in ((a, b) for i, a in enumerate(edges) for b in edges[i + 1:]):
        assert not (m[r1, c2] and m[r2, c1]), "two chosen edges fit in one biclique"


# --- verify_cover -------------------------------------------------------------------------------------------

APPS = {"a": frozenset({"x", "y"}), "b": frozenset({"y", "z"}), "c": frozenset({"x", "y", "z"}), "d": frozenset()}


def good() -> CoverResult:
    return solve_cover(APPS)


def test_solution_of_the_small_example():
    r = good()
    assert len(r.groups) == 2 and r.optimal and r.lower_bound == 2   # {x,y} and {y,z}; c uses both
    assert r.app_groups["d"] == ()
    assert {frozenset().union(*(r.groups[i] for i in r.app_groups["c"]))} == {APPS["c"]}


@pytest.mark.parametrize("breakage, message", [
    (lambda r: dataclasses.replace(r, app_groups={**r.app_groups, "c": r.app_groups["c"][:1]}), "not covered"),
    (lambda r: dataclasses.replace(r, app_groups={**r.app_groups, "a": r.app_groups["c"]}), "does not have"),
    (lambda r: dataclasses.replace(r, app_groups={**r.app_groups, "a": (7,)}), "out of range"),
    (lambda r: dataclasses.replace(r, groups=r.groups + (frozenset({"x"}),)), "no app uses"),
    (lambda r: dataclasses.replace(r, groups=(r.groups[0], r.groups[0])), "duplicate"),
    (lambda r: dataclasses.replace(r, lower_bound=3), "lower bound"),
    (lambda r: dataclasses.replace(r, app_groups={k: v for k, v in r.app_groups.items() if k != "b"}), "missing"),
])
def test_verify_cover_catches_inexact_covers(breakage, message):
    with pytest.raises(ValueError, match=message):
        verify_cover(APPS, breakage(good()))


def test_verify_cover_accepts_a_correct_cover():
    verify_cover(APPS, good())


# --- API edges --------------------------------------------------------------------------------------------------

def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="strategy"):
        solve_cover(APPS, strategy="fewest")


def test_empty_inputs():
    assert solve_cover({}).groups == ()
    r = solve_cover({"a": frozenset(), "b": frozenset()})
    assert r.groups == () and r.app_groups == {"a": (), "b": ()} and r.lower_bound == 0 and r.optimal


def test_identical_apps_share_one_group_under_both_strategies():
    sets = {f"app{i}": frozenset({"p", "q", "r"}) for i in range(5)}
    for strategy in ("minimal", "per-app"):
        r = solve_cover(sets, strategy=strategy)
        assert len(r.groups) == 1 and all(v == (0,) for v in r.app_groups.values())


def test_per_app_makes_one_group_per_distinct_set_even_when_fewer_would_do():
    sets = {"a": frozenset("xy"), "b": frozenset("yz"), "c": frozenset("xyz")}
    r = solve_cover(sets, strategy="per-app")
    assert sorted(map(sorted, r.groups)) == [["x", "y"], ["x", "y", "z"], ["y", "z"]]
    assert r.lower_bound == 2 and not r.optimal


def test_no_time_still_gives_an_exact_cover():
    # the 6 pairs of 4 disjoint teams: 4 groups suffice, per-app needs 6
    teams = [frozenset(f"t{t}m{i}" for i in range(3)) for t in range(4)]
    sets = {f"app{a}{b}": teams[a] | teams[b] for a in range(4) for b in range(a + 1, 4)}
    r = solve_cover(sets, time_limit=0.0)
    verify_cover(sets, r)
    assert r.lower_bound <= 4 <= len(r.groups) <= 6
    full = solve_cover(sets)
    assert len(full.groups) == 4 and full.optimal and set(full.groups) == set(teams)


@pytest.mark.parametrize("name, known", [("hc", 14), ("domino", 20), ("fire2", 10)])
def test_known_minimum_on_small_role_mining_datasets(name, known):
    app_sets = _load_rolemining(name)
    r = solve_cover(app_sets)
    assert len(r.groups) == known and r.lower_bound == known and r.optimal


@pytest.mark.parametrize("preferred, expected", [
    ([], ["wxyz", "xyz"]),
    ([frozenset("w")], ["w", "xyz"]),            # an existing group {w} replaces {w,x,y,z}: b = {x,y,z} | {w}
    ([frozenset("y")], ["wxyz", "xyz"]),         # {y} would leave b without w: refused
    ([frozenset("xw")], ["wxyz", "xyz"]),        # splits the class {x,y,z} (same apps hold all three): skipped
])
def test_preferred_set_replaces_a_group_only_when_the_cover_stays_exact(preferred, expected):
    sets = {"a": frozenset("xyz"), "b": frozenset("xyzw")}
    r = solve_cover(sets, preferred=preferred)
    assert sorted("".join(sorted(g)) for g in r.groups) == expected
    assert len(r.groups) == 2 and r.optimal


def _load_rolemining(name: str) -> dict[str, frozenset[str]]:
    sets: dict[str, set[str]] = {}
    for line in gzip.decompress((ROLEMINING / f"{name}.txt.gz").read_bytes()).decode("ascii").splitlines():
        u, p = line.split()
        sets.setdefault(f"u{u}", set()).add(f"p{p}")
    return {k: frozenset(v) for k, v in sets.items()}


def test_americas_small_needs_and_gets_the_integer_program():
    sets = _load_rolemining("americas_small")
    r = solve_cover(sets)
    assert len(r.groups) == 178 and r.lower_bound == 178 and r.optimal
    assert r.stats["solve"]["ilp"], "the greedy alone does not reach 178 here: the ILP must have run"


@pytest.mark.parametrize("answer", ["not a cover", "every biclique"])
def test_a_lying_solver_is_not_trusted(monkeypatch, answer):
    """A solver claiming an optimal answer with an impossible bound (1000): either its answer does not cover,
    or the bound exceeds a verified cover. Both are rejected, the greedy cover is kept, no optimality is
    claimed, and the result is still exact."""
    from migrator.planner import exact, ilp

    def liar(a, time_limit):
        chosen = [0] if answer == "not a cover" else list(range(a.shape[1]))
        return ilp.IlpResult(chosen=chosen, bound=1000.0, optimal=True, seconds=0.0, status="Optimal")

    monkeypatch.setattr(exact, "solve_set_cover", liar)
    sets = _load_rolemining("americas_small")
    r = solve_cover(sets)
    verify_cover(sets, r)
    assert any(x.get("rejected") for x in r.stats["solve"]["ilp"])
    assert len(r.groups) > 178 and not r.optimal


def test_a_broken_minimal_cover_falls_back_to_an_exact_per_app_cover(monkeypatch):
    from migrator.planner import exact
    real = exact.solve_classes

    def broken(*args, **kwargs):
        groups, app_groups, lb, optimal, stats = real(*args, **kwargs)
        return groups[1:], {a: [i - 1 for i in g if i > 0] for a, g in app_groups.items()}, lb, optimal, stats

    monkeypatch.setattr(exact, "solve_classes", broken)
    sets = {"a": frozenset("xy"), "b": frozenset("yz"), "c": frozenset("xyz")}
    r = solve_cover(sets)
    verify_cover(sets, r)
    assert "failed verification" in r.stats["fallback"]
    assert len(r.groups) == 3 and r.lower_bound == 2 and not r.optimal
