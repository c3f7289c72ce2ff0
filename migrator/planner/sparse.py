"""The exact cover of one large, sparse component: the dense path of bicliques.py/exact.py, on sparse structures.

A tenant-sized component (thousands of apps x thousands of mailbox classes, a few apps holding whole departments)
is too big for dense bit matrices but sparse: its maximal bicliques are few (tens of thousands), and each
intersection of a row set only needs the rows sharing a column with it. Edges are numbered in CSR order; the
biclique-edge incidence is one sparse matrix, from which the greedy and the integer program are built.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from migrator.planner.bicliques import TooManyBicliques
from migrator.planner.ilp import solve_set_cover
from migrator.planner.reduce import PRODUCT_BUDGET, subset_pairs


def maximal_bicliques_sparse(m: sp.csr_matrix, *, cap: int, deadline: float
                             ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(extents k x rows, intents k x cols) of all maximal bicliques, as 0/1 CSR, in a deterministic order."""
    m = m.tocsr()
    m.sort_indices()
    csc = m.tocsc()
    rows = [frozenset(m.indices[m.indptr[i]:m.indptr[i + 1]].tolist()) for i in range(m.shape[0])]
    col_rows = [csc.indices[csc.indptr[j]:csc.indptr[j + 1]].tolist() for j in range(m.shape[1])]
    known = set(rows)
    frontier = sorted(known, key=sorted)
    while frontier:
        new = []
        for intent in frontier:
            cand: set[int] = set()
            for c in intent:
                cand.update(col_rows[c])
            for r in cand:
                x = intent & rows[r]
                if x and x not in known:
                    known.add(x)
                    new.append(x)
            if len(known) > cap:
                raise TooManyBicliques(f"more than {cap:,} maximal bicliques")
            if time.perf_counter() > deadline:
                raise TooManyBicliques("time limit reached while enumerating maximal bicliques", reason="time")
        frontier = new
    intents_list = sorted(sorted(x) for x in known)
    lens = np.array([len(x) for x in intents_list])
    intents = sp.csr_matrix((np.ones(int(lens.sum()), dtype=np.int32), np.fromiter(
        (c for x in intents_list for c in x), dtype=np.int64, count=int(lens.sum())),
        np.concatenate([[0], np.cumsum(lens)])), shape=(len(intents_list), m.shape[1]))
    counts = (intents @ m.T.astype(np.int32)).tocsr()             # |intent ∩ row|
    full = counts.data == lens[np.repeat(np.arange(len(lens)), np.diff(counts.indptr))]
    kk = np.repeat(np.arange(len(lens)), np.diff(counts.indptr))[full]
    extents = sp.csr_matrix((np.ones(len(kk), dtype=np.int32), (kk, counts.indices[full])),
                            shape=(len(lens), m.shape[0]))
    extents.sort_indices()
    return extents, intents


def incidence(m: sp.csr_matrix, extents: sp.csr_matrix, intents: sp.csr_matrix) -> sp.csr_matrix:
    """Edges x bicliques 0/1 matrix; edges numbered in M's CSR order (sorted indices)."""
    nc = m.shape[1]
    keys = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr)) * nc + m.indices
    ks, es = [], []
    for k in range(extents.shape[0]):
        er = extents.indices[extents.indptr[k]:extents.indptr[k + 1]].astype(np.int64)
        ic = intents.indices[intents.indptr[k]:intents.indptr[k + 1]].astype(np.int64)
        block = (er[:, None] * nc + ic[None, :]).ravel()
        es.append(np.searchsorted(keys, block))
        ks.append(np.full(len(block), k, dtype=np.int64))
    edge_ids, biclique_ids = np.concatenate(es), np.concatenate(ks)
    return sp.csr_matrix((np.ones(len(edge_ids), dtype=np.int8), (edge_ids, biclique_ids)),
                         shape=(len(keys), extents.shape[0]))


