"""Reductions of the app x mailbox 0/1 matrix that keep the minimum cover size and lift back exactly.

Rows are apps, columns are mailboxes. Each step deletes rows or columns, so the result is a submatrix (its
minimum cover is a lower bound for the original) whose covers lift to covers of the original of the same size:
- identical rows / identical columns: keep one;
- a row equal to the union of the rows that are strict subsets of it: any cover of those covers it too;
- the same on the transpose (a column whose app set is the union of the app sets of "smaller" columns);
iterated until nothing changes. Subset relations among surviving rows (and columns) are the same as in the
original matrix, so a reduced biclique lifts by closure: its mailboxes become every mailbox that all its apps hold.

The expensive part, the sparse product M·Mᵀ, is skipped (and recorded) when its cost would exceed a budget:
a reduction is only ever an optimisation, never needed for correctness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

# Multiply-adds allowed in one sparse M·Mᵀ (sum of squared column degrees); the densest columns beyond it are
# checked as bit masks instead (measured: 5M keeps the tenant-scale transpose at ~0.2 s, against 1.5 s at 60M).
PRODUCT_BUDGET = 5_000_000
# Candidate pairs allowed for rows made only of dense columns (each is compared with every row).
PAIR_BUDGET = 20_000_000
# Candidate pairs checked on the heavy columns' bits at once (bounds the memory of the check).
PAIR_BLOCK = 1_000_000


def unique_rows(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(representative row indices in first-seen order, class id of every row) for identical sparse rows."""
    m = m.tocsr()
    m.sort_indices()
    seen: dict[bytes, int] = {}
    cls = np.empty(m.shape[0], dtype=np.int64)
    reps: list[int] = []
    ind, ptr = m.indices, m.indptr
    for i in range(m.shape[0]):
        key = ind[ptr[i]:ptr[i + 1]].tobytes()
        c = seen.get(key)
        if c is None:
            c = seen[key] = len(reps)
            reps.append(i)
        cls[i] = c
    return np.asarray(reps, dtype=np.int64), cls


def product_cost(m: sp.csr_matrix) -> int:
    """Multiply-adds of m @ m.T: the sum over columns of the squared column degree."""
    deg = np.diff(m.tocsc().indptr).astype(np.int64)
    return int((deg * deg).sum())


