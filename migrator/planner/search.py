"""Cover of a component whose maximal bicliques are too many to enumerate: column generation over a bounded pool.

The set-cover LP (one column per biclique, one row per undominated edge) is solved over a pool built in steps, each
with its own share of the time left (a loaded machine shortens a step, never starves the later ones):
1. the trivial cover (each row's own set, or each column's concept), so the pool always holds a cover;
2. the compact pool: the other side's concepts and, when the small side has at most SMALL_SIDE members, the closure
   of every pair of it (on dense data with few columns the useful groups are these small generators); it gets its
   own greedy and integer program first, as a big pool makes the solver too slow to find them;
3. intersections of seeded-random pairs of rows through each column (a role shared by two apps is exactly their
   intersection) and the bicliques a capped enumeration found before it stopped;
4. column generation: the LP's duals price new bicliques (one of weight above 1 lowers the LP). Pricing is
   heuristic: pairs of heavy dual edges from both sides (`_price_pairs`: row(r1) ∩ row(r2), and the closure of
   rows(c1) ∩ rows(c2)) and a local search over intents (`_descend`). The LP has no x <= 1 bounds, so its row
   duals alone are a dual solution (with the bounds they over-priced and the pricing stalled);
5. the hardest-edge-first greedy and an integer program over the pool (HiGHS, remaining time); the best verified
   cover is kept.

Nothing here enumerates: memory is the pool's incidences, capped by `incidence_budget` (the caller derives it
from the planner's memory budget). The result is an upper bound; it is proven optimal only when it meets the
lower bound (the LP value of a heuristically priced pool is not a bound). Each phase is skipped once the deadline
has passed, and `stats["search"]` records the phases' wall and CPU seconds and what cut the search.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from migrator.planner import ilp
from migrator.planner.sparse import covers_all, greedy_cover_sparse, undominated_edges

PRICE_SEEDS = 48          # seed rows (and as many seed columns) per pricing round
PRICE_CANDIDATES = 24     # rows tried at each step of the descent
PRICE_STEPS = 12          # steps of one descent
MAX_ROUNDS = 200
PAIR_INTERSECTIONS = 5_000   # row pairs intersected for the initial pool (PAIRS_PER_COLUMN per column at most;
                             # column generation finds the rest: 40,000 cost 2.6 CPU s more on syn_500 for nothing)
PAIRS_PER_COLUMN = 25     # random pairs of a column's holders intersected for the initial pool
PAIR_EDGES = 600          # heaviest dual edges whose compatible pairs are tried
PAIR_CANDIDATES = 20_000  # row pairs evaluated per round
PAIR_ADD = 200            # bicliques added per round from the pairs
DOMINATION_BUDGET = 50_000_000   # multiply-adds for the subset pairs that drop dominated edges (about 2 s)
CG_MAX_CONSTRAINTS = 100_000  # past this many edge constraints the LP is too slow to price from: pool + ILP only
SEED_INCIDENCES = 300_000     # incidences of a capped enumeration's bicliques taken into the pool (HiGHS's
                              # presolve alone took 3.5 s on a 1.2M-incidence pool)
ILP_SHARE = 0.7               # of the remaining time: HiGHS's presolve can overrun its limit on a large pool
POOL_SHARE = 0.3              # of the remaining time for each step filling the pool (a loaded machine cuts it)
COMPACT_SHARE = 0.35          # of the remaining time for the integer program over the compact pool
SMALL_SIDE = 120              # a component side this small has all its pairs closed into the compact pool
COMPACT_INCIDENCES = 1_000_000   # incidences of those pair closures at most (the smallest first)
PACKED_BYTES = 64_000_000    # rows kept as packed bits for the extents when they fit (else a sparse product)
EPS = 1e-6


def _pack_rows(m: sp.csr_matrix) -> np.ndarray:
    """Rows of a 0/1 CSR matrix as packed uint64 words (rows x ceil(cols / 64))."""
    nr, nc = m.shape
    words = (nc + 63) // 64
    out = np.zeros((nr, words), dtype=np.uint64)
    rows = np.repeat(np.arange(nr), np.diff(m.indptr))
    idx = m.indices.astype(np.int64)
    np.bitwise_or.at(out, (rows, idx >> 6), np.left_shift(np.uint64(1), (idx & 63).astype(np.uint64)))
    return out


class Pool:
    """Distinct maximal bicliques of `m`, kept as intents (sorted column arrays) and their edge incidences."""

    def __init__(self, m: sp.csr_matrix):
        self.m = m
        self.csc = m.tocsc()
        self.csc.sort_indices()
        nr, nc = m.shape
        self.keys = np.repeat(np.arange(nr, dtype=np.int64), np.diff(m.indptr)) * nc + m.indices
        self.intents: list[np.ndarray] = []
        self.extents: list[np.ndarray] = []
        self.edges: list[np.ndarray] = []                    # edge ids (CSR order of m) of each biclique
        self.incidences = 0
        self._seen: dict[bytes, int] = {}

    def extent(self, intent: np.ndarray) -> np.ndarray:
        """Rows holding every column of `intent` (sorted)."""
        csc = self.csc
        cols = sorted(intent.tolist(), key=lambda c: csc.indptr[c + 1] - csc.indptr[c])
        rows = csc.indices[csc.indptr[cols[0]]:csc.indptr[cols[0] + 1]]
        for c in cols[1:]:
            if len(rows) == 0:
                break
            rows = np.intersect1d(rows, csc.indices[csc.indptr[c]:csc.indptr[c + 1]], assume_unique=True)
        return rows

    def closure_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """Columns held by every row in `rows` (the intent of an extent)."""
        m = self.m
        out = m.indices[m.indptr[rows[0]]:m.indptr[rows[0] + 1]]
        for r in rows[1:]:
            out = np.intersect1d(out, m.indices[m.indptr[r]:m.indptr[r + 1]], assume_unique=True)
            if len(out) == 0:
                break
        return out

    def index_of(self, intent: np.ndarray) -> int:
        return self._seen.get(np.sort(np.asarray(intent, dtype=np.int64)).tobytes(), -1)

    def add(self, intent: np.ndarray, budget: int) -> int:
        """Index of the new biclique, -1 if already known, -2 if the budget is exhausted."""
        intent = np.sort(np.asarray(intent, dtype=np.int64))
        if len(intent) == 0:
            return -1
        key = intent.tobytes()
        if key in self._seen:
            return -1
        ext = self.extent(intent)
        size = len(ext) * len(intent)
        if self.incidences + size > budget:
            return -2
        self._seen[key] = len(self.intents)
        nc = self.m.shape[1]
        self.edges.append(np.searchsorted(self.keys, (ext[:, None] * nc + intent[None, :]).ravel()))
        self.intents.append(intent)
        self.extents.append(ext)
        self.incidences += size
        return len(self.intents) - 1

    def add_many(self, intents: list[np.ndarray], budget: int, deadline: float = float("inf"),
                 chunk: int = 512) -> str | None:
        """Add many intents at once (extents a chunk at a time, see `_extents`); None, "memory" or "time" when a
        budget stopped it (the intents before the stop are in)."""
        fresh, keys = [], set()
        for x in intents:
            x = np.sort(np.asarray(x, dtype=np.int64))
            key = x.tobytes()
            if len(x) and key not in self._seen and key not in keys:
                keys.add(key)
                fresh.append(x)
        nc = self.m.shape[1]
        for s in range(0, len(fresh), chunk):
            part = fresh[s:s + chunk]
            for intent, ext in zip(part, self._extents(part)):
                size = len(ext) * len(intent)
                if self.incidences + size > budget:
                    return "memory"
                self._seen[intent.tobytes()] = len(self.intents)
                self.edges.append(np.searchsorted(self.keys, (ext[:, None] * nc + intent[None, :]).ravel()))
                self.intents.append(intent)
                self.extents.append(ext)
                self.incidences += size
            if time.perf_counter() > deadline:
                return "time"
        return None

    def _extents(self, part: list[np.ndarray]) -> list[np.ndarray]:
        """The rows holding each intent of `part`. With the rows as packed bits (when they fit PACKED_BYTES): the
        holders of each intent's rarest column, kept when their bits include the intent's (a few words per
        candidate row); else one sparse product, which touches every holder of every column of every intent."""
        nr, nc = self.m.shape
        words = (nc + 63) // 64
        if nr * words * 8 > PACKED_BYTES:
            if not hasattr(self, "_mt"):
                self._mt = self.m.T.tocsr()
            lens = np.array([len(x) for x in part], dtype=np.int64)
            q = sp.csr_matrix((np.ones(int(lens.sum()), dtype=np.int32), np.concatenate(part),
                               np.concatenate([[0], np.cumsum(lens)])), shape=(len(part), nc))
            counts = (q @ self._mt).tocsr()                  # |intent ∩ row| for every row sharing a column
            return [np.sort(counts.indices[counts.indptr[i]:counts.indptr[i + 1]][
                counts.data[counts.indptr[i]:counts.indptr[i + 1]] == lens[i]]).astype(np.int64)
                for i in range(len(part))]
        if not hasattr(self, "_bits"):
            self._bits = _pack_rows(self.m)
            self._cdeg = np.diff(self.csc.indptr)
        csc = self.csc
        rare = [int(x[np.argmin(self._cdeg[x])]) for x in part]
        holders = [csc.indices[csc.indptr[c]:csc.indptr[c + 1]] for c in rare]
        counts = np.array([len(h) for h in holders], dtype=np.int64)
        cand = np.concatenate(holders).astype(np.int64)
        owner = np.repeat(np.arange(len(part)), counts)
        lens = np.array([len(x) for x in part], dtype=np.int64)
        qb = _pack_rows(sp.csr_matrix((np.ones(int(lens.sum()), dtype=np.int8), np.concatenate(part),
                                       np.concatenate([[0], np.cumsum(lens)])), shape=(len(part), nc)))
        ok = np.empty(len(cand), dtype=bool)
        step = max(1, 4_000_000 // words)
        for s in range(0, len(cand), step):
            sl = slice(s, s + step)
            ok[sl] = ~np.any(qb[owner[sl]] & ~self._bits[cand[sl]], axis=1)
        return np.split(cand[ok], np.cumsum(np.bincount(owner[ok], minlength=len(part)))[:-1])

    def incidence(self, start: int = 0) -> sp.csc_matrix:
        """Edges x bicliques[start:] 0/1 matrix (CSC: one column per biclique)."""
        cols = self.edges[start:]
        lens = np.array([len(e) for e in cols], dtype=np.int64)
        data = np.ones(int(lens.sum()), dtype=np.float64)
        idx = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
        ptr = np.concatenate([[0], np.cumsum(lens)])
        return sp.csc_matrix((data, idx, ptr), shape=(len(self.keys), len(cols)))


def column_concepts(m: sp.csr_matrix) -> list[np.ndarray]:
    """For each column c, the columns held by every row holding c (the intent of the biclique rows(c) x ...)."""
    csc = m.tocsc().astype(np.int32)
    cdeg = np.diff(csc.indptr)
    out = []
    step = max(1, 2_000_000 // max(1, m.shape[1]))
    for s in range(0, m.shape[1], step):
        g = (csc[:, s:s + step].T @ csc).tocsr()             # overlaps of columns s.. with every column
        g.sort_indices()
        for i in range(g.shape[0]):
            sl = slice(g.indptr[i], g.indptr[i + 1])
            out.append(g.indices[sl][g.data[sl] == cdeg[s + i]].astype(np.int64))
    return out


def pair_intersections(m: sp.csr_matrix, per_column: int = PAIRS_PER_COLUMN, seed: int = 0) -> list[np.ndarray]:
    """For each column, row(r1) ∩ row(r2) for a few seeded-random pairs of rows holding it: the intents a
    generator of roles leaves behind (two apps sharing one role share exactly that role's mailboxes), found
    without the quadratic all-pairs closure."""
    rng = np.random.default_rng(seed)
    per_column = max(1, min(per_column, PAIR_INTERSECTIONS // max(1, m.shape[1])))
    csc = m.tocsc()
    out: list[np.ndarray] = []
    r1s, r2s = [], []
    for c in range(m.shape[1]):
        holders = csc.indices[csc.indptr[c]:csc.indptr[c + 1]]
        if len(holders) < 2:
            continue
        for _ in range(per_column):
            a, b = rng.choice(len(holders), 2, replace=False)
            r1s.append(holders[a])
            r2s.append(holders[b])
    if not r1s:
        return out
    inter = m[np.array(r1s)].multiply(m[np.array(r2s)]).tocsr()
    inter.eliminate_zeros()
    inter.sort_indices()
    for i in range(inter.shape[0]):
        x = inter.indices[inter.indptr[i]:inter.indptr[i + 1]]
        if len(x):
            out.append(x.astype(np.int64))
    return out


def _descend(m: sp.csr_matrix, csc: sp.csc_matrix, y: sp.csr_matrix, seed: int) -> tuple[np.ndarray, float]:
    """Local search for a heavy intent: start from row `seed`'s set, intersect with the best row while it helps.

    Intersections of row sets are closed, so every intent visited is a maximal biclique's. Returns the best
    intent and its weight."""
    intent = m.indices[m.indptr[seed]:m.indptr[seed + 1]]
    best_w = _weight(m, csc, y, intent)
    best = intent
    for _ in range(PRICE_STEPS):
        # rows outside the extent that hold part of the intent, by the dual weight they hold on it
        sub_m = csc[:, intent]
        hold = np.asarray(sub_m.sum(axis=1)).ravel()
        on = np.asarray(y[:, intent].sum(axis=1)).ravel()
        outside = (hold > 0) & (hold < len(intent)) & (on > EPS)
        cand = np.flatnonzero(outside)
        if len(cand) == 0:
            break
        if len(cand) > PRICE_CANDIDATES:
            cand = cand[np.argsort(-on[cand], kind="stable")[:PRICE_CANDIDATES]]
        # candidate intents: intent ∩ row(r') for each candidate row, as a K x |intent| 0/1 matrix
        q = m[cand][:, intent].tocsr()
        qlen = np.diff(q.indptr)
        x = (sub_m @ q.T).toarray()                          # nr x K: columns of each candidate a row holds
        inside = x == qlen[None, :]
        z = (y[:, intent] @ q.T).toarray()                   # nr x K: dual weight a row holds on each candidate
        w = (z * inside).sum(axis=0)
        k = int(np.argmax(w))
        if w[k] <= EPS:
            break
        # always move to the best neighbour (plateaus are common: LP duals sit on few edges); keep the best seen
        intent = intent[q.indices[q.indptr[k]:q.indptr[k + 1]]]
        if w[k] > best_w + EPS:
            best_w, best = float(w[k]), intent
    return best, best_w


def _weight(m: sp.csr_matrix, csc: sp.csc_matrix, y: sp.csr_matrix, intent: np.ndarray) -> float:
    hold = np.asarray(csc[:, intent].sum(axis=1)).ravel()
    rows = np.flatnonzero(hold == len(intent))
    return float(y[rows][:, intent].sum())


class _Lp:
    """The restricted master LP in HiGHS, grown column by column (warm-started)."""

    def __init__(self, n_rows: int):
        h = ilp._new_highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("random_seed", 0)
        inf = ilp.highspy.kHighsInf
        h.addRows(n_rows, np.ones(n_rows), np.full(n_rows, inf), 0, np.zeros(0, np.int32), np.zeros(0, np.int32),
                  np.zeros(0))
        self.h = h
        self.n_cols = 0

    def add(self, a: sp.csc_matrix) -> None:
        k = a.shape[1]
        if k == 0:
            return
        # no upper bound x <= 1 (never binding in a cover): with it, a column at its bound takes part of the
        # objective as a bound dual and the row duals over-price (their sum exceeded the LP value two-fold)
        self.h.addCols(k, np.ones(k), np.zeros(k), np.full(k, ilp.highspy.kHighsInf), a.nnz,
                       a.indptr[:-1].astype(np.int32), a.indices.astype(np.int32), a.data)
        self.n_cols += k

    def solve(self, time_limit: float) -> tuple[float, np.ndarray, np.ndarray] | None:
        self.h.setOptionValue("time_limit", float(max(0.05, time_limit)))
        self.h.run()
        if self.h.getModelStatus() != ilp.highspy.HighsModelStatus.kOptimal:
            return None
        sol = self.h.getSolution()
        return (float(self.h.getInfo().objective_function_value), np.asarray(sol.col_value),
                np.asarray(sol.row_dual))


def search_cover(m: sp.csr_matrix, lb: int, deadline: float, incidence_budget: int, stats: dict,
                 seeds: np.ndarray | None = None, cg_share: float = 0.3) -> tuple[list[np.ndarray], int, bool]:
    """Cover component `m` without enumerating: (extents as row arrays, lower bound, optimal?); see the module.

    Every phase after the trivial cover has its own share of the time left and is skipped once `deadline` has
    passed, so the call ends soon after it; a slow phase (a loaded machine) shortens the later ones instead of
    starving them."""
    t0 = time.perf_counter()
    m = m.tocsr().astype(np.int32)
    m.sort_indices()
    nr, nc = m.shape
    pool = Pool(m)
    cut = None
    info: dict = {"rows": nr, "cols": nc, "edges": int(m.nnz)}
    phases: dict[str, float] = {}
    cpu: dict[str, float] = {}                               # the process's CPU seconds per phase (load shows)
    tick = [t0, time.process_time()]

    def phase(name: str) -> bool:
        """Record the time since the last phase; True while there is time left."""
        now, now_cpu = time.perf_counter(), time.process_time()
        phases[name] = round(now - tick[0], 3)
        cpu[name] = round(now_cpu - tick[1], 3)
        tick[0], tick[1] = now, now_cpu
        return now < deadline

    # the trivial cover (one biclique per row, or per column) first: the pool always holds a cover
    rows_of = [m.indices[m.indptr[i]:m.indptr[i + 1]] for i in range(nr)]
    firsts = rows_of if nr <= nc else column_concepts(m)
    pool.add_many(firsts, np.iinfo(np.int64).max)           # min(rows, cols) bicliques: at most the input's size
    trivial = sorted({pool.index_of(x) for x in firsts})
    best = trivial
    kept: list[np.ndarray] = []

    def rows_kept() -> np.ndarray:
        """The undominated edges (the LP's and the integer program's rows), computed on first use."""
        if not kept:
            mask = undominated_edges(m, DOMINATION_BUDGET)
            kept.append(np.arange(m.nnz) if mask is None else np.flatnonzero(mask))
            info["constraints"] = len(kept[0])
            phase("domination")
        return kept[0]

    stop = None
    if not phase("trivial"):
        # out of time already (a starved machine): still the other side's concepts and the quick greedy below,
        # about as cheap as reading the component, so the answer is not the trivial cover
        others = column_concepts(m) if nr <= nc else rows_of
        stop = pool.add_many(others, incidence_budget) or "time"
    else:
        # the compact pool: the closures of pairs of the small side, then the other side's concepts
        pairs = small_side_pairs(m)
        if pairs:
            # their own share of the budget, smallest bicliques first: on dense data (chess, mushroom) the pairs'
            # extents are large, and the later steps still need room
            compact_budget = min(incidence_budget, pool.incidences + COMPACT_INCIDENCES)
            stop = pool.add_many(pairs, compact_budget, _share(deadline, POOL_SHARE))
            if stop == "memory" and compact_budget < incidence_budget:
                stop = None
        if stop is None:
            others = column_concepts(m) if nr <= nc else rows_of
            stop = pool.add_many(others, incidence_budget, _share(deadline, POOL_SHARE))
        if pairs and phase("compact_pool"):
            # its own integer program first: small generators are what dense data (few columns, many
            # overlapping rows) needs, and a big pool makes the solver too slow to find them
            compact: dict = {}
            best, _ = _cover_from_pool(pool, rows_kept, best, lb, _share(deadline, COMPACT_SHARE), compact)
            info["compact"] = compact
            phase("compact_cover")
        if stop is None and len(best) > lb and time.perf_counter() < deadline:
            stop = _fill_pool(m, pool, seeds, incidence_budget, _share(deadline, POOL_SHARE))
    if stop is not None:
        cut = f"{'memory budget' if stop == 'memory' else 'time limit'} (initial pool)"
    info["initial_pool"] = len(pool.intents)
    phase("initial_pool")
    if best is trivial and len(pool.intents) > len(trivial):
        # a quick answer before the costly steps (edge domination, the LP): the greedy over the pool, run even
        # past the deadline (it costs about the pool's incidences), so a starved run still ends far below the
        # trivial cover (syn_500 at load 12: 1,469 groups without it)
        quick = greedy_cover_sparse(pool.incidence().tocsr())
        info["quick_greedy"] = len(quick)
        if len(quick) < len(best):
            best = quick
        phase("quick_greedy")
    # column generation: a share of the remaining time, the rest for the integer program
    rounds, lp_value = 0, None
    use_lp = ilp.highspy is not None and len(best) > lb and time.perf_counter() < deadline
    if use_lp and len(rows_kept()) <= CG_MAX_CONSTRAINTS and time.perf_counter() < deadline:
        rounds, lp_value, cg_cut = _column_generation(m, pool, rows_kept(), _share(deadline, cg_share),
                                                      incidence_budget)
        cut = cut or cg_cut
        phase("column_generation")
    info["rounds"] = rounds
    info["pool"] = len(pool.intents)
    info["incidences"] = pool.incidences
    info["lp"] = None if lp_value is None else round(lp_value, 3)
    # covers: greedy over the pool, then the integer program over it
    if len(best) <= lb:
        pass
    elif time.perf_counter() < deadline:
        best, ilp_cut = _cover_from_pool(pool, rows_kept, best, lb, deadline, info)
        cut = cut or ilp_cut
        phase("integer_program")
    else:
        cut = cut or "time limit (before the integer program)"
    info["groups"] = len(best)
    info["cut"] = cut
    info["phases"] = phases
    info["phases_cpu"] = cpu
    info["seconds"] = round(time.perf_counter() - t0, 3)
    stats.setdefault("search", []).append(info)
    optimal = len(best) <= lb
    return [pool.extents[k] for k in best], lb, optimal


def _share(deadline: float, share: float) -> float:
    """A phase's own deadline: `share` of the time left before `deadline`."""
    now = time.perf_counter()
    return now + max(0.0, deadline - now) * share


def small_side_pairs(m: sp.csr_matrix, limit: int = SMALL_SIDE) -> list[np.ndarray]:
    """Intents of the closures of every pair of the small side, when it has at most `limit` members.

    Rows side: row(r1) ∩ row(r2) (already closed). Columns side: the columns every row holding both c1 and c2
    holds. On dense data with few columns (many rows, each one value per attribute) the groups worth having are
    these small generators, not the rows' large intersections."""
    nr, nc = m.shape
    if min(nr, nc) > limit or min(nr, nc) < 2:
        return []
    a = m if nr <= nc else m.T.tocsr()                       # small side as rows
    n = a.shape[0]
    i, j = np.triu_indices(n, 1)
    inter = a[i].multiply(a[j]).tocsr()                      # pairs x big side
    inter.eliminate_zeros()
    inter.sort_indices()
    keep = np.flatnonzero(np.diff(inter.indptr) > 0)
    inter = inter[keep]
    if nr <= nc:
        return [inter.indices[inter.indptr[k]:inter.indptr[k + 1]].astype(np.int64) for k in range(inter.shape[0])]
    # columns side: inter holds extents (rows holding both columns); intents are their closures
    lens = np.diff(inter.indptr)
    counts = (inter.astype(np.int32) @ m).tocsr()            # pairs x columns: how many extent rows hold each
    counts.sort_indices()
    out = []
    for k in range(counts.shape[0]):
        sl = slice(counts.indptr[k], counts.indptr[k + 1])
        out.append(counts.indices[sl][counts.data[sl] == lens[k]].astype(np.int64))
    size = np.array([len(x) for x in out], dtype=np.int64) * lens
    return [out[k] for k in np.argsort(size, kind="stable")]    # smallest bicliques first


def _cover_from_pool(pool: Pool, rows_kept: Callable[[], np.ndarray], best: list, lb: int, deadline: float,
                     info: dict) -> tuple[list, str | None]:
    """The best cover the pool gives: the hardest-edge-first greedy, then the integer program over the pool in the
    time left (its answer is taken only when it covers every edge). Returns (cover, why it was cut or None)."""
    a_full = pool.incidence().tocsr()
    greedy = greedy_cover_sparse(a_full)
    info["greedy"] = len(greedy)
    if len(greedy) < len(best):
        best = greedy
    remaining = deadline - time.perf_counter()
    if len(best) <= lb or remaining <= 0.1:
        return best, None
    a_kept = a_full[rows_kept()]
    remaining = deadline - time.perf_counter()
    if remaining <= 0.1:
        return best, "time limit (integer program)"
    a_kept = a_kept[_distinct_rows(a_kept)]          # edges covered by the same bicliques: one constraint
    info["ilp_constraints"] = a_kept.shape[0]
    res = ilp.solve_set_cover(a_kept, remaining * ILP_SHARE)
    info["ilp"] = {"status": res.status, "seconds": res.seconds,
                   "groups": None if res.chosen is None else len(res.chosen)}
    if res.chosen is not None and len(res.chosen) < len(best) and covers_all(a_full, res.chosen):
        best = res.chosen
    return best, None if res.optimal else "time limit (integer program)"


def _fill_pool(m: sp.csr_matrix, pool: Pool, seeds: np.ndarray | None, incidence_budget: int,
               deadline: float) -> str | None:
    """The search's pool after the compact one: pair intersections of rows, then the packed intents of a capped
    enumeration. Returns why it stopped early ("memory" / "time"), or None."""
    stop = pool.add_many(pair_intersections(m), incidence_budget, deadline)
    if stop is None and seeds is not None:               # packed intents from a capped enumeration
        bits = np.unpackbits(np.ascontiguousarray(seeds).view(np.uint8), axis=1)[:, :m.shape[1]].astype(bool)
        # at most SEED_INCIDENCES of them: past that the integer program over the pool outruns its time limit
        seed_budget = min(incidence_budget, pool.incidences + SEED_INCIDENCES)
        stop = pool.add_many([np.flatnonzero(b) for b in bits], seed_budget, deadline)
        if stop == "memory" and seed_budget < incidence_budget:
            stop = None
    return stop


def _column_generation(m: sp.csr_matrix, pool: Pool, rows_kept: np.ndarray, cg_deadline: float,
                       incidence_budget: int) -> tuple[int, float | None, str | None]:
    """LP over the pool, new bicliques priced from its duals, until nothing new or the deadline:
    (rounds, last LP value, why it was cut or None)."""
    lp = _Lp(len(rows_kept))
    lp.add(pool.incidence()[rows_kept])
    rounds, lp_value, cut = 0, None, None
    while rounds < MAX_ROUNDS:
        now = time.perf_counter()
        if now > cg_deadline:
            return rounds, lp_value, cut or "time limit (column generation)"
        solved = lp.solve(cg_deadline - now)
        if solved is None:
            return rounds, lp_value, cut or "time limit (column generation)"
        lp_value, _, duals = solved
        rounds += 1
        yv = np.zeros(m.nnz)
        yv[rows_kept] = np.maximum(duals, 0.0)
        y = sp.csr_matrix((yv, m.indices.copy(), m.indptr.copy()), shape=m.shape)   # not shared: pruned next
        y.eliminate_zeros()
        start = len(pool.intents)
        new = _price_pairs(m, pool, y, cg_deadline, incidence_budget)
        if new != -2:
            new = _price(m, pool, y, y.tocsc(), cg_deadline, incidence_budget)
        if new == -2:
            cut = cut or "memory budget (column generation)"
        if len(pool.intents) == start:
            break
        lp.add(pool.incidence(start)[rows_kept])
    return rounds, lp_value, cut


def _price_pairs(m: sp.csr_matrix, pool: Pool, y: sp.csr_matrix, deadline: float, budget: int) -> int:
    """Bicliques through two dual-carrying edges, from both sides: for compatible edges (r1, c1), (r2, c2) of the
    heaviest duals, the largest intent holding both, row(r1) ∩ row(r2), and the largest extent holding both,
    rows(c1) ∩ rows(c2) (closed to its intent); those of weight above 1 join the pool (heaviest first). The descent
    misses these when the duals sit on single edges far apart (a degenerate LP); the extent side finds the small
    roles whose columns other roles share (two rows holding a two-column role share more than it by chance)."""
    if not hasattr(pool, "_mt"):
        pool._mt = m.T.tocsr()
    found = _heavy_pairs(m, pool._mt, y, deadline)
    if time.perf_counter() < deadline:
        found += [(w, x, True) for w, x, _ in _heavy_pairs(pool._mt, m, y.T.tocsr(), deadline)]
    found.sort(key=lambda t: (-t[0], t[2], t[1].tobytes()))
    added = 0
    for _, x, is_extent in found[:PAIR_ADD]:
        intent = pool.closure_of_rows(x) if is_extent else x
        if len(intent) == 0:
            continue
        res = pool.add(intent, budget)
        if res == -2:
            return -2
        added += res >= 0
    return added


def _heavy_pairs(m: sp.csr_matrix, mt: sp.csr_matrix, y: sp.csr_matrix, deadline: float
                 ) -> list[tuple[float, np.ndarray, bool]]:
    """(weight, row(r1) ∩ row(r2), False) for the pairs of compatible heavy dual edges of weight above 1."""
    yc = y.tocoo()
    if yc.nnz < 2:
        return []
    top = np.argsort(-yc.data, kind="stable")[:PAIR_EDGES]
    er, ec = yc.row[top].astype(np.int64), yc.col[top].astype(np.int64)
    sub = m[er][:, ec].toarray() > 0                         # sub[i, j]: row of edge i holds column of edge j
    compat = sub & sub.T
    i, j = np.nonzero(np.triu(compat, 1))
    diff = er[i] != er[j]
    i, j = i[diff], j[diff]
    if len(i) == 0:
        return []
    # distinct row pairs only; their intents row(r1) ∩ row(r2)
    pairs = np.unique(np.stack([np.minimum(er[i], er[j]), np.maximum(er[i], er[j])], axis=1), axis=0)
    pairs = pairs[:PAIR_CANDIDATES]
    a = m[pairs[:, 0]].multiply(m[pairs[:, 1]]).tocsr()
    a.eliminate_zeros()
    a.sort_indices()
    lens = np.diff(a.indptr)
    yt = y.T.tocsr()
    found: list[tuple[float, np.ndarray, bool]] = []
    for s0 in range(0, a.shape[0], 512):
        q = a[s0:s0 + 512]
        counts = (q @ mt).toarray()                          # K x rows: columns of the intent each row holds
        inside = counts == lens[s0:s0 + 512, None]
        z = (q @ yt).toarray()                               # K x rows: dual weight a row holds on the intent
        w = (z * inside).sum(axis=1)
        for k in np.flatnonzero(w > 1 + EPS):
            k0 = s0 + int(k)
            found.append((float(w[k]), a.indices[a.indptr[k0]:a.indptr[k0 + 1]].astype(np.int64), False))
        if time.perf_counter() > deadline:
            break
    found.sort(key=lambda t: -t[0])
    return found[:PAIR_ADD]


def _distinct_rows(a: sp.csr_matrix) -> np.ndarray:
    """Indices of the first of each group of identical rows of a 0/1 CSR matrix (sorted indices)."""
    a.sort_indices()
    seen: set[bytes] = set()
    keep = []
    ind, ptr = a.indices, a.indptr
    for i in range(a.shape[0]):
        key = ind[ptr[i]:ptr[i + 1]].tobytes()
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _price(m: sp.csr_matrix, pool: Pool, y: sp.csr_matrix, y_csc: sp.csc_matrix, deadline: float,
           budget: int) -> int:
    """Add bicliques of weight above 1 found from the heaviest seed rows and columns; -2 if the budget stopped it."""
    added = 0
    row_w = np.asarray(y.sum(axis=1)).ravel()
    col_w = np.asarray(y.sum(axis=0)).ravel()
    seeds_r = np.argsort(-row_w, kind="stable")[:PRICE_SEEDS]
    seeds_c = np.argsort(-col_w, kind="stable")[:PRICE_SEEDS]
    mt = pool.csc.T.tocsr()            # columns as rows: descending on the transpose walks extents
    ct = m.T.tocsc()
    yt = y_csc.T.tocsr()
    for r in seeds_r:
        if row_w[r] <= 1 + EPS and added:
            break
        intent, w = _descend(m, pool.csc, y, int(r))
        if w > 1 + EPS:
            k = pool.add(intent, budget)
            if k == -2:
                return -2
            added += k >= 0
        if time.perf_counter() > deadline:
            return added
    for c in seeds_c:
        ext, w = _descend(mt, ct, yt, int(c))
        if w > 1 + EPS and len(ext):
            k = pool.add(pool.closure_of_rows(ext), budget)
            if k == -2:
                return -2
            added += k >= 0
        if time.perf_counter() > deadline:
            return added
    return added
