"""Do pandas and networkx earn a place? Each measured against what the tool does today, on the scale tenant.

- networkx for the planner's connected components (exact.py `_components`, a union-find over the edges) and
  scipy.sparse.csgraph for comparison: the bipartite app x mailbox graph of the scale tenant (bench/scale_planner.py:
  200,000 mailboxes, 5,000 apps, about 1,000,000 edges; the planner runs it on the smaller reduced matrix, so these
  are upper bounds). Import time is measured in a fresh interpreter, since a CLI run pays it every time.
- pandas for reading a large grants CSV (planner/source.py `parse_grants_csv`, the csv module with a check and a
  row-numbered error per row): the same 1,000,000-row file read by pandas.read_csv alone (no checks at all, so a
  lower bound for a pandas path that would still have to check every row and name the bad one).

Both libraries must be installed to run this (they are not dependencies of the tool):

    .venv/bin/pip install pandas networkx
    .venv/bin/python bench/dependencies.py [--out bench/results/dependencies.md]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from scale_planner import make_tenant  # noqa: E402  (bench/ is not a package)

from migrator.planner.exact import _components  # noqa: E402
from migrator.planner.source import parse_grants_csv  # noqa: E402


def import_seconds(module: str, runs: int = 3) -> float:
    """Median wall time of `import module` in a fresh interpreter (what every CLI start would pay)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                  check=True).stdout) for _ in range(runs)]
    return statistics.median(times)


def timed(fn, runs: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def components_networkx(m: sp.csr_matrix) -> int:
    import networkx as nx

    nr = m.shape[0]
    coo = m.tocoo()
    g = nx.Graph()
    g.add_nodes_from(range(nr + m.shape[1]))
    g.add_edges_from(zip(coo.row.tolist(), (coo.col + nr).tolist()))
    return sum(1 for c in nx.connected_components(g) if any(x < nr for x in c) and any(x >= nr for x in c))


def components_csgraph(m: sp.csr_matrix) -> int:
    from scipy.sparse.csgraph import connected_components

    nr = m.shape[0]
    full = sp.bmat([[None, m], [m.T, None]], format="csr")
    _count, labels = connected_components(full, directed=False)
    with_rows, with_cols = set(labels[:nr].tolist()), set(labels[nr:].tolist())
    return len(with_rows & with_cols)


def bipartite(sets: dict[str, set[str]]) -> sp.csr_matrix:
    apps = sorted(sets)
    mailboxes = {m: i for i, m in enumerate(sorted(set().union(*sets.values())))}
    rows = np.repeat(np.arange(len(apps)), [len(sets[a]) for a in apps])
    cols = np.fromiter((mailboxes[m] for a in apps for m in sets[a]), dtype=np.int64, count=len(rows))
    return sp.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(apps), len(mailboxes)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    sets = make_tenant(args.seed)
    m = bipartite(sets)
    edges = int(m.nnz)
    t_uf, comps_uf = timed(lambda: len(_components(m)))
    t_nx, comps_nx = timed(lambda: components_networkx(m), runs=1)
    t_cs, comps_cs = timed(lambda: components_csgraph(m))
    assert comps_uf == comps_nx == comps_cs, (comps_uf, comps_nx, comps_cs)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grants.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["app_id", "mailbox", "right"])
            for i, app in enumerate(sorted(sets)):
                app_id = f"22222222-0000-0000-0000-{i:012d}"
                w.writerows((app_id, mb, "SendAs") for mb in sorted(sets[app]))
        rows = edges
        t_csv, _ = timed(lambda: parse_grants_csv(path), runs=1)

        def read_csv_module():
            with open(path, newline="", encoding="utf-8-sig") as fh:
                return sum(1 for _ in csv.reader(fh, strict=True)) - 1

        t_reader, n_read = timed(read_csv_module, runs=1)
        assert n_read == rows

        def read_pandas():
            import pandas as pd

            return pd.read_csv(path, dtype=str, keep_default_na=False)

        t_pd, frame = timed(read_pandas, runs=1)
        assert len(frame) == rows

    lines = [
        "# Dependencies: pandas and networkx against what the tool does today",
        "",
        f"Scale tenant (bench/scale_planner.py, seed {args.seed}): {m.shape[0]:,} apps x {m.shape[1]:,} mailboxes, "
        f"{edges:,} edges. Best of 3 runs (networkx and the CSV reads: 1 run). Machine: {os.cpu_count()} cores "
        f"shared with other work (load average {os.getloadavg()[0]:.1f}).",
        "",
        "| what | seconds | import (fresh interpreter) |",
        "|---|---:|---:|",
        f"| connected components, union-find (exact.py, today) | {t_uf:.2f} | - |",
        f"| connected components, networkx | {t_nx:.2f} | {import_seconds('networkx'):.2f} |",
        f"| connected components, scipy.sparse.csgraph | {t_cs:.2f} | {import_seconds('scipy.sparse.csgraph'):.2f} |",
        f"| {rows:,}-row grants CSV, parse_grants_csv (checks every row, today) | {t_csv:.2f} | - |",
        f"| the same file, csv.reader alone (no checks) | {t_reader:.2f} | - |",
        f"| the same file, pandas.read_csv alone (no checks) | {t_pd:.2f} | {import_seconds('pandas'):.2f} |",
        "",
        f"All three find the same {comps_uf:,} components.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
