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

# Upper bound on the multiply-adds of one M·Mᵀ (sum of squared column degrees) before a reduction is skipped.
PRODUCT_BUDGET = 60_000_000


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


def union_of_subsets(m: sp.csr_matrix) -> np.ndarray:
    """Boolean mask of rows equal to the union of the other rows that are strict subsets of them.

    Rows must be distinct and non-empty. Removing all flagged rows at once is safe: the strict-subset order is
    acyclic, so each flagged row is a union of unflagged ones.
    """
    m = m.tocsr().astype(np.int32)
    n = m.shape[0]
    deg = np.diff(m.indptr)
    s = (m @ m.T).tocoo()
    sub = (s.data == deg[s.row]) & (s.row != s.col)          # row s.row is a subset of row s.col
    p = sp.csr_matrix((np.ones(int(sub.sum()), dtype=np.int32), (s.col[sub], s.row[sub])), shape=(n, n))
    has_sub = np.diff(p.indptr) > 0
    u = (p @ m).tocsr()
    u.eliminate_zeros()
    covered = np.diff(u.indptr)                              # the union of subsets lies inside the row
    return has_sub & (covered == deg)


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
    stats = {"rows_union_removed": 0, "cols_union_removed": 0, "rows_merged": 0, "cols_merged": 0,
             "rounds": 0, "skipped": []}
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
            if product_cost(m) > budget:
                stats["skipped"].append(f"{side}-union ({product_cost(m):,} > budget)")
                continue
            drop = union_of_subsets(m)
            if drop.any():
                stats[f"{side}_union_removed"] += int(drop.sum())
                if side == "rows":
                    rows = rows[~drop]
                else:
                    cols = cols[~drop]
                changed = True
        if not changed:
            break
    stats["skipped"] = sorted(set(stats["skipped"]))
    return Reduced(base, rows, cols, stats)
