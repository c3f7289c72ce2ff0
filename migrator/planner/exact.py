"""The minimum exact cover: reduce, split into components, bound, enumerate, greedy, then an integer program.

Per connected component of the reduced matrix:
1. one row or one column: one group;
2. lower bound (pairwise incompatible edges) vs. the trivial upper bound min(rows, cols): equal means done;
3. all maximal bicliques (capped), hardest-edge-first greedy: meeting the lower bound means done;
4. otherwise a set-cover integer program over the maximal bicliques (HiGHS via scipy.optimize.milp) with the
   constraints of dominated edges dropped, under the remaining time; when it stops early the best cover found
   is kept and the solver's proven bound raises the lower bound.
Components are independent, so the bounds add up. Covers lift back to the original apps and mailboxes by
closure (see reduce.py) and the caller verifies the lifted result exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from migrator.planner.bicliques import TooManyBicliques, greedy_cover, maximal_bicliques
from migrator.planner.bounds import lower_bound
from migrator.planner.reduce import Reduced, reduce_matrix, unique_rows

DENSE_LIMIT = 40_000_000          # cells of a component handled as a dense bool matrix
BICLIQUE_CAP = 200_000            # maximal bicliques enumerated per component before falling back


class Instance:
    """The app x mailbox matrix, de-duplicated: D[i, j] = 1 when app class i holds mailbox class j."""

    def __init__(self, app_sets: Mapping[str, frozenset[str]]):
        self.apps = sorted(app_sets)
        mailboxes = sorted(set().union(*app_sets.values())) if app_sets else []
        self.mailboxes = mailboxes
        index = {m: j for j, m in enumerate(mailboxes)}
        indptr = [0]
        indices: list[int] = []
        for app in self.apps:
            indices.extend(sorted(index[m] for m in app_sets[app]))
            indptr.append(len(indices))
        a = sp.csr_matrix((np.ones(len(indices), dtype=np.int8), np.asarray(indices, dtype=np.int64),
                           np.asarray(indptr, dtype=np.int64)), shape=(len(self.apps), len(mailboxes)))
        self.grants = len(indices)
        row_reps, self.app_class = unique_rows(a)      # app -> row class (the empty set is a class too)
        d0 = a[row_reps]
        col_reps, self.mailbox_class = unique_rows(d0.T.tocsr())
        self.d = d0[:, col_reps].tocsr()               # distinct app sets x distinct mailbox classes
        self.row_empty = np.diff(self.d.indptr) == 0
        self.class_mailboxes: list[list[str]] = [[] for _ in range(len(col_reps))]
        for j, c in enumerate(self.mailbox_class):
            self.class_mailboxes[c].append(mailboxes[j])

    def closure(self, d_rows: np.ndarray) -> np.ndarray:
        """Mailbox classes held by every one of the given app classes."""
        s = np.asarray(self.d[d_rows].sum(axis=0)).ravel()
        return np.flatnonzero(s == len(d_rows))

    def row_set(self, i: int) -> np.ndarray:
        return self.d.indices[self.d.indptr[i]:self.d.indptr[i + 1]]


def _components(r: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    nr, nc = r.shape
    adj = sp.bmat([[None, r], [r.T, None]], format="csr")
    n, labels = connected_components(adj, directed=False)
    rl, cl = labels[:nr], labels[nr:]
    order_r = np.argsort(rl, kind="stable")
    order_c = np.argsort(cl, kind="stable")
    rs = np.split(order_r, np.searchsorted(rl[order_r], np.arange(1, n)))
    cs = np.split(order_c, np.searchsorted(cl[order_c], np.arange(1, n)))
    comps = [(a, b) for a, b in zip(rs, cs) if len(a) and len(b)]
    comps.sort(key=lambda rc: (int(rc[0][0]), int(rc[1][0])))
    return comps


def _ilp(m: np.ndarray, extents: np.ndarray, intents: np.ndarray, time_limit: float
         ) -> tuple[list[int] | None, float, bool, dict]:
    """Set cover over the maximal bicliques; returns (chosen or None, proven bound, optimal, stats)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    # Drop the constraint of every edge dominated by another: (r', c') dominates (r, c) when
    # row(r') ⊆ row(r) and col(c') ⊆ col(c); every biclique holding (r', c') then holds (r, c).
    mf = sp.csr_matrix(m.astype(np.float32))
    rdeg, cdeg = m.sum(1), m.sum(0)
    rsub = (mf @ mf.T).toarray() == rdeg[:, None]           # rsub[r', r]: row r' ⊆ row r
    csub = (mf.T @ mf).toarray() == cdeg[:, None]           # csub[c', c]: col c' ⊆ col c
    dominators = rsub.T.astype(np.float32) @ m.astype(np.float32) @ csub.astype(np.float32)
    rr, cc = np.nonzero(m & (dominators < 1.5))
    k = len(extents)
    parts = []
    step = max(1, 4_000_000 // max(1, k))
    for s in range(0, len(rr), step):
        block = (extents[:, rr[s:s + step]] & intents[:, cc[s:s + step]]).T   # edges x bicliques
        parts.append(sp.csr_matrix(block))
    a = sp.vstack(parts).tocsr()
    t0 = time.perf_counter()
    res = milp(np.ones(k), constraints=LinearConstraint(a, lb=1, ub=np.inf), integrality=np.ones(k),
               bounds=Bounds(0, 1), options={"time_limit": max(0.05, time_limit), "presolve": True})
    stats = {"edges": int(m.sum()), "constraints": len(rr), "variables": k,
             "seconds": round(time.perf_counter() - t0, 4), "status": int(res.status)}
    chosen = None
    if res.x is not None:
        chosen = [int(i) for i in np.flatnonzero(res.x > 0.5)]
    bound = getattr(res, "mip_dual_bound", None)
    if res.status == 0 and res.x is not None:
        bound = res.fun
    bound = 0.0 if bound is None or not np.isfinite(bound) else float(bound)
    return chosen, bound, res.status == 0, stats


def _covers(m: np.ndarray, extents: np.ndarray, intents: np.ndarray, chosen: list[int]) -> bool:
    got = np.zeros(m.shape, dtype=bool)
    for k in chosen:
        got[np.ix_(extents[k], intents[k])] = True
    return bool((got == m).all())


def _solve_component(m: np.ndarray, deadline: float, stats: dict, bounds_only: bool = False
                     ) -> tuple[list[np.ndarray], int, bool]:
    """Cover one connected component: (extents as row-index arrays, proven lower bound, optimal?)."""
    nr, nc = m.shape
    if nr == 1 or nc == 1:
        stats["trivial"] += 1
        return [np.arange(nr)], 1, True
    if nr * nc > DENSE_LIMIT:
        stats["too_large"] += 1
        return _trivial(m), 1, False
    lb = max(1, lower_bound(m))
    trivial = _trivial(m)
    if lb >= len(trivial):
        stats["bounds_met"] += 1
        return trivial, lb, True
    if bounds_only:
        return trivial, lb, False
    try:
        extents, intents = maximal_bicliques(m, cap=BICLIQUE_CAP)
    except TooManyBicliques:
        stats["enumeration_capped"] += 1
        return trivial, lb, False
    stats["bicliques"] += len(extents)
    best = greedy_cover(m, extents, intents)
    if len(best) > len(trivial):
        best = None
    if best is not None and len(best) <= lb:
        stats["greedy_met"] += 1
        return [np.flatnonzero(extents[k]) for k in best], lb, True
    remaining = deadline - time.perf_counter()
    optimal = False
    if remaining > 0.05:
        chosen, bound, proved, ilp_stats = _ilp(m, extents, intents, remaining)
        stats["ilp"].append(ilp_stats)
        lb = max(lb, math.ceil(bound - 1e-6))
        if chosen is not None and _covers(m, extents, intents, chosen):
            if best is None or len(chosen) < len(best):
                best = chosen
            optimal = proved and len(best) <= len(chosen)
        elif chosen is not None:
            ilp_stats["rejected"] = "solver answer does not cover the component"
    if best is None:
        return trivial, lb, len(trivial) <= lb
    optimal = optimal or len(best) <= lb
    if optimal:
        lb = len(best)                                       # proven by the solver or met by the bound
    return [np.flatnonzero(extents[k]) for k in best], lb, optimal


def _trivial(m: np.ndarray) -> list[np.ndarray]:
    """min(rows, cols) bicliques: one per row, or one per column (all rows holding it)."""
    if m.shape[0] <= m.shape[1]:
        return [np.array([i]) for i in range(m.shape[0])]
    return [np.flatnonzero(m[:, j]) for j in range(m.shape[1])]


def cover_classes(inst: Instance, reduced: Reduced, time_limit: float, bounds_only: bool = False
                  ) -> tuple[list[np.ndarray], int, bool, dict]:
    """Groups as arrays of mailbox classes, the proven lower bound, optimality and stats."""
    deadline = time.perf_counter() + time_limit
    r = reduced.matrix()
    stats = {"components": 0, "trivial": 0, "bounds_met": 0, "greedy_met": 0, "too_large": 0,
             "enumeration_capped": 0, "bicliques": 0, "ilp": [], "largest_component": [0, 0]}
    groups: list[np.ndarray] = []
    lb_total, optimal = 0, True
    for rows, cols in _components(r):
        stats["components"] += 1
        if len(rows) * len(cols) > stats["largest_component"][0] * stats["largest_component"][1]:
            stats["largest_component"] = [len(rows), len(cols)]
        if len(rows) == 1 or len(cols) == 1:
            extents, lb, opt = [np.arange(len(rows))], 1, True
            stats["trivial"] += 1
        else:
            m = r[rows][:, cols].toarray().astype(bool)
            extents, lb, opt = _solve_component(m, deadline, stats, bounds_only)
        lb_total += lb
        optimal = optimal and opt
        for ext in extents:
            groups.append(inst.closure(reduced.rows[rows[ext]]))
    return groups, lb_total, optimal, stats


def assign(inst: Instance, groups: list[np.ndarray]) -> list[list[int]]:
    """For every app class, a small exact subset of the groups inside its set (greedy, then pruned)."""
    nd = inst.d.shape[0]
    if not groups:
        return [[] for _ in range(nd)]
    gm = sp.csr_matrix((np.ones(sum(len(g) for g in groups), dtype=np.int32),
                        np.concatenate(groups), np.cumsum([0] + [len(g) for g in groups])),
                       shape=(len(groups), inst.d.shape[1]))
    inside = (inst.d.astype(np.int32) @ gm.T).tocsr()
    sizes = np.array([len(g) for g in groups])
    gsets = [set(g.tolist()) for g in groups]
    out: list[list[int]] = []
    for i in range(nd):
        sl = slice(inside.indptr[i], inside.indptr[i + 1])
        cand = inside.indices[sl][inside.data[sl] == sizes[inside.indices[sl]]]
        out.append(_greedy_pick(set(inst.row_set(i).tolist()), sorted(cand.tolist()), gsets))
    return out


def _greedy_pick(target: set[int], cand: list[int], gsets: list[set[int]]) -> list[int]:
    uncovered = set(target)
    chosen: list[int] = []
    pool = sorted(cand, key=lambda g: (-len(gsets[g]), g))
    while uncovered:
        best, gain = -1, 0
        for g in pool:
            if len(gsets[g]) <= gain:
                break                                        # pool is sorted by size: nothing better follows
            x = len(gsets[g] & uncovered)
            if x > gain:
                best, gain = g, x
        if best < 0:
            return chosen                                    # inexact: verify_cover reports it
        chosen.append(best)
        uncovered -= gsets[best]
    for g in sorted(chosen, key=lambda g: (len(gsets[g]), g)):
        rest = [h for h in chosen if h != g]
        if rest and set().union(*(gsets[h] for h in rest)) >= target:
            chosen = rest
    return sorted(chosen)


def solve_classes(app_sets: Mapping[str, frozenset[str]], strategy: str, time_limit: float):
    """(groups as mailbox sets, app -> group indices, lower bound, optimal, stats) before final ordering."""
    t0 = time.perf_counter()
    inst = Instance(app_sets)
    nonempty = np.flatnonzero(~inst.row_empty)
    stats: dict = {"apps": len(inst.apps), "mailboxes": len(inst.mailboxes), "grants": inst.grants,
                   "distinct_app_sets": len(nonempty), "mailbox_classes": inst.d.shape[1]}
    base = inst.d[nonempty].tocsr()
    reduced = reduce_matrix(base)
    reduced.rows = nonempty[reduced.rows]            # index into inst.d
    reduced.base = inst.d
    stats["reduced"] = [len(reduced.rows), len(reduced.cols)]
    stats["reductions"] = reduced.stats
    stats["reduce_seconds"] = round(time.perf_counter() - t0, 4)
    remaining = max(0.0, time_limit - (time.perf_counter() - t0))
    cls_groups, lb, optimal, solve_stats = cover_classes(inst, reduced, remaining, strategy == "per-app")
    stats["solve"] = solve_stats
    if strategy == "per-app":
        cls_groups = [inst.row_set(i) for i in nonempty]
        optimal = len(cls_groups) <= lb
    per_class = assign(inst, cls_groups)
    groups = [frozenset(m for c in g for m in inst.class_mailboxes[c]) for g in cls_groups]
    app_groups = {app: per_class[inst.app_class[i]] for i, app in enumerate(inst.apps)}
    stats["seconds"] = round(time.perf_counter() - t0, 4)
    return groups, app_groups, lb, optimal, stats
