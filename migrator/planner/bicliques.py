"""Maximal bicliques of a dense bool matrix (one component) and the hardest-edge-first greedy cover.

A maximal biclique is (extent rows, intent columns) with intent = the columns every extent row holds and extent =
the rows holding every intent column. The intents are exactly the non-empty intersections of row sets, so they
are enumerated by closing the rows under intersection (bit-packed rows ANDed with a whole frontier at once).
"""

from __future__ import annotations

import time

import numpy as np


class TooManyBicliques(Exception):
    """The enumeration passed its cap; the caller falls back to a cover that needs no enumeration.

    `found`: the intents found so far (packed bit rows, closest to the row sets first; each is a maximal
    biclique's intent), which the fallback may use as a starting pool; `reason`: "count", "memory" or "time"."""

    def __init__(self, message: str, found: np.ndarray | None = None, reason: str = "count"):
        super().__init__(message)
        self.found = found
        self.reason = reason


def _pack(m: np.ndarray) -> np.ndarray:
    """Rows of a bool matrix packed into uint64 words."""
    packed = np.packbits(m, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _unique(a: np.ndarray) -> np.ndarray:
    """Distinct rows of a 2-D uint64 array, sorted (deterministic)."""
    if len(a) == 0:
        return a
    v = np.ascontiguousarray(a).view(np.dtype((np.void, a.dtype.itemsize * a.shape[1])))
    _, idx = np.unique(v.ravel(), return_index=True)
    return a[np.sort(idx)]


def maximal_bicliques(m: np.ndarray, *, cap: int = 50_000, chunk_words: int = 2_000_000,
                      deadline: float = float("inf")) -> tuple[np.ndarray, np.ndarray]:
    """All maximal bicliques of `m` as (extents: k x rows bool, intents: k x cols bool), deterministic order.

    Raises TooManyBicliques when more than `cap` are found or `deadline` (time.perf_counter()) passes.
    """
    nr, nc = m.shape
    rows = _unique(_pack(m))
    w = rows.shape[1]
    known = rows[np.any(rows != 0, axis=1)]
    known_set = {r.tobytes() for r in known}
    frontier = known
    while len(frontier):
        step = max(1, chunk_words // max(1, len(rows) * w))
        new_parts = []
        for s in range(0, len(frontier), step):
            cand = (frontier[s:s + step, None, :] & rows[None, :, :]).reshape(-1, w)
            cand = cand[np.any(cand != 0, axis=1)]
            cand = _unique(cand)
            fresh = [i for i, r in enumerate(cand) if r.tobytes() not in known_set]
            if fresh:
                cand = cand[fresh]
                for r in cand:
                    known_set.add(r.tobytes())
                new_parts.append(cand)
                if len(known_set) > cap:
                    raise TooManyBicliques(f"more than {cap:,} maximal bicliques",
                                           np.concatenate([known, *new_parts])[:cap], "count")
            if time.perf_counter() > deadline:
                raise TooManyBicliques("time limit reached while enumerating maximal bicliques",
                                       np.concatenate([known, *new_parts])[:cap], "time")
        frontier = np.concatenate(new_parts) if new_parts else frontier[:0]
        if len(frontier):
            known = np.concatenate([known, frontier])
    # deterministic order: by packed bytes
    known = _unique(known)
    v = known.view(np.dtype((np.void, known.dtype.itemsize * w))).ravel()
    known = known[np.argsort(v, kind="stable")]
    intents = np.unpackbits(known.view(np.uint8), axis=1)[:, :nc].astype(bool)
    packed_rows = _pack(m)
    # extent: rows whose bits include the whole intent
    extents = np.empty((len(known), nr), dtype=bool)
    step = max(1, chunk_words // max(1, nr * w))
    for s in range(0, len(known), step):
        k = known[s:s + step]
        extents[s:s + step] = np.all((k[:, None, :] & packed_rows[None, :, :]) == k[:, None, :], axis=2)
    return extents, intents


def greedy_cover(m: np.ndarray, extents: np.ndarray, intents: np.ndarray) -> list[int]:
    """Hardest edge first: take the uncovered edge in the fewest bicliques and cover it with the biclique
    covering the most uncovered edges (ties: lowest index); then drop bicliques made redundant. Deterministic."""
    ef = extents.astype(np.float32)
    inf = intents.astype(np.float32)
    in_count = ef.T @ inf                                    # bicliques containing each edge
    uncovered = m.copy()
    coverage = ef.sum(1) * inf.sum(1)                        # uncovered edges in each biclique
    chosen: list[int] = []
    big = np.float32(np.inf)
    while uncovered.any():
        masked = np.where(uncovered, in_count, big)
        e = int(np.argmin(masked))
        r, c = divmod(e, m.shape[1])
        cand = np.flatnonzero(extents[:, r] & intents[:, c])
        best = int(cand[np.argmax(coverage[cand])])
        chosen.append(best)
        block = np.ix_(extents[best], intents[best])
        newly = uncovered[block]
        rs = np.flatnonzero(extents[best])
        cs = np.flatnonzero(intents[best])
        nr_i, nc_i = np.nonzero(newly)
        er, ec = rs[nr_i], cs[nc_i]
        # each biclique loses the newly covered edges it contains
        step = max(1, 4_000_000 // max(1, len(extents)))
        for s in range(0, len(er), step):
            coverage -= (extents[:, er[s:s + step]] & intents[:, ec[s:s + step]]).sum(1)
        uncovered[block] = False
    return drop_redundant(m, extents, intents, chosen)


def drop_redundant(m: np.ndarray, extents: np.ndarray, intents: np.ndarray, chosen: list[int]) -> list[int]:
    """Remove chosen bicliques whose every edge is also covered by another chosen one (smallest first)."""
    count = np.zeros(m.shape, dtype=np.int32)
    for k in chosen:
        count[np.ix_(extents[k], intents[k])] += 1
    keep = list(chosen)
    for k in sorted(chosen, key=lambda k: (int(extents[k].sum()) * int(intents[k].sum()), k)):
        block = np.ix_(extents[k], intents[k])
        if count[block].min() >= 2:
            count[block] -= 1
            keep.remove(k)
    return sorted(keep)