def subset_pairs(m: sp.csr_matrix, *, budget: int = PRODUCT_BUDGET, max_heavy: int = 1024
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """All pairs (i, j), i != j, with row i ⊆ row j (rows distinct and non-empty), or None if too costly.

    The pairs come from the sparse product M·Mᵀ, which one dense column (a mailbox every app holds; on the
    transpose, an app holding the whole tenant) makes quadratic. So the densest columns ("heavy", at most
    `max_heavy`) are left out of the product and checked as bit masks instead.
    """
    m = m.tocsr().astype(np.int32)
    n, k = m.shape
    deg = np.diff(m.indptr)
    if n < 2 or deg.min() == deg.max():
        # distinct rows of one size are never subsets of each other (FIMI data: one item per attribute, every
        # row the same size; the product cost 1.3 CPU s on mushroom for no pair)
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cdeg = np.diff(m.tocsc().indptr).astype(np.int64)
    order = np.argsort(-cdeg, kind="stable")
    tail = np.append(np.cumsum((cdeg[order] ** 2)[::-1])[::-1], 0)   # light cost if heavy = order[:i]
    n_heavy = int(np.flatnonzero(tail <= budget)[0])
    if n_heavy > max_heavy:
        return None
    heavy = np.zeros(k, dtype=bool)
    heavy[order[:n_heavy]] = True
    light = m[:, ~heavy].tocsr() if n_heavy else m
    hm = m[:, heavy].toarray().astype(bool) if n_heavy else np.zeros((n, 0), dtype=bool)
    hbits = _pack_bits(hm)
    ldeg = np.diff(light.indptr)
    s = (light @ light.T).tocoo()
    del deg
    ok = (s.data == ldeg[s.row]) & (s.row != s.col)
    # rows with an empty light part are subsets (on the light side) of every row
    only_heavy = np.flatnonzero(ldeg == 0)
    if len(only_heavy) * n > max(budget, PAIR_BUDGET):
        return None
    # candidates are checked on the heavy bits a block at a time: memory stays at PAIR_BLOCK candidates
    out_i, out_j = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]

    def keep_subsets(bi: np.ndarray, bj: np.ndarray) -> None:
        if hbits.shape[1]:
            sub = ~np.any(hbits[bi] & ~hbits[bj], axis=1)
            bi, bj = bi[sub], bj[sub]
        out_i.append(bi.astype(np.int64))
        out_j.append(bj.astype(np.int64))

    for s0 in range(0, len(s.row), PAIR_BLOCK):
        blk = ok[s0:s0 + PAIR_BLOCK]
        keep_subsets(s.row[s0:s0 + PAIR_BLOCK][blk], s.col[s0:s0 + PAIR_BLOCK][blk])
    step = max(1, PAIR_BLOCK // max(1, n))
    for s0 in range(0, len(only_heavy), step):
        q = only_heavy[s0:s0 + step]
        qi = np.repeat(q, n)
        qj = np.tile(np.arange(n), len(q))
        keep = qi != qj
        keep_subsets(qi[keep], qj[keep])
    return np.concatenate(out_i), np.concatenate(out_j)


def union_of_subsets(m: sp.csr_matrix, *, budget: int = PRODUCT_BUDGET) -> np.ndarray | None:
    """Boolean mask of rows equal to the union of the other rows that are strict subsets of them.

    Rows must be distinct and non-empty. Removing all flagged rows at once is safe: the strict-subset order is
    acyclic, so each flagged row is a union of unflagged ones. None when the subset pairs are too costly.
    """
    pairs = subset_pairs(m, budget=budget)
    if pairs is None:
        return None
    m = m.tocsr().astype(np.int32)
    n = m.shape[0]
    deg = np.diff(m.indptr)
    pi, pj = pairs
    p = sp.csr_matrix((np.ones(len(pi), dtype=np.int32), (pj, pi)), shape=(n, n))   # p[j, i]: i ⊊ j
    has_sub = np.diff(p.indptr) > 0
    u = (p @ m).tocsr()
    u.eliminate_zeros()
    covered = np.diff(u.indptr) == deg                       # the union of subsets lies inside the row
    return has_sub & covered


def _pack_bits(b: np.ndarray) -> np.ndarray:
    if b.shape[1] == 0:
        return np.zeros((b.shape[0], 0), dtype=np.uint64)
    packed = np.packbits(b, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


@dataclass
class Reduced:
    """The reduced matrix as a submatrix of `base` (the de-duplicated matrix): rows[i], cols[j] index into base."""

    base: sp.csr_matrix
    rows: np.ndarray
    cols: np.ndarray
    stats: dict = field(default_factory=dict)

    def matrix(self) -> sp.csr_matrix:
        return self.base[self.rows][:, self.cols].tocsr()


def reduce_matrix(base: sp.csr_matrix, *, budget: int = PRODUCT_BUDGET, max_rounds: int = 50) -> Reduced:
    """Iterate the reductions on `base` (rows and columns already distinct and non-empty) until a fixpoint."""
    rows = np.arange(base.shape[0])
    cols = np.arange(base.shape[1])
    stats = {"rows_union_removed": 0, "cols_union_removed": 0, "rows_merged": 0, "cols_merged": 0, "rounds": 0}
    skipped: list[str] = []  # reductions that ran out of budget
    for _ in range(max_rounds):
        stats["rounds"] += 1
        changed = False
        for side in ("rows", "cols"):
            m = base[rows][:, cols].tocsr()
            if side == "cols":
                m = m.T.tocsr()
            # identical lines (may appear after the other side shrank)
            reps, _ = unique_rows(m)
            if len(reps) < m.shape[0]:
                stats[f"{side}_merged"] += m.shape[0] - len(reps)
                reps.sort()
                if side == "rows":
                    rows = rows[reps]
                else:
                    cols = cols[reps]
                m = m[reps]
                changed = True
            drop = union_of_subsets(m, budget=budget)
            if drop is None:
                skipped.append(f"{side}-union")
                continue
            if drop.any():
                stats[f"{side}_union_removed"] += int(drop.sum())
                if side == "rows":
                    rows = rows[~drop]
                else:
                    cols = cols[~drop]
                changed = True
        if not changed:
            break
    return Reduced(base, rows, cols, {**stats, "skipped": sorted(set(skipped))})
