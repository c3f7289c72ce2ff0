"""Property tests of the exact cover on random small instances (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.planner import exact
from migrator.planner.cover import solve_cover, verify_cover


def instances(max_apps: int = 9, max_mailboxes: int = 10):
    """Random app -> mailbox sets, some empty, some repeated."""
    mailboxes = [f"m{j}@x.test" for j in range(max_mailboxes)]
    app_set = st.frozensets(st.sampled_from(mailboxes), max_size=max_mailboxes)
    return st.dictionaries(st.from_regex(r"app[0-9a-f]{1,3}", fullmatch=True), app_set, max_size=max_apps)


def assert_exact(app_sets, result):
    """Independent of verify_cover: every app's groups are inside its set and their union is the set."""
    assert "fallback" not in result.stats, result.stats["fallback"]           # the solver's own cover was exact
    assert set(result.app_groups) == set(app_sets)
    for app, target in app_sets.items():
        got = set()
        for i in result.app_groups[app]:
            assert result.groups[i] <= target, (app, i)
            got |= result.groups[i]
        assert got == target, app
    assert len(set(result.groups)) == len(result.groups)


def brute_force_minimum(app_sets) -> int:
    """Smallest number of groups covering every app exactly, by trying all combinations of closed sets."""
    sets = [s for s in set(app_sets.values()) if s]
    if not sets:
        return 0
    # an optimal cover may use closed sets only (intersections of app sets): widening a group to its closure
    # keeps it inside every app that uses it
    closed = set(sets)
    frontier = set(sets)
    while frontier:
        new = {a & b for a in frontier for b in sets} - closed - {frozenset()}
        closed |= new
        frontier = new
    closed = sorted(closed, key=sorted)
    for k in range(1, len(sets) + 1):
        for combo in itertools.combinations(closed, k):
            if all(frozenset().union(*[g for g in combo if g <= s]) == s for s in sets):
                return k
    raise AssertionError("per-app cover always exists")


FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(instances())
def test_every_strategy_covers_exactly_and_bounds_hold(app_sets):
    minimal = solve_cover(app_sets)
    per_app = solve_cover(app_sets, strategy="per-app")
    for result in (minimal, per_app):
        assert_exact(app_sets, result)
        verify_cover(app_sets, result)
        assert len(result.groups) >= result.lower_bound
    assert len(minimal.groups) <= len(per_app.groups)
    assert len(per_app.groups) == len({s for s in app_sets.values() if s})
    assert minimal.strategy == "minimal" and per_app.strategy == "per-app"
    if minimal.optimal:
        assert len(minimal.groups) == minimal.lower_bound


@settings(max_examples=100, deadline=None)
@given(instances(max_apps=6, max_mailboxes=6))
def test_minimal_is_optimal_against_brute_force(app_sets):
    result = solve_cover(app_sets)
    best = brute_force_minimum(app_sets)
    assert result.lower_bound <= best <= len(result.groups)
    assert result.optimal                                    # tiny instances are always solved to optimality
    assert len(result.groups) == best


@pytest.mark.parametrize("path", ["sparse", "dense-to-sparse", "search", "search-sparse"])
@settings(max_examples=40, deadline=None)
@given(app_sets=instances(max_apps=7, max_mailboxes=7))
def test_large_component_paths_are_exact_and_honest(path, app_sets):
    """The sparse path (tenant-sized components) and the search without enumeration, forced on small instances."""
    with pytest.MonkeyPatch.context() as mp:
        if path == "dense-to-sparse":
            mp.setattr(exact, "DENSE_GREEDY_LIMIT", 0)
        elif path != "search":
            mp.setattr(exact, "ENUM_LIMIT", 0)
        if path.startswith("search"):
            mp.setattr(exact, "BICLIQUE_CAP", 1)
        result = solve_cover(app_sets)
    solved = result.stats["solve"]
    if path.startswith("search") and solved["enumeration_capped"]:
        assert solved["searched"] == solved["enumeration_capped"] == len(solved["search"])
        if not result.optimal:
            assert "maximal bicliques" in result.stats["cut"]
    assert_exact(app_sets, result)
    best = brute_force_minimum(app_sets)
    assert result.lower_bound <= best <= len(result.groups)
    if result.optimal:
        assert len(result.groups) == best
    if not path.startswith("search"):
        assert len(result.groups) == best


@FAST
@given(instances(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_input_order(app_sets, rnd):
    first = solve_cover(app_sets)
    items = list(app_sets.items())
    rnd.shuffle(items)
    again = solve_cover({app: frozenset(sorted(s, reverse=True)) for app, s in items})
    assert first.groups == again.groups
    assert first.app_groups == again.app_groups
    assert list(first.app_groups) == sorted(app_sets)


@FAST
@given(instances(), st.lists(st.frozensets(st.sampled_from([f"m{j}@x.test" for j in range(10)]), min_size=1),
                             max_size=6))
def test_preferred_sets_never_change_the_count_or_exactness(app_sets, preferred):
    plain = solve_cover(app_sets)
    tied = solve_cover(app_sets, preferred=preferred)
    assert_exact(app_sets, tied)
    assert len(tied.groups) == len(plain.groups)
    assert tied.lower_bound == plain.lower_bound and tied.optimal == plain.optimal
    swaps = tied.stats.get("preferred", {}).get("swaps", 0)
    assert sum(g in set(preferred) for g in tied.groups) >= swaps
