"""Benchmark: `migrator plan` end to end on the hard grouping instances, side by side with the HP Labs sets.

For every dataset (`<row> <column>` per line, optionally gzipped; rows = apps, columns = mailboxes): convert it to
a grants CSV in a temp folder, run `migrator plan CSV --time-limit T` as a child process and measure its wall time
and peak RSS (os.wait4's rusage of that child: the whole process, Python and its libraries included). The groups,
lower bound, optimality and what cut the search come from the plan's plan.json; `migrator plan` has already
checked the plan exact before writing it. The planted cover of the synthetic sets (their generator's role count)
is the bound to meet.

    .venv/bin/python bench/hard_planner.py [--hard DIR] [--hp DIR] [--time-limit 30] [--only NAME ...]
                                           [--out bench/results/hard_planner.md]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the team's shared datasets sit next to the repository (or next to the folder of its worktrees)
SHARED = next((p / "shared" / "bench" for p in ROOT.parents if (p / "shared" / "bench").is_dir()),
              ROOT.parent / "shared" / "bench")
HARD, HP = SHARED / "hard", SHARED / "rolemining"
# Upper bounds known by construction (planted roles) and the HP sets' known minimum (Ene et al. 2008).
PLANTED = {"crm_upa_20_200_40_2_5": 20, "crm_upa_40_400_80_4_5": 40, "crm_upa_80_800_160_8_5": 80,
           "crm_upa_100_1000_200_10_5": 100, "syn_200_5000_1000_5_20": 200, "syn_500_10000_2000_10_20": 500}
TRIVIAL = {"fimi_vote": 48, "fimi_primary-tumor": 31, "fimi_chess": 75, "fimi_mushroom": 112}
HP_KNOWN = {"hc": 14, "domino": 20, "emea": 34, "fire1": 64, "fire2": 10, "apj": 453, "americas_small": 178}


def read_pairs(path: Path) -> list[tuple[int, int]]:
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as f:
            text = f.read()
    else:
        text = path.read_text()
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            out.append((int(parts[0]), int(parts[1])))
    return out


def write_csv(pairs: list[tuple[int, int]], path: Path) -> None:
    with path.open("w", newline="") as f:
        f.write("app_id,mailbox\n")
        for r, c in sorted(set(pairs)):
            f.write(f"app{r:05d},mbx{c:05d}@bench.example\n")


def run_plan(csv: Path, out: Path, time_limit: float) -> dict:
    exe = shutil.which("migrator", path=str(Path(sys.executable).parent)) or "migrator"
    t0 = time.perf_counter()
    p = subprocess.Popen([exe, "plan", str(csv), "--out", str(out), "--time-limit", str(time_limit)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = p.stdout.read(), p.stderr.read()
    p.stdout.close()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    r = {"wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024), "rc": p.returncode,
         "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}
    if p.returncode != 0:
        r["error"] = (stderr or stdout)[-500:]
        return r
    meta = json.loads((out / "plan.json").read_text())
    cover = meta["cover"]
    r.update(groups=cover["sets"], lower_bound=cover["lower_bound"], optimal=cover["optimal"],
             cut=cover.get("cut"))
    return r


def datasets(hard: Path, hp: Path, only: list[str]) -> list[tuple[str, str, Path]]:
    out = [("HP", name, hp / f"{name}.txt") for name in HP_KNOWN]
    out += [("hard", p.name[:-len(".txt.gz")], p) for p in sorted(hard.glob("*.txt.gz"))]
    return [d for d in out if d[2].exists() and (not only or d[1] in only)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hard", type=Path, default=HARD, help="folder with the hard *.txt.gz datasets")
    ap.add_argument("--hp", type=Path, default=HP, help="folder with the seven HP Labs *.txt datasets")
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--only", nargs="*", default=[], help="dataset names to run (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "hard_planner.md")
    args = ap.parse_args()
    rows, ok = [], True
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hard-planner-") as tmp:
        for kind, name, path in datasets(args.hard, args.hp, args.only):
            pairs = read_pairs(path)
            csv = Path(tmp) / f"{name}.csv"
            write_csv(pairs, csv)
            la = os.getloadavg()[0]
            r = run_plan(csv, Path(tmp) / f"plan-{name}", args.time_limit)
            shutil.rmtree(Path(tmp) / f"plan-{name}", ignore_errors=True)
            r.update(kind=kind, dataset=name, apps=len({a for a, _ in pairs}), mailboxes=len({b for _, b in pairs}),
                     grants=len(set(pairs)), load=round(la, 1))
            target = PLANTED.get(name) or HP_KNOWN.get(name)
            r["target"] = target
            met = r.get("groups") is not None and (target is None or r["groups"] <= target)
            r["met"] = met and r["wall_s"] <= args.time_limit * 1.5 and r["peak_rss_mb"] <= 2048
            ok &= r["met"]
            rows.append(r)
            print(json.dumps(r), flush=True)
    head = ("| set | dataset | apps | mailboxes | grants | groups | lower bound | optimal | planted / known | "
            "trivial | wall s | CPU s | peak RSS MB | load | what cut the search |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['dataset']} | {r['apps']:,} | {r['mailboxes']:,} | {r['grants']:,} "
            f"| {r.get('groups', 'exit ' + str(r['rc']))} | {r.get('lower_bound', '')} "
            f"| {'yes' if r.get('optimal') else 'no'} | {r['target'] or ''} | {TRIVIAL.get(r['dataset'], '')} "
            f"| {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_mb']} | {r['load']} | {r.get('cut') or ''} |")
    note = (f"\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores with "
            f"`bench/hard_planner.py --time-limit {args.time_limit:g}`: `migrator plan` on a grants CSV, one child "
            f"process per dataset; wall and peak RSS of that whole process (os.wait4). The machine was shared: "
            f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (the load column: "
            f"at each run's start), so wall times are inflated by up to the load / cores ratio; CPU s is the "
            f"process's own CPU time.\n")
    table = "\n".join(lines)
    print("\n" + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Planner on the hard grouping instances and the HP Labs sets\n\n" + table + "\n" + note)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