def greedy_cover_sparse(eb: sp.csr_matrix) -> list[int]:
    """Hardest edge first on the incidence matrix (see bicliques.greedy_cover); then redundant ones dropped."""
    eb = eb.tocsr()
    be = eb.T.tocsr()
    n_edges, k = eb.shape
    in_count = np.diff(eb.indptr).astype(np.float64)
    coverage = np.diff(be.indptr).astype(np.int64)
    uncovered = np.ones(n_edges, dtype=bool)
    masked = in_count.copy()
    chosen: list[int] = []
    while uncovered.any():
        e = int(np.argmin(masked))
        cand = eb.indices[eb.indptr[e]:eb.indptr[e + 1]]
        best = int(cand[np.argmax(coverage[cand])]) if len(cand) > 1 else int(cand[0])
        # ties in argmax go to the first candidate, and candidates are sorted: deterministic
        chosen.append(best)
        block = be.indices[be.indptr[best]:be.indptr[best + 1]]
        newly = block[uncovered[block]]
        uncovered[newly] = False
        masked[newly] = np.inf
        hit = (np.concatenate([eb.indices[eb.indptr[x]:eb.indptr[x + 1]] for x in newly]) if len(newly)
               else np.zeros(0, dtype=np.int64))
        coverage -= np.bincount(hit, minlength=k)
    return drop_redundant_sparse(be, chosen)


def drop_redundant_sparse(be: sp.csr_matrix, chosen: list[int]) -> list[int]:
    mult = np.zeros(be.shape[1], dtype=np.int32)
    for k in chosen:
        mult[be.indices[be.indptr[k]:be.indptr[k + 1]]] += 1
    keep = set(chosen)
    for k in sorted(chosen, key=lambda k: (be.indptr[k + 1] - be.indptr[k], k)):
        block = be.indices[be.indptr[k]:be.indptr[k + 1]]
        if mult[block].min() >= 2:
            mult[block] -= 1
            keep.discard(k)
    return sorted(keep)


def undominated_edges(m: sp.csr_matrix, budget: int = PRODUCT_BUDGET) -> np.ndarray | None:
    """Mask over edges (CSR order): True for an edge no other edge dominates (see exact._ilp); None when the
    subset pairs cost more than `budget` multiply-adds (see reduce.subset_pairs)."""
    m = m.tocsr().astype(np.int32)
    nr, nc = m.shape
    rp = subset_pairs(m, budget=budget)
    cp = subset_pairs(m.T.tocsr(), budget=budget)
    if rp is None or cp is None:
        return None
    # include the diagonal: every row/column dominates itself, so an undominated edge counts exactly 1
    rsub = sp.csr_matrix((np.ones(len(rp[0]) + nr, dtype=np.int32),
                          (np.concatenate([rp[0], np.arange(nr)]), np.concatenate([rp[1], np.arange(nr)]))),
                         shape=(nr, nr))                               # rsub[r', r]: row r' ⊆ row r
    csub = sp.csr_matrix((np.ones(len(cp[0]) + nc, dtype=np.int32),
                          (np.concatenate([cp[0], np.arange(nc)]), np.concatenate([cp[1], np.arange(nc)]))),
                         shape=(nc, nc))                               # csub[c', c]: col c' ⊆ col c
    dom = (rsub.T @ m @ csub).tocsr()
    dom.sort_indices()
    m.sort_indices()
    # dom's support equals M's (a dominator of (r, c) forces M[r, c] = 1), so the data line up edge for edge
    if dom.nnz != m.nnz or not np.array_equal(dom.indices, m.indices):
        return None
    return dom.data <= 1


def ilp_sparse(eb: sp.csr_matrix, rows_mask: np.ndarray | None, time_limit: float):
    """Set cover over the bicliques for the kept edges: (chosen or None, proven bound, optimal, stats)."""
    a = eb if rows_mask is None else eb[np.flatnonzero(rows_mask)]
    res = solve_set_cover(a, time_limit)
    stats = {"edges": eb.shape[0], "constraints": a.shape[0], "variables": eb.shape[1], "status": res.status,
             "seconds": res.seconds}
    return res.chosen, res.bound, res.optimal, stats


def covers_all(eb: sp.csr_matrix, chosen: list[int]) -> bool:
    if not chosen:
        return eb.shape[0] == 0
    hit = np.asarray(eb[:, chosen].sum(axis=1)).ravel()
    return bool((hit > 0).all())
