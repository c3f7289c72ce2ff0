"""Bounds on the minimum number of bicliques covering a 0/1 matrix (one connected component, dense bool).

Lower bound: a set of pairwise incompatible edges. Edges (r1, c1) and (r2, c2) are incompatible when
M[r1, c2] = 0 or M[r2, c1] = 0: no biclique holds both, so every cover needs one biclique per edge of the set.
Greedy, taking edges that are compatible with the fewest others first ((M·Mᵀ·M)[r, c] counts them).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def incompatible_edges(m: np.ndarray) -> list[tuple[int, int]]:
    """A greedy maximal set of pairwise incompatible edges of the bool matrix `m` (deterministic)."""
    rr, cc = np.nonzero(m)
    if len(rr) == 0:
        return []
    ms = sp.csr_matrix(m.astype(np.float32))
    compat = np.asarray((ms @ (ms.T @ ms)).toarray(), dtype=np.float64) if m.size <= 4_000_000 \
        else None
    if compat is None:
        k = ms @ (ms.T @ ms)
        weights = np.asarray(k[rr, cc]).ravel()
    else:
        weights = compat[rr, cc]
    order = np.lexsort((cc, rr, weights))
    # blocked[r, c]: edge (r, c) is compatible with some chosen edge, so it can no longer join the set
    blocked = np.zeros(m.shape, dtype=bool)
    chosen: list[tuple[int, int]] = []
    flat = rr[order] * m.shape[1] + cc[order]
    bflat = blocked.ravel()
    pos = 0
    n = len(flat)
    while pos < n:
        free = np.flatnonzero(~bflat[flat[pos:]])
        if len(free) == 0:
            break
        pos += int(free[0])
        e = int(flat[pos])
        r, c = divmod(e, m.shape[1])
        chosen.append((r, c))
        # edges compatible with (r, c): rows holding c x columns of row r
        blocked[np.ix_(m[:, c], m[r])] = True
        pos += 1
    return chosen


def lower_bound(m: np.ndarray) -> int:
    return len(incompatible_edges(m))
