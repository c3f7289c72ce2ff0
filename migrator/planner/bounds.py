"""Lower bound on the minimum number of bicliques covering a 0/1 matrix (one connected component).

A set of pairwise incompatible edges: edges (r1, c1) and (r2, c2) are incompatible when M[r1, c2] = 0 or
M[r2, c1] = 0, so no biclique holds both and every cover needs one biclique per edge of the set. Built greedily,
taking first the edges compatible with the fewest others: (M·Mᵀ·M)[r, c] counts them.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

BLOCKED_LIMIT = 150_000_000     # cells of the dense "blocked" matrix the greedy keeps


def compatibility(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, count) of every edge, count = (M·Mᵀ·M)[r, c] = sum over rows r' holding c of |row r ∩ row r'|.

    Computed per column from the small rows x rows product, so one dense row (an app holding the whole tenant)
    costs nothing extra, unlike forming Mᵀ·M.
    """
    m = m.tocsr().astype(np.int32)
    csc = m.tocsc()
    csc.sort_indices()
    s = (m @ m.T).toarray()                                  # rows x rows overlaps
    deg = np.diff(csc.indptr)
    cols = np.repeat(np.arange(m.shape[1]), deg)
    rows = csc.indices
    n_edges = len(rows)
    # all pairs of edges within a column: e (repeated deg times) with each e' of its column
    reps = deg[cols]
    e = np.repeat(np.arange(n_edges), reps)
    start = csc.indptr[cols]
    within = np.arange(len(e)) - np.repeat(np.cumsum(reps) - reps, reps)
    e2 = np.repeat(start, reps) + within
    weight = np.bincount(e, weights=s[rows[e], rows[e2]], minlength=n_edges)
    return rows, cols, weight


def incompatible_edges(m: sp.csr_matrix | np.ndarray) -> list[tuple[int, int]] | None:
    """A greedy maximal set of pairwise incompatible edges (deterministic); None if the matrix is too large."""
    m = sp.csr_matrix(m)
    nr, nc = m.shape
    if m.nnz == 0:
        return []
    if nr * nc > BLOCKED_LIMIT:
        return None
    dense = m.toarray().astype(bool)
    rr, cc, weight = compatibility(m)
    order = np.lexsort((cc, rr, weight))
    flat = rr[order] * nc + cc[order]
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
        b2[np.ix_(dense[:, c], dense[r])] = True             # rows holding c x columns of row r
        pos += 1
    return chosen


def lower_bound(m: sp.csr_matrix | np.ndarray) -> int | None:
    edges = incompatible_edges(m)
    return None if edges is None else len(edges)
