"""The minimum exact cover: reduce, split into components, bound, enumerate, greedy, then an integer program.

Per connected component of the reduced matrix:
1. one row or one column: one group;
2. lower bound (pairwise incompatible edges) vs. the trivial upper bound min(rows, cols): equal means done;
3. all maximal bicliques (capped), hardest-edge-first greedy: meeting the lower bound means done;
4. otherwise a set-cover integer program over the maximal bicliques (HiGHS, see ilp.py) with the
   constraints of dominated edges dropped, under the remaining time; when it stops early the best cover found
   is kept and the solver's proven bound raises the lower bound.
Small components use dense bit matrices (bicliques.py); tenant-sized ones the same steps on sparse structures
(sparse.py). A component whose bicliques are too many (a count cap, the memory budget, half the remaining time)
is covered by column generation over a bounded pool (search.py), seeded with the bicliques enumerated before the
cut: an upper bound, with the lower bound kept and the reason of the cut recorded in the stats ("cuts").

Memory is bounded by design: MEMORY_BUDGET (1 GB by default) caps the solver's working sets (enumerated
bicliques, edge-biclique incidences, the search pool), so peak memory grows with the input, not with the number of
maximal bicliques; the lower bound (bounds.py) and the reductions (reduce.py) have their own fixed budgets.
Components are independent, so the bounds add up. Covers lift back to the original apps and mailboxes by
closure (see reduce.py) and the caller verifies the lifted result exactly.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from migrator.planner.bicliques import TooManyBicliques, greedy_cover, maximal_bicliques
from migrator.planner.bounds import SWAP_CELLS, improve_by_swaps, incompatible_edges, lower_bound
from migrator.planner.cover import Strategy
from migrator.planner.ilp import solve_set_cover
from migrator.planner.prefer import prefer, preferred_classes
from migrator.planner.reduce import reduce_matrix, unique_rows
from migrator.planner.search import search_cover
from migrator.planner.sparse import (
    covers_all,
    greedy_cover_sparse,
    ilp_sparse,
    incidence,
    maximal_bicliques_sparse,
    undominated_edges,
)

ENUM_LIMIT = 4_000_000            # cells of a component whose maximal bicliques are enumerated
MEMORY_BUDGET = 1_000_000_000     # bytes of solver working memory (bicliques, incidences, pools) per component
BICLIQUE_CAP = 50_000             # maximal bicliques enumerated per component before falling back
INCIDENCE_BYTES = 40              # measured cost of one edge-biclique incidence in greedy + ILP (arrays, HiGHS)
POOL_INCIDENCE_BYTES = 200        # the same in the search (LP, MIP with a start, pool copies)
SWAP_SHARE = 0.15                 # share of the remaining time for strengthening the bound of a searched component
SEED_POOL = 20_000                # bicliques of a capped enumeration handed to the search as its starting pool
DENSE_GREEDY_LIMIT = 200_000_000  # bicliques x edges beyond which the dense greedy hands over to the sparse one
ENUM_SHARE = 0.5                  # share of the remaining time for the enumeration (the rest: greedy + ILP, or search)
SOLVE_MARGIN = 0.1                # share of the solver's time kept for lifting and assigning the groups
POST_FACTOR = 8.0                 # ... or this many times the instance's building time, when longer
POST_CAP = 0.2                    # ... but never more than this share of the solver's time


def incidence_limit() -> int:
    """Edge-biclique incidences the enumerated path may build (greedy + integer program) within MEMORY_BUDGET."""
    return MEMORY_BUDGET // INCIDENCE_BYTES


def dense_cap(nr: int, nc: int) -> int:
    """Maximal bicliques the dense path may hold: each costs its packed intent, a bool extent and intent, and the
    float copies of the greedy (about 6 bytes per row and column, plus the packed words and a set entry)."""
    words = (nc + 63) // 64
    return max(1, min(BICLIQUE_CAP, MEMORY_BUDGET // (6 * (nr + nc) + 24 * words * 8 + 200)))


def sparse_cap(m: sp.csr_matrix) -> int:
    """Intents the sparse enumeration may hold (Python frozensets: about 250 bytes plus 40 per column)."""
    avg = m.nnz / max(1, m.shape[0])
    return max(1, min(BICLIQUE_CAP, int(MEMORY_BUDGET // (250 + 40 * avg))))


def _search(m: sp.csr_matrix, lb: int, deadline: float, stats: dict, reason: str,
            seeds: np.ndarray | None = None) -> tuple[list[np.ndarray], int, bool]:
    """The fallback for a component whose bicliques are too many: column generation over a bounded pool."""
    stats["cuts"].append(reason)
    stats["searched"] += 1
    if m.nnz * lb <= SWAP_CELLS:                             # the bound is the only certificate here: strengthen it
        now = time.perf_counter()
        edges = incompatible_edges(m, deadline)
        if edges is not None:
            better = len(improve_by_swaps(m, edges, now + max(0.0, deadline - now) * SWAP_SHARE))
            stats["swap_bound"] = stats.get("swap_bound", 0) + max(0, better - lb)
            lb = max(lb, better)
    if seeds is not None:
        seeds = seeds[:SEED_POOL]
    ext, lb, opt = search_cover(m, lb, deadline, MEMORY_BUDGET // POOL_INCIDENCE_BYTES, stats, seeds)
    cut = stats["search"][-1].get("cut")
    if cut and not opt:
        stats["cuts"].append(cut)
    return ext, lb, opt


class Instance:
    """The app x mailbox matrix, de-duplicated: D[i, j] = 1 when app class i holds mailbox class j."""

    def __init__(self, app_sets: Mapping[str, frozenset[str]]):
        self.apps = sorted(app_sets)
        mailboxes = sorted(set().union(*app_sets.values())) if app_sets else []
        self.mailboxes = mailboxes
        index = {m: j for j, m in enumerate(mailboxes)}
        lens = np.fromiter((len(app_sets[a]) for a in self.apps), dtype=np.int64, count=len(self.apps))
        total = int(lens.sum())
        indices = np.fromiter((index[m] for a in self.apps for m in app_sets[a]), dtype=np.int64, count=total)
        indptr = np.concatenate([[0], np.cumsum(lens)])
        a = sp.csr_matrix((np.ones(total, dtype=np.int8), indices, indptr), shape=(len(self.apps), len(mailboxes)))
        a.sort_indices()
        self.grants = len(indices)
        row_reps, self.app_class = unique_rows(a)      # app -> row class (the empty set is a class too)
        d0 = a[row_reps]
        col_reps, self.mailbox_class = unique_rows(d0.T.tocsr())
        self.d = d0[:, col_reps].tocsr()               # distinct app sets x distinct mailbox classes
        self.row_empty = np.diff(self.d.indptr) == 0
        self.class_mailboxes: list[list[str]] = [[] for _ in range(len(col_reps))]
        for j, c in enumerate(self.mailbox_class):
            self.class_mailboxes[c].append(mailboxes[j])

    def closures(self, extents: list[np.ndarray], chunk: int = 2048) -> list[np.ndarray]:
        """`closure` of many extents at once: one sparse product per chunk (counts of each class's holders)."""
        out: list[np.ndarray] = []
        d = self.d.astype(np.int32)
        for s in range(0, len(extents), chunk):
            part = [np.asarray(e, dtype=np.int64) for e in extents[s:s + chunk]]
            lens = np.array([len(e) for e in part], dtype=np.int64)
            e = sp.csr_matrix((np.ones(int(lens.sum()), dtype=np.int32), np.concatenate(part),
                               np.concatenate([[0], np.cumsum(lens)])), shape=(len(part), d.shape[0]))
            counts = (e @ d).tocsr()
            counts.sort_indices()
            for i in range(len(part)):
                sl = slice(counts.indptr[i], counts.indptr[i + 1])
                out.append(counts.indices[sl][counts.data[sl] == lens[i]].astype(np.int64))
        return out

    def row_set(self, i: int) -> np.ndarray:
        return self.d.indices[self.d.indptr[i]:self.d.indptr[i + 1]]


def _components(r: sp.csr_matrix) -> list[tuple[np.ndarray, np.ndarray]]:
    """Connected components of the bipartite graph of `r` as (rows, cols), ordered by their first row.

    Label propagation in numpy (a few passes over the edges; about the graph's diameter), with a union-find over
    the edges when it does not settle quickly: both cheaper here than importing scipy.sparse.csgraph (which pulls
    in scipy.sparse.linalg, about 0.3 s at every start of the command)."""
    nr = r.shape[0]
    labels = _propagated_labels(r)
    if labels is None:
        labels = _union_find_labels(r)
    rl, cl = labels[:nr], labels[nr:]
    # a component's label is its smallest node, a row for every component with an edge: group by label
    order_r, order_c = np.argsort(rl, kind="stable"), np.argsort(cl, kind="stable")
    labs_r, start_r = np.unique(rl[order_r], return_index=True)
    labs_c, start_c = np.unique(cl[order_c], return_index=True)
    rows_of = dict(zip(labs_r.tolist(), np.split(order_r, start_r[1:])))
    cols_of = dict(zip(labs_c.tolist(), np.split(order_c, start_c[1:])))
    return [(rows_of[lab], cols_of[lab]) for lab in labs_r.tolist() if lab in cols_of]


def _propagated_labels(r: sp.csr_matrix, max_passes: int = 40) -> np.ndarray | None:
    """Every node's label = the smallest row of its component (rows 0..nr-1, columns nr..); None if not settled
    after `max_passes` (a long chain-like component)."""
    r = r.tocsr()
    nr, nc = r.shape
    csc = r.tocsc()
    row_lab = np.arange(nr, dtype=np.int64)
    col_lab = np.full(nc, np.iinfo(np.int64).max, dtype=np.int64)
    has_r, has_c = np.diff(r.indptr) > 0, np.diff(csc.indptr) > 0
    for _ in range(max_passes):
        if csc.nnz:
            col_new = col_lab.copy()
            col_new[has_c] = np.minimum(col_lab[has_c], np.minimum.reduceat(row_lab[csc.indices],
                                                                            csc.indptr[:-1][has_c]))
        else:
            col_new = col_lab
        row_new = row_lab.copy()
        if r.nnz:
            row_new[has_r] = np.minimum(row_lab[has_r], np.minimum.reduceat(col_new[r.indices], r.indptr[:-1][has_r]))
        if np.array_equal(row_new, row_lab) and np.array_equal(col_new, col_lab):
            col_lab[~has_c] = nr + np.flatnonzero(~has_c)    # an empty column is its own component
            return np.concatenate([row_lab, col_lab])
        row_lab, col_lab = row_new, col_new
    return None


def _union_find_labels(r: sp.csr_matrix) -> np.ndarray:
    """The same labels as _propagated_labels, by a union-find over the edges."""
    nr, nc = r.shape
    parent = list(range(nr + nc))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    coo = r.tocoo()
    for i, j in zip(coo.row.tolist(), (coo.col + nr).tolist()):
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.fromiter((find(x) for x in range(nr + nc)), dtype=np.int64, count=nr + nc)


def _ilp(m: np.ndarray, extents: np.ndarray, intents: np.ndarray, time_limit: float
         ) -> tuple[list[int] | None, float, bool, dict]:
    """Set cover over the maximal bicliques; returns (chosen or None, proven bound, optimal, stats)."""
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
    res = solve_set_cover(a, time_limit)
    stats = {"edges": int(m.sum()), "constraints": len(rr), "variables": k, "seconds": res.seconds,
             "status": res.status}
    return res.chosen, res.bound, res.optimal, stats


def _merge_ilp(best: list[int] | None, n_trivial: int, lb: int, chosen: list[int] | None, valid: bool,
               bound: float, proved: bool, ilp_stats: dict) -> tuple[list[int] | None, int, bool]:
    """Fold a solver answer into (best cover, lower bound, optimal), trusting nothing that contradicts itself.

    An answer that does not cover the component discredits the whole run: neither it nor its bound is used. A
    bound above a cover we have verified is impossible, so it is ignored too."""
    if chosen is not None and not valid:
        ilp_stats["rejected"] = "solver answer does not cover the component; its bound is ignored too"
        return best, lb, False
    if valid and chosen is not None and (best is None or len(chosen) < len(best)):
        best = chosen
    upper = len(best) if best is not None else n_trivial
    b = math.ceil(bound - 1e-6)
    if b > upper:
        ilp_stats["rejected"] = f"solver bound {bound} is above a verified cover of {upper}"
        return best, lb, False
    lb = max(lb, b)
    optimal = bool(proved and valid and chosen is not None and best is not None and len(best) <= len(chosen))
    return best, lb, optimal


def _covers(m: np.ndarray, extents: np.ndarray, intents: np.ndarray, chosen: list[int]) -> bool:
    got = np.zeros(m.shape, dtype=bool)
    for k in chosen:
        got[np.ix_(extents[k], intents[k])] = True
    return bool((got == m).all())


def _solve_component(m: np.ndarray, deadline: float, stats: dict, bounds_only: bool = False,
                     lb: int | None = None) -> tuple[list[np.ndarray], int, bool]:
    """Cover one connected component: (extents as row-index arrays, proven lower bound, optimal?)."""
    nr, nc = m.shape
    if lb is None:
        lb = max(1, lower_bound(m) or 1)
    trivial = _trivial(m)
    if lb >= len(trivial):
        stats["bounds_met"] += 1
        return trivial, lb, True
    if bounds_only:
        return trivial, lb, False
    cap = dense_cap(nr, nc)
    t_enum = time.perf_counter()
    try:
        extents, intents = maximal_bicliques(m, cap=cap, deadline=_enum_deadline(deadline))
    except TooManyBicliques as exc:
        stats["enumeration_seconds"] += time.perf_counter() - t_enum
        stats["enumeration_capped"] += 1
        reason = {"count": f"more than {cap:,} maximal bicliques (count cap / memory budget)",
                  "time": "time limit (enumeration)"}.get(exc.reason, str(exc))
        return _search(sp.csr_matrix(m), lb, deadline, stats, reason, exc.found)
    stats["enumeration_seconds"] += time.perf_counter() - t_enum
    stats["bicliques"] += len(extents)
    if len(extents) * int(m.sum()) > DENSE_GREEDY_LIMIT:     # the dense greedy costs bicliques x edges
        stats["dense_to_sparse"] += 1
        return _cover_enumerated_sparse(sp.csr_matrix(m), sp.csr_matrix(extents), sp.csr_matrix(intents), lb,
                                        trivial, deadline, stats)
    greedy = greedy_cover(m, extents, intents)
    best = greedy if len(greedy) <= len(trivial) else None  # no better than one group per row: no answer
    if best is not None and len(best) <= lb:
        stats["greedy_met"] += 1
        return [np.flatnonzero(extents[k]) for k in best], lb, True
    remaining = deadline - time.perf_counter()
    optimal = False
    if remaining > 0.05:
        chosen, bound, proved, ilp_stats = _ilp(m, extents, intents, remaining)
        stats["ilp"].append(ilp_stats)
        valid = chosen is not None and _covers(m, extents, intents, chosen)
        best, lb, optimal = _merge_ilp(best, len(trivial), lb, chosen, valid, bound, proved, ilp_stats)
    if best is None:
        if not optimal:
            stats["cuts"].append("time limit (integer program)")
        return trivial, lb, len(trivial) <= lb
    optimal = optimal or len(best) <= lb
    if optimal:
        lb = len(best)                                       # proven by the solver or met by the bound
    elif stats["ilp"] and not stats["ilp"][-1].get("rejected"):
        stats["cuts"].append("time limit (integer program)")
    return [np.flatnonzero(extents[k]) for k in best], lb, optimal


def _enum_deadline(deadline: float) -> float:
    now = time.perf_counter()
    return now + max(0.0, deadline - now) * ENUM_SHARE


def _trivial(m: np.ndarray) -> list[np.ndarray]:
    """min(rows, cols) bicliques: one per row, or one per column (all rows holding it)."""
    if m.shape[0] <= m.shape[1]:
        return [np.array([i]) for i in range(m.shape[0])]
    return [np.flatnonzero(m[:, j]) for j in range(m.shape[1])]


def _trivial_sparse(m: sp.csr_matrix) -> list[np.ndarray]:
    if m.shape[0] <= m.shape[1]:
        return [np.array([i]) for i in range(m.shape[0])]
    csc = m.tocsc()
    return [csc.indices[csc.indptr[j]:csc.indptr[j + 1]].copy() for j in range(m.shape[1])]


def solve_block(inst: Instance, rows: np.ndarray, cols: np.ndarray, deadline: float, stats: dict,
                bounds_only: bool = False) -> tuple[list[np.ndarray], int, bool]:
    """Cover the submatrix D[rows, cols] (rows distinct, each row's edges all inside cols).

    Returns extents (arrays of D row indices; each group is the closure of its extent), a proven lower bound
    and whether the count is proven minimal."""
    sub = inst.d[rows][:, cols].tocsr()
    keep_c = np.flatnonzero(np.diff(sub.tocsc().indptr) > 0)
    sub, cols = sub[:, keep_c].tocsr(), cols[keep_c]
    t0 = time.perf_counter()
    red = reduce_matrix(sub)
    stats["reduce_seconds"] += time.perf_counter() - t0
    stats["reduced"] = [len(red.rows), len(red.cols)]
    stats["reductions"] = red.stats
    r = red.matrix()
    out: list[np.ndarray] = []
    lb_total, optimal = 0, True
    for crow, ccol in _components(r):
        stats["components"] += 1
        if len(crow) * len(ccol) > stats["largest_component"][0] * stats["largest_component"][1]:
            stats["largest_component"] = [len(crow), len(ccol)]
        d_rows = rows[red.rows[crow]]
        if len(crow) == 1 or len(ccol) == 1:
            stats["trivial"] += 1
            out.append(d_rows)
            lb_total += 1
            continue
        cm = r[crow][:, ccol].tocsr()
        t_lb = time.perf_counter()
        lb = lower_bound(cm)            # never cut by the deadline: bounded by its budgets, and the gap relies on it
        stats["lower_bound_seconds"] += time.perf_counter() - t_lb
        if lb is None:
            lb = 1
        if len(crow) * len(ccol) <= ENUM_LIMIT:             # small: dense bit matrices
            ext, lb, opt = _solve_component(cm.toarray().astype(bool), deadline, stats, bounds_only, lb)
        elif lb >= min(cm.shape):
            ext, opt = _trivial_sparse(cm), True
            stats["bounds_met"] += 1
        elif bounds_only:
            ext, opt = _trivial_sparse(cm), False
        else:                                                # large: sparse structures, or the search
            ext, lb, opt = _solve_sparse(cm, lb, deadline, stats)
        out.extend(d_rows[e] for e in ext)
        lb_total += lb
        optimal = optimal and opt
    return out, lb_total, optimal


def _solve_sparse(m: sp.csr_matrix, lb: int, deadline: float, stats: dict
                  ) -> tuple[list[np.ndarray], int, bool]:
    """The same steps as _solve_component on sparse structures; the search when the bicliques are too many."""
    trivial = _trivial_sparse(m)
    if lb >= len(trivial):
        stats["bounds_met"] += 1
        return trivial, lb, True
    stats["sparse"] += 1
    cap = sparse_cap(m)
    t_enum = time.perf_counter()
    try:
        extents, intents = maximal_bicliques_sparse(m, cap=cap, deadline=_enum_deadline(deadline))
    except TooManyBicliques as exc:
        stats["enumeration_seconds"] += time.perf_counter() - t_enum
        stats["enumeration_capped"] += 1
        reason = {"count": f"more than {cap:,} maximal bicliques (count cap / memory budget)",
                  "time": "time limit (enumeration)"}.get(exc.reason, str(exc))
        return _search(m, lb, deadline, stats, reason)
    stats["enumeration_seconds"] += time.perf_counter() - t_enum
    stats["bicliques"] += extents.shape[0]
    return _cover_enumerated_sparse(m, extents, intents, lb, trivial, deadline, stats)


def _cover_enumerated_sparse(m: sp.csr_matrix, extents: sp.csr_matrix, intents: sp.csr_matrix, lb: int,
                             trivial: list[np.ndarray], deadline: float, stats: dict
                             ) -> tuple[list[np.ndarray], int, bool]:
    """Greedy then ILP over enumerated bicliques held as sparse matrices (see sparse.py)."""
    sizes = np.diff(extents.indptr).astype(np.int64) * np.diff(intents.indptr).astype(np.int64)
    if int(sizes.sum()) > incidence_limit():
        stats["incidence_too_large"] += 1
        return _search(m, lb, deadline, stats, f"more than {incidence_limit():,} edge-biclique incidences "
                       "(memory budget)")
    eb = incidence(m, extents, intents)
    greedy = greedy_cover_sparse(eb)
    best = greedy if len(greedy) <= len(trivial) else None  # no better than one group per row: no answer
    if best is not None and len(best) <= lb:
        stats["greedy_met"] += 1
    optimal = best is not None and len(best) <= lb
    remaining = deadline - time.perf_counter()
    if not optimal and remaining > 0.05:
        mask = undominated_edges(m)
        chosen, bound, proved, ilp_stats = ilp_sparse(eb, mask, remaining)
        stats["ilp"].append(ilp_stats)
        valid = chosen is not None and covers_all(eb, chosen)
        best, lb, optimal = _merge_ilp(best, len(trivial), lb, chosen, valid, bound, proved, ilp_stats)
    if best is None:
        if not optimal:
            stats["cuts"].append("time limit (integer program)")
        return trivial, lb, len(trivial) <= lb
    optimal = optimal or len(best) <= lb
    if optimal:
        lb = len(best)
    elif stats["ilp"] and not stats["ilp"][-1].get("rejected"):
        stats["cuts"].append("time limit (integer program)")
    return [extents.indices[extents.indptr[k]:extents.indptr[k + 1]].copy() for k in best], lb, optimal


def cover_classes(inst: Instance, rows: np.ndarray, time_limit: float, bounds_only: bool = False
                  ) -> tuple[list[np.ndarray], int, bool, dict]:
    """Groups as arrays of mailbox classes, the proven lower bound, optimality and stats."""
    deadline = time.perf_counter() + time_limit
    stats: dict[str, Any] = {
             "components": 0, "trivial": 0, "bounds_met": 0, "greedy_met": 0, "searched": 0, "sparse": 0,
             "dense_to_sparse": 0, "incidence_too_large": 0,
             "enumeration_capped": 0, "bicliques": 0, "ilp": [], "largest_component": [0, 0],
             "reduce_seconds": 0.0, "lower_bound_seconds": 0.0, "enumeration_seconds": 0.0, "cuts": []}
    ext, lb, optimal = solve_block(inst, rows, np.arange(inst.d.shape[1]), deadline, stats, bounds_only)
    groups = inst.closures(ext)
    # distinct groups only (two extents can close to the same mailbox set)
    uniq: dict[bytes, np.ndarray] = {}
    for g in groups:
        uniq.setdefault(np.sort(g).tobytes(), g)
    for key in ("reduce_seconds", "lower_bound_seconds", "enumeration_seconds"):
        stats[key] = round(stats[key], 4)
    if time.perf_counter() > deadline and not optimal:
        stats["cuts"].append("time limit")
    stats["cuts"] = sorted(set(stats["cuts"])) if not optimal else []
    return list(uniq.values()), lb, optimal, stats


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
    """Largest gain first (ties: larger group, then lower index), then drop redundant groups, smallest first.

    Lazy greedy: a group's gain only shrinks, so a heap of stale gains pops the true best once its gain is
    re-checked; the same picks as a full scan per step, without rescanning every candidate (thousands of small
    groups per app on the hard instances)."""
    uncovered = set(target)
    chosen: list[int] = []
    heap = [(-len(gsets[g]), -len(gsets[g]), g) for g in cand]      # every candidate lies inside the target
    heapq.heapify(heap)
    while uncovered and heap:
        neg_gain, neg_size, g = heapq.heappop(heap)
        x = len(gsets[g] & uncovered)
        if x == 0:
            continue
        if x < -neg_gain:
            heapq.heappush(heap, (-x, neg_size, g))
            continue
        chosen.append(g)
        uncovered -= gsets[g]
    if uncovered:
        return chosen                                        # inexact: verify_cover reports it
    count: dict[int, int] = {}
    for g in chosen:
        for x in gsets[g]:
            count[x] = count.get(x, 0) + 1
    keep = set(chosen)
    for g in sorted(chosen, key=lambda g: (len(gsets[g]), g)):
        if len(keep) > 1 and all(count[x] >= 2 for x in gsets[g]):
            keep.discard(g)
            for x in gsets[g]:
                count[x] -= 1
    return sorted(keep)


def solve_classes(app_sets: Mapping[str, frozenset[str]], strategy: str, time_limit: float,
                  preferred: tuple[frozenset[str], ...] = ()):
    """(groups as mailbox sets, app -> group indices, lower bound, optimal, stats) before final ordering."""
    t0 = time.perf_counter()
    inst = Instance(app_sets)
    nonempty = np.flatnonzero(~inst.row_empty)
    stats: dict = {"apps": len(inst.apps), "mailboxes": len(inst.mailboxes), "grants": inst.grants,
                   "distinct_app_sets": len(nonempty), "mailbox_classes": inst.d.shape[1]}
    # the search's deadline leaves time for what follows it here and in solve_cover (lifting the groups back,
    # assigning them to every app class, verifying): SOLVE_MARGIN of the limit, or POST_FACTOR times what building
    # the instance took, at most POST_CAP of the limit (a rough proxy, slowed alike by a loaded machine: at load 11
    # on 2 cores syn_500's instance took 0.54 s and that work 4.5 s; the 1M-grant tenant's 3.1 s and 1.6 s)
    built = time.perf_counter() - t0
    margin = max(SOLVE_MARGIN * time_limit, min(POST_FACTOR * built, POST_CAP * time_limit))
    remaining = max(0.0, time_limit - built - margin)
    cls_groups, lb, optimal, solve_stats = cover_classes(inst, nonempty, remaining, strategy == Strategy.PER_APP)
    stats["reduced"] = solve_stats.pop("reduced", [0, 0])
    stats["reductions"] = solve_stats.pop("reductions", {})
    stats["solve"] = solve_stats
    # why the search stopped short of a proof (time limit, memory budget, enumeration cap); None when optimal
    stats["cut"] = "; ".join(solve_stats["cuts"]) if solve_stats["cuts"] and strategy != Strategy.PER_APP else None
    if strategy == Strategy.PER_APP:
        cls_groups = [inst.row_set(int(i)) for i in nonempty]
        optimal = len(cls_groups) <= lb
    elif preferred:
        t1 = time.perf_counter()
        pref = preferred_classes(inst, preferred)
        cls_groups, swaps = prefer(inst, nonempty, cls_groups, pref)
        stats["preferred"] = {"given": len(preferred), "class_aligned": len(pref), "swaps": swaps,
                              "seconds": round(time.perf_counter() - t1, 4)}
    per_class = assign(inst, cls_groups)
    # a group no app needs (possible after a heuristic cover) is dropped: fewer groups, still exact
    used = sorted({g for i in nonempty for g in per_class[i]})
    if len(used) < len(cls_groups):
        stats["unused_dropped"] = len(cls_groups) - len(used)
        renum = {g: k for k, g in enumerate(used)}
        cls_groups = [cls_groups[g] for g in used]
        per_class = [[renum[g] for g in row] for row in per_class]
    groups = [frozenset(m for c in g for m in inst.class_mailboxes[c]) for g in cls_groups]
    app_groups = {app: per_class[inst.app_class[i]] for i, app in enumerate(inst.apps)}
    stats["seconds"] = round(time.perf_counter() - t0, 4)
    return groups, app_groups, lb, optimal, stats
