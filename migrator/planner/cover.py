"""The planner's combinatorial core: the fewest groups (mailbox sets) that give every app exactly its mailboxes.

Every app's SendAs set must be exactly the union of the groups assigned to it: no mailbox gained, none lost.
Groups may overlap. This is the minimum biclique cover of the app x mailbox bipartite graph (the Boolean rank of
the 0/1 matrix; the Basic Role Mining Problem). Pure: sets in, sets out, no I/O.

Entry point: `solve_cover()`; `verify_cover()` re-checks any result from scratch.

The pipeline (exact.py): de-duplicate apps and mailboxes into classes; reduce (reduce.py); split into connected
components; per component, a lower bound from pairwise incompatible edges (bounds.py) against the trivial
cover; otherwise all maximal bicliques (bicliques.py, or sparse.py for tenant-sized components), the
hardest-edge-first greedy and a set-cover integer program (ilp.py) under the time limit; components too large to
enumerate are peeled. Each group is lifted back as the closure of its apps' sets, every app gets a small exact
subset of the groups inside its set, preferred sets are swapped in where exact (prefer.py), and the result is
verified here. Measured: bench/rolemining.py, bench/scale_planner.py (results in bench/results/).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Strategy(enum.StrEnum):
    """How the groups are chosen: the fewest groups (exact cover), or one group per distinct app set."""

    MINIMAL = "minimal"
    PER_APP = "per-app"


STRATEGIES = tuple(s.value for s in Strategy)


@dataclass(frozen=True)
class CoverResult:
    """A cover of every app's mailbox set by groups.

    groups: the mailbox sets, one per group, in a deterministic order (see `_group_key`).
    app_groups: app id -> indices into `groups`; the union of those groups is exactly the app's set.
    lower_bound: a proven lower bound on the number of groups any exact cover needs.
    optimal: True when the count is proven minimal (it meets the lower bound, or the exact solver proved it).
    strategy: "minimal" or "per-app".
    stats: what the solver did (reductions, components, bicliques, timings, gap); informative only.
    """

    groups: tuple[frozenset[str], ...]
    app_groups: dict[str, tuple[int, ...]]
    lower_bound: int
    optimal: bool
    strategy: str
    stats: dict = field(default_factory=dict, compare=False)

    @property
    def gap(self) -> int:
        return len(self.groups) - self.lower_bound


def _group_key(members: frozenset[str]) -> tuple:
    """Stable order for groups: larger first, then by sorted members (ties impossible: groups are distinct)."""
    return (-len(members), sorted(members))


def _finalize(groups: list[frozenset[str]], app_groups: Mapping[str, Iterable[int]]
              ) -> tuple[tuple[frozenset[str], ...], dict[str, tuple[int, ...]]]:
    """Order groups by `_group_key` and renumber every app's indices to match (apps in sorted order)."""
    order = sorted(range(len(groups)), key=lambda i: _group_key(groups[i]))
    new_index = {old: new for new, old in enumerate(order)}
    ordered = tuple(groups[i] for i in order)
    return ordered, {app: tuple(sorted(new_index[i] for i in app_groups[app])) for app in sorted(app_groups)}


def solve_cover(app_sets: Mapping[str, frozenset[str]], *, strategy: str = Strategy.MINIMAL, time_limit: float = 60.0,
                preferred: Iterable[frozenset[str]] = ()) -> CoverResult:
    """Cover every app's mailbox set exactly by groups; see the module docstring.

    strategy "minimal" (default) minimises the number of groups (exact unless `time_limit` runs out, in which case
    the best cover found is returned with `optimal=False` and the proven lower bound); "per-app" makes one group per
    distinct app set. `preferred`: mailbox sets that already exist as groups or attribute values in the tenant;
    after the minimal cover is found, a group is swapped for a preferred set whenever the cover stays exact
    (same count, so optimality is kept; see prefer.py). Ignored by "per-app", whose groups are the app sets.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    app_sets = {app: frozenset(s) for app, s in app_sets.items()}
    from migrator.planner.exact import solve_classes  # numpy/scipy work lives there
    groups, app_groups, lower, optimal, stats = solve_classes(app_sets, strategy, time_limit,
                                                               tuple(frozenset(p) for p in preferred))
    ordered, remapped = _finalize(groups, app_groups)
    stats["gap"] = len(ordered) - lower
    result = CoverResult(ordered, remapped, lower, optimal, strategy, stats)
    try:
        verify_cover(app_sets, result)
    except ValueError as exc:
        if strategy == Strategy.PER_APP:
            raise
        # A bug in the minimal path must never cost exactness: fall back to one group per distinct app set
        # (exact by construction, verified again) and say why in the stats.
        fallback = _per_app(app_sets, lower)
        fallback.stats["fallback"] = f"minimal cover failed verification: {exc}"
        verify_cover(app_sets, fallback)
        return fallback
    return result


def _per_app(app_sets: Mapping[str, frozenset[str]], lower: int) -> CoverResult:
    """One group per distinct non-empty app set, without the solver (the fallback)."""
    groups = sorted({s for s in app_sets.values() if s}, key=_group_key)
    index = {g: i for i, g in enumerate(groups)}
    app_groups: dict[str, tuple[int, ...]] = {app: ((index[app_sets[app]],) if app_sets[app] else ())
                                              for app in sorted(app_sets)}
    lower = min(lower, len(groups))
    return CoverResult(tuple(groups), app_groups, lower, len(groups) == lower, Strategy.MINIMAL,
                       {"gap": len(groups) - lower})


def verify_cover(app_sets: Mapping[str, frozenset[str]], result: CoverResult) -> None:
    """Raise ValueError unless `result` reproduces every app's set exactly (never trust a solver)."""
    groups = result.groups
    if len(set(groups)) != len(groups):
        raise ValueError("cover has duplicate groups")
    if any(not g for g in groups):
        raise ValueError("cover has an empty group")
    if set(result.app_groups) != set(app_sets):
        missing = sorted(set(app_sets) - set(result.app_groups))[:5]
        extra = sorted(set(result.app_groups) - set(app_sets))[:5]
        raise ValueError(f"cover apps differ from input apps: missing {missing}, unknown {extra}")
    used: set[int] = set()
    for app, target in app_sets.items():
        idx = result.app_groups[app]
        got: set[str] = set()
        for i in idx:
            if not 0 <= i < len(groups):
                raise ValueError(f"app {app!r}: group index {i} out of range")
            g = groups[i]
            if not g <= target:
                extra = sorted(g - target)[:3]
                raise ValueError(f"app {app!r}: group {i} would grant mailboxes it does not have, e.g. {extra}")
            got |= g
        if got != target:
            lost = sorted(target - got)[:3]
            raise ValueError(f"app {app!r}: {len(target - got)} mailboxes not covered, e.g. {lost}")
        used.update(idx)
    if len(used) != len(groups):
        raise ValueError(f"cover has {len(groups) - len(used)} groups no app uses")
    if len(groups) < result.lower_bound:
        raise ValueError(f"cover has {len(groups)} groups, fewer than its claimed lower bound {result.lower_bound}")
