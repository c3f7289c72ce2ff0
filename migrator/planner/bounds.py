"""Lower bound on the minimum number of bicliques covering a 0/1 matrix (one connected component).

A set of pairwise incompatible edges: edges (r1, c1) and (r2, c2) are incompatible when M[r1, c2] = 0 or
M[r2, c1] = 0, so no biclique holds both and every cover needs one biclique per edge of the set. Built greedily,
taking first the edges compatible with the fewest others: (M·Mᵀ·M)[r, c] counts them.

Memory is bounded by design: the counts are computed a block of rows at a time through the small side's Gram
matrix (cols x cols or rows x rows), and the greedy keeps one bit per cell of the component; past either budget
the bound is None (the caller uses 1) rather than a process that takes the machine down.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

BLOCKED_LIMIT = 150_000_000     # cells of the dense "blocked" matrix the greedy keeps (one byte each)
GRAM_LIMIT = 25_000_000         # cells of the dense Gram matrix of the small side (4 bytes each)
WEIGHT_FLOPS_LIMIT = 300_000_000   # multiply-adds for the exact counts (about 0.5 s); past it a cheaper proxy
BLOCK_CELLS = 4_000_000         # cells of one dense block of counts
PAIRS_LIMIT = 50_000_000        # edge pairs within columns (sum of squared column degrees) for the pairwise counts
PAIR_CHUNK = 2_000_000          # edge pairs handled at once


def compatibility(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, count) of every edge in CSR order, count = (M·Mᵀ·M)[r, c] (edges compatible with it).

    (M·Mᵀ·M)[r, c] = sum over c' in row r of G[c', c] with G = MᵀM, the column overlaps; computed a block of rows
    at a time (dense blocks of at most BLOCK_CELLS), on the transpose when it has fewer rows than columns, so the
    dense Gram matrix is of the smaller side. When that is too costly, the count is approximated by
    deg(r) · deg(c) (an upper bound on it, and the same order on the role-mining data's easy parts).
    """
    m = m.tocsr().astype(np.float64)                        # exact integer sums (float32 would round ties)
    m.sort_indices()
    nr, nc = m.shape
    rows = np.repeat(np.arange(nr), np.diff(m.indptr))
    cols = m.indices.astype(np.int64)
    cdeg_i = np.diff(m.tocsc().indptr).astype(np.int64)
    if int((cdeg_i * cdeg_i).sum()) <= PAIRS_LIMIT:          # sparse columns: all edge pairs within a column
        return rows, cols, _weights_by_column_pairs(m)
    small = min(nr, nc)
    if small * small > GRAM_LIMIT or m.nnz * small > WEIGHT_FLOPS_LIMIT:
        rdeg = np.diff(m.indptr).astype(np.float64)
        cdeg = np.bincount(cols, minlength=nc).astype(np.float64)
        return rows, cols, rdeg[rows] * cdeg[cols]
    transpose = nr < nc
    a = m.T.tocsr() if transpose else m                      # a: big side x small side
    a.sort_indices()
    g = (a.T @ a).toarray()                                  # small x small overlaps
    weight_t = np.empty(a.nnz, dtype=np.float64)             # counts in a's CSR order
    step = max(1, BLOCK_CELLS // max(1, a.shape[1]))
    for s in range(0, a.shape[0], step):
        blk = a[s:s + step]
        w = np.asarray(blk @ g)                              # block x small
        br = np.repeat(np.arange(blk.shape[0]), np.diff(blk.indptr))
        weight_t[a.indptr[s]:a.indptr[s] + blk.nnz] = w[br, blk.indices]
    if not transpose:
        return rows, cols, weight_t
    # back to M's CSR order: a's edge (c, r) is M's edge (r, c)
    a_rows = np.repeat(np.arange(a.shape[0]), np.diff(a.indptr))
    key_t = a.indices.astype(np.int64) * nc + a_rows
    order = np.argsort(key_t, kind="stable")
    return rows, cols, weight_t[order]


def _weights_by_column_pairs(m: sp.csr_matrix) -> np.ndarray:
    """(M·Mᵀ·M)[r, c] for every edge (CSR order) as the sum over the edges (r', c) of its column of |row r ∩ row r'|:
    cheap when every column is short (tenant-shaped data); columns are taken in chunks of at most PAIR_CHUNK pairs."""
    m = m.tocsr()
    nr, nc = m.shape
    csc = m.tocsc()
    csc.sort_indices()
    s = (m @ m.T).tocsr()                                    # rows x rows overlaps (sparse)
    s.sort_indices()
    deg = np.diff(csc.indptr).astype(np.int64)
    weight_csc = np.zeros(csc.nnz, dtype=np.float64)         # in CSC order
    keys_s = np.repeat(np.arange(nr, dtype=np.int64), np.diff(s.indptr)) * nr + s.indices
    start = 0
    while start < nc:
        stop, pairs = start, 0
        while stop < nc and (stop == start or pairs + deg[stop] ** 2 <= PAIR_CHUNK):
            pairs += int(deg[stop] ** 2)
            stop += 1
        lo, hi = csc.indptr[start], csc.indptr[stop]
        d = deg[start:stop]
        reps = np.repeat(d, d)                               # each edge repeated by its column's degree
        e = np.repeat(np.arange(lo, hi), reps)
        first = np.repeat(csc.indptr[start:stop], d)         # first edge of each edge's column
        within = np.arange(len(e)) - np.repeat(np.cumsum(reps) - reps, reps)
        e2 = np.repeat(first, reps) + within
        key = csc.indices[e].astype(np.int64) * nr + csc.indices[e2]
        pos = np.searchsorted(keys_s, key)
        weight_csc[lo:hi] = np.bincount(e - lo, weights=s.data[pos], minlength=hi - lo)
        start = stop
    # CSC order -> CSR order
    col_of = np.repeat(np.arange(nc, dtype=np.int64), deg)
    order = np.lexsort((col_of, csc.indices))
    return weight_csc[order]


def incompatible_edges(m: sp.csr_matrix | np.ndarray, deadline: float = float("inf")
                       ) -> list[tuple[int, int]] | None:
    """A greedy maximal set of pairwise incompatible edges (deterministic); None if the matrix is too large.

    Stops early (still a valid, smaller set) when `deadline` (time.perf_counter()) passes."""
    m = sp.csr_matrix(m)
    nr, nc = m.shape
    if m.nnz == 0:
        return []
    if nr * nc > BLOCKED_LIMIT:
        return None
    m.sort_indices()
    rr, cc, weight = compatibility(m)
    order = np.lexsort((cc, rr, weight))
    flat = rr[order] * nc + cc[order]
    del rr, cc, weight, order
    csc = m.tocsc()
    csc.sort_indices()
    blocked = np.zeros(nr * nc, dtype=bool)                 # edge compatible with some chosen edge
    b2 = blocked.reshape(nr, nc)
    chosen: list[tuple[int, int]] = []
    pos, n, window = 0, len(flat), 256
    while pos < n:
        free = np.flatnonzero(~blocked[flat[pos:pos + window]])
        if len(free) == 0:
            pos += window
            window = min(window * 2, 1 << 16)
            continue
        window = 256
        pos += int(free[0])
        r, c = divmod(int(flat[pos]), nc)
        chosen.append((r, c))
        holders = csc.indices[csc.indptr[c]:csc.indptr[c + 1]]
        held = m.indices[m.indptr[r]:m.indptr[r + 1]]
        b2[np.ix_(holders, held)] = True                     # rows holding c x columns of row r
        pos += 1
        if len(chosen) % 64 == 0 and time.perf_counter() > deadline:
            break
    return chosen


SWAP_CELLS = 20_000_000        # edges x chosen edges the swap search may hold (one byte each)
SWAP_ROUNDS = 200


def improve_by_swaps(m: sp.csr_matrix, chosen: list[tuple[int, int]], deadline: float = float("inf")
                     ) -> list[tuple[int, int]]:
    """Grow a set of pairwise incompatible edges by (1, 2)-swaps: drop one chosen edge e, add two edges that are
    compatible with e only (among the chosen) and incompatible with each other. Each swap adds one to the bound;
    repeated until none is found, SWAP_ROUNDS, the memory cap or the deadline."""
    m = sp.csr_matrix(m)
    m.sort_indices()
    nr = m.shape[0]
    rr = np.repeat(np.arange(nr), np.diff(m.indptr))
    cc = m.indices.astype(np.int64)
    dense = m.toarray().astype(bool)
    chosen = list(chosen)
    for _ in range(SWAP_ROUNDS):
        if not chosen or len(rr) * len(chosen) > SWAP_CELLS or time.perf_counter() > deadline:
            break
        sr = np.array([r for r, _ in chosen])
        sc = np.array([c for _, c in chosen])
        compat = dense[rr][:, sc] & dense[sr][:, cc].T       # edges x chosen: compatible (no biclique split)
        tight = compat.sum(axis=1) == 1
        owner = np.argmax(compat, axis=1)
        removed: set[int] = set()
        added: list[tuple[int, int]] = []
        for k in np.unique(owner[tight]):
            cand = np.flatnonzero(tight & (owner == k))
            if added:                                        # also incompatible with every edge added this round
                cand = cand[[_fits(dense, int(rr[f]), int(cc[f]), added) for f in cand]]
            if len(cand) < 2:
                continue
            cr, ccand = rr[cand], cc[cand]
            free = ~(dense[np.ix_(cr, ccand)] & dense[np.ix_(cr, ccand)].T)
            np.fill_diagonal(free, False)
            i, j = np.nonzero(np.triu(free, 1))
            if len(i):
                a, b = cand[i[0]], cand[j[0]]
                removed.add(int(k))
                added += [(int(rr[a]), int(cc[a])), (int(rr[b]), int(cc[b]))]
        if not removed:
            break
        chosen = [e for t, e in enumerate(chosen) if t not in removed] + added
    return chosen


def _fits(dense: np.ndarray, r: int, c: int, edges: list[tuple[int, int]]) -> bool:
    """Edge (r, c) is incompatible with every edge of `edges`."""
    return all(not (dense[r, c2] and dense[r2, c]) for r2, c2 in edges)


def lower_bound(m: sp.csr_matrix | np.ndarray, deadline: float = float("inf"), swaps: bool = False) -> int | None:
    """The greedy set's size; with `swaps`, after (1, 2)-swaps (stronger, slower: used where the bound is the
    only certificate, i.e. components too large to enumerate)."""
    edges = incompatible_edges(m, deadline)
    if edges is None:
        return None
    return len(improve_by_swaps(sp.csr_matrix(m), edges, deadline) if swaps else edges)
