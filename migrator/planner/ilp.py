"""The set-cover integer program: min sum(x) s.t. A·x >= 1, x binary (rows = edges, columns = bicliques).

HiGHS through highspy when it is importable (about 3x less overhead than scipy's wrapper on the role-mining
instances), else through scipy.optimize.milp (the same solver). No MIP start is passed: highspy 1.16 with a
start set by setSolution() has been seen reporting an objective below its own LP bound. The caller checks
every answer against the matrix anyway.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

try:
    import highspy
except ImportError:  # pragma: no cover - scipy's HiGHS is the fallback
    highspy = None  # type: ignore[assignment]  # the name is tested for None before use


_banner_silenced = False
NO_JUMP_NONZEROS = 200_000   # above this many nonzeros the feasibility-jump heuristic is off (see _highspy)


def _new_highs():
    """highspy.Highs(), without the banner HiGHS prints on stdout the first time (before any option can be set):
    it would land in the middle of a command's output. Only the first construction in a process prints it."""
    global _banner_silenced
    if _banner_silenced:
        return highspy.Highs()
    _banner_silenced = True
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        return highspy.Highs()
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
        h = highspy.Highs()
        try:
            ctypes.CDLL(None).fflush(None)                   # C stdio buffers go to /dev/null, not later to stdout
        except (OSError, AttributeError):
            pass
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return h


@dataclass
class IlpResult:
    chosen: list[int] | None       # columns at 1 in the best solution found, None if none
    bound: float                   # proven lower bound on the optimum (0 when unknown)
    optimal: bool                  # the solver proved `chosen` optimal
    seconds: float
    status: str


def solve_set_cover(a: sp.spmatrix, time_limit: float) -> IlpResult:
    a = sp.csc_matrix(a, dtype=np.float64)
    t0 = time.perf_counter()
    n_rows, k = a.shape
    if k == 0:
        return IlpResult([] if n_rows == 0 else None, 0.0, n_rows == 0, 0.0, "empty")
    if highspy is not None:
        res = _highspy(a, time_limit)
    else:  # pragma: no cover
        res = _scipy(a, time_limit)
    res.seconds = round(time.perf_counter() - t0, 4)
    return res


def _highspy(a: sp.csc_matrix, time_limit: float) -> IlpResult:
    n_rows, k = a.shape
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(max(0.05, time_limit)))
    h.setOptionValue("random_seed", 0)
    if a.nnz > NO_JUMP_NONZEROS:
        # HiGHS's feasibility-jump heuristic does not look at the clock: on a 1.2M-nonzero pool it ran 18 s past a
        # 10 s limit. The caller always holds a cover already, so a primal heuristic is not needed there.
        h.setOptionValue("mip_heuristic_run_feasibility_jump", False)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = k, n_rows
    lp.col_cost_ = np.ones(k)
    lp.col_lower_, lp.col_upper_ = np.zeros(k), np.ones(k)
    lp.row_lower_ = np.ones(n_rows)
    lp.row_upper_ = np.full(n_rows, highspy.kHighsInf)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data
    lp.integrality_ = [highspy.HighsVarType.kInteger] * k
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    info = h.getInfo()
    chosen = None
    if info.primal_solution_status == 2:                     # kSolutionStatusFeasible
        x = np.asarray(h.getSolution().col_value)
        chosen = [int(i) for i in np.flatnonzero(x > 0.5)]
    optimal = status == highspy.HighsModelStatus.kOptimal and chosen is not None
    bound = float(info.mip_dual_bound) if np.isfinite(info.mip_dual_bound) else 0.0
    if optimal:
        bound = max(bound, float(info.objective_function_value))
    return IlpResult(chosen, bound, optimal, 0.0, h.modelStatusToString(status))


def _scipy(a: sp.csc_matrix, time_limit: float) -> IlpResult:  # pragma: no cover
    from scipy.optimize import Bounds, LinearConstraint, milp  # imported only here: scipy.optimize takes ~0.5 s
    k = a.shape[1]
    res = milp(np.ones(k), constraints=LinearConstraint(a, lb=1, ub=np.inf), integrality=np.ones(k),
               bounds=Bounds(0, 1), options={"time_limit": max(0.05, time_limit)})
    chosen = None if res.x is None else [int(i) for i in np.flatnonzero(res.x > 0.5)]
    optimal = res.status == 0 and chosen is not None
    bound = res.fun if optimal else getattr(res, "mip_dual_bound", None)
    bound = 0.0 if bound is None or not np.isfinite(bound) else float(bound)
    return IlpResult(chosen, bound, optimal, 0.0, str(res.status))
