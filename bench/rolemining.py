"""Benchmark: the exact cover on the seven HP Labs role-mining datasets (Ene et al., SACMAT 2008).

Apps = rows ("users"), mailboxes = columns ("permissions"). For each dataset: convert it to a grants CSV
(`app_id,mailbox`) in a temp folder, solve the cover in a fresh subprocess (so peak memory is per dataset; compute
time excludes imports and parsing), check it reaches the known minimum, and, when the `migrator plan` command
exists, time it end to end as a subprocess on the CSV (process start-up included).

    .venv/bin/python bench/rolemining.py [--data DIR] [--out bench/results/rolemining.md] [--no-cli]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "bench" / "rolemining"
# Known minimum number of roles (SOURCE.md; Ene et al. 2008, re-proved).
KNOWN = {"hc": 14, "domino": 20, "emea": 34, "fire1": 64, "fire2": 10, "apj": 453, "americas_small": 178}


def load(path: Path) -> dict[str, frozenset[str]]:
    sets: dict[str, set[str]] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sets.setdefault(f"app{int(parts[0]):05d}", set()).add(f"mbx{int(parts[1]):05d}@bench.example")
    return {a: frozenset(s) for a, s in sets.items()}


def write_grants_csv(sets: dict[str, frozenset[str]], path: Path) -> None:
    with path.open("w", newline="") as f:
        f.write("app_id,mailbox\n")
        for app in sorted(sets):
            for m in sorted(sets[app]):
                f.write(f"{app},{m}\n")


def child(path: str) -> None:
    """Solve one dataset in this process and print one JSON line."""
    import resource
    import tracemalloc

    import migrator.planner.exact  # noqa: F401  (imports outside the timing)
    from migrator.planner.cover import solve_cover, verify_cover
    sets = load(Path(path))
    t0, c0 = time.perf_counter(), time.process_time()
    res = solve_cover(sets)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    tracemalloc.start()                 # a second, traced run for the Python-level peak (tracing slows it down)
    solve_cover(sets)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    verify_cover(sets, res)
    per_app = solve_cover(sets, strategy="per-app")
    print(json.dumps({
        "rows": len(sets), "cols": len(set().union(*sets.values())), "grants": sum(map(len, sets.values())),
        "groups": len(res.groups), "lower_bound": res.lower_bound, "optimal": res.optimal,
        "per_app_groups": len(per_app.groups), "seconds": round(secs, 3), "cpu_seconds": round(cpu, 3),
        "traced_peak_mb": round(peak / 2**20, 1),
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "reduced": res.stats.get("reduced"), "bicliques": res.stats["solve"]["bicliques"],
        "ilp": res.stats["solve"]["ilp"],
    }))


def has_plan_cli() -> bool:
    exe = shutil.which("migrator", path=str(Path(sys.executable).parent)) or shutil.which("migrator")
    if not exe:
        return False
    out = subprocess.run([exe, "plan", "--help"], capture_output=True, text=True)
    return out.returncode == 0


def time_cli(csv: Path, out: Path) -> tuple[float, int]:
    exe = shutil.which("migrator", path=str(Path(sys.executable).parent)) or "migrator"
    t0 = time.perf_counter()
    p = subprocess.run([exe, "plan", str(csv), "--out", str(out)], capture_output=True, text=True)
    return time.perf_counter() - t0, p.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="folder with the seven .txt datasets")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rolemining.md",
                    help="markdown table to write")
    ap.add_argument("--no-cli", action="store_true", help="do not time `migrator plan` end to end")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return 0
    cli = not args.no_cli and has_plan_cli()
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="rolemining-") as tmp:
        for name, known in KNOWN.items():
            path = args.data / f"{name}.txt"
            p = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr, file=sys.stderr)
                ok = False
                continue
            r = json.loads(p.stdout.strip().splitlines()[-1])
            r["dataset"], r["known"] = name, known
            csv = Path(tmp) / f"{name}.csv"
            write_grants_csv(load(path), csv)
            if cli:
                r["cli_seconds"], rc = time_cli(csv, Path(tmp) / f"plan-{name}")
                r["cli_rc"] = rc
            ok &= r["groups"] == known and r["lower_bound"] == known
            rows.append(r)
            print(f"{name:15s} groups={r['groups']:4d} known={known:4d} lb={r['lower_bound']:4d} "
                  f"{r['seconds']:.3f}s  maxrss={r['maxrss_mb']}MB", flush=True)
    head = ("| dataset | rows (apps) | cols (mailboxes) | grants | groups | known minimum | lower bound | optimal "
            "| per-app groups | compute s | CPU s | traced peak MB | max RSS MB |"
            + (" `migrator plan` s |" if cli else ""))
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r['dataset']} | {r['rows']:,} | {r['cols']:,} | {r['grants']:,} | {r['groups']} | {r['known']} "
                f"| {r['lower_bound']} | {'yes' if r['optimal'] else 'no'} | {r['per_app_groups']} "
                f"| {r['seconds']:.3f} | {r['cpu_seconds']:.3f} | {r['traced_peak_mb']} | {r['maxrss_mb']} |")
        if cli:
            line += f" {r['cli_seconds']:.2f}{'' if r['cli_rc'] == 0 else ' (exit ' + str(r['cli_rc']) + ')'} |"
        lines.append(line)
    table = "\n".join(lines)
    note = (f"\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores with "
            f"`{Path(sys.executable).name} bench/rolemining.py`. Compute s: `solve_cover()` in-process, wall clock, "
            f"imports and parsing excluded (load average at the end: {os.getloadavg()[0]:.1f}); "
            "CPU s: its process time; "
            "max RSS: the whole child process (Python, numpy, scipy included).\n")
    print("\n" + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Role-mining benchmark (Ene et al. 2008 datasets)\n\n" + table + "\n" + note)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
