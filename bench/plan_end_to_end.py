"""Benchmark: `migrator plan` end to end on the synthetic tenant of bench/scale_planner.py (200k mailboxes, 5k apps,
about 1M SendAs grants), as a user runs it: a fresh process, start-up, reading the input, the exact cover, reuse,
names, scopes, batches, the exactness check and writing the plan folder. Then `migrator show` on that plan
(which re-verifies every hash and re-checks exactness).

Inputs: a bare grants CSV, and an inventory folder of the same tenant (written with inventory.store).
Wall seconds, CPU seconds (user + system) and peak RSS come from os.wait4 on the child process.

    .venv/bin/python bench/plan_end_to_end.py [--seed 1] [--out bench/results/plan_end_to_end.md]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from scale_planner import make_tenant  # noqa: E402  (the same seeded instance as the cover's scale bench)


def write_grants_csv(sets: dict[str, frozenset[str]], path: Path) -> int:
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["app_id", "mailbox"])
        for app in sorted(sets):
            for m in sorted(sets[app]):
                w.writerow([app, m])
                rows += 1
    return rows


def write_inventory_folder(sets: dict[str, frozenset[str]], path: Path) -> None:
    from migrator.inventory.store import Inventory, write_inventory
    from migrator.model import Grant, Mailbox, ServicePrincipal
    apps = sorted(sets)
    sps = tuple(ServicePrincipal(a, f"{i:08x}-0000-4000-8000-{i:012x}", f"App {i}") for i, a in enumerate(apps))
    mailboxes = tuple(Mailbox(m) for m in sorted({m for s in sets.values() for m in s}))
    grants = tuple(Grant(a, m) for a in apps for m in sorted(sets[a]))
    write_inventory(Inventory(sps, mailboxes, grants, manifest={"format": 1, "source": "exports"}), path)


def run(args: list[str]) -> dict:
    exe = str(Path(sys.executable).parent / "migrator")
    start = time.perf_counter()
    proc = subprocess.Popen([exe, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"migrator {' '.join(args)} failed:\n{out}\n{err}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1, help="seed of the synthetic tenant")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "plan_end_to_end.md",
                    help="Markdown table to write")
    args = ap.parse_args()
    sets = make_tenant(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        grants = write_grants_csv(sets, tmp / "grants.csv")
        write_inventory_folder(sets, tmp / "inventory")
        for label, source in (("grants CSV", tmp / "grants.csv"), ("inventory folder", tmp / "inventory")):
            out = tmp / f"plan-{source.name}"
            plan = run(["plan", str(source), "--out", str(out)])
            show = run(["show", str(out)])
            counts = json.loads((out / "plan.json").read_text())["counts"]
            rows.append((label, grants, counts, plan, show))
            print(label, plan, show, flush=True)
    load = os.getloadavg()[0]
    lines = [
        "# `migrator plan` end to end (synthetic tenant)",
        "",
        "| input | mailboxes | apps | grants | groups | lower bound | optimal | scopes | assignments | batches "
        "| plan wall s | plan CPU s | plan peak RSS MB | show wall s | show peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, grants, c, plan, show in rows:
        lines.append(f"| {label} | {c['mailboxes']:,} | {c['apps']:,} | {grants:,} | {c['groups']:,} | "
                     f"{c['lower_bound']:,} | {'yes' if c['optimal'] else 'no'} | {c['scopes']:,} | "
                     f"{c['assignments']:,} | {c['batches']:,} | {plan['wall']:.1f} | {plan['cpu']:.1f} | "
                     f"{plan['rss_mb']:.0f} | {show['wall']:.1f} | {show['rss_mb']:.0f} |")
    lines += ["", f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores "
                  f"(1-minute load average {load:.1f} at the end: the machine is shared, so wall time varies), "
                  f"seed {args.seed}, `bench/plan_end_to_end.py`. Each figure is one fresh `migrator` process "
                  "(start-up included); defaults: strategy minimal, pilot 1, batch size 25."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
