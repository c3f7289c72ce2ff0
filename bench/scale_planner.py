"""Scale benchmark: the exact cover on a synthetic tenant shaped like real ones.

200,000 mailboxes in departments and teams; 5,000 apps, about 1,000,000 SendAs grants:
- most apps hold one to three teams, often with a few extra people or a few people missing;
- many hold a handful of shared mailboxes (invoices@, noreply@ ...), drawn from a common pool;
- some are copies of another app (the same integration registered twice: test and prod);
- some hold a whole department, and a few very large ones hold most of the tenant.
The generator is seeded, so every run solves the same instance. The solve runs in a fresh subprocess so that its
peak RSS (resource.getrusage maxrss) is its own; seconds exclude building the instance.

    .venv/bin/python bench/scale_planner.py [--seed 1] [--noise 0.3 --max-changes 3] [--time-limit 25] [--cli]
                                            [--out bench/results/scale_planner.md]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_tenant(seed: int = 1, mailboxes: int = 200_000, apps: int = 5_000, *, with_existing: bool = False,
                noise: float = 0.3, max_changes: int = 3):
    """The app -> mailbox sets; with `with_existing`, also the tenant's existing groups (one per team and per
    department), which the planner may reuse: (sets, existing)."""
    rnd = random.Random(seed)
    names = [f"user{i:06d}@contoso.example" for i in range(mailboxes)]
    # departments of uneven size, split into teams of 10-150 people
    n_dept = 24
    cuts = sorted(rnd.sample(range(1, mailboxes), n_dept - 1))
    depts = [names[a:b] for a, b in zip([0] + cuts, cuts + [mailboxes])]
    teams: list[list[str]] = []
    team_dept: list[int] = []
    for d, members in enumerate(depts):
        i = 0
        while i < len(members):
            size = rnd.randint(10, 150)
            teams.append(members[i:i + size])
            team_dept.append(d)
            i += size
    shared_pool = rnd.sample(names, 3_000)            # shared mailboxes many apps send as
    sets: dict[str, frozenset[str]] = {}

    def app_id(i: int) -> str:
        return f"{rnd.getrandbits(32):08x}-{i:04x}-4000-8000-{i:012x}"

    small: list[frozenset[str]] = []
    for i in range(apps):
        kind = rnd.random()
        if i < 4:                                      # the very large ones
            take = rnd.sample(range(n_dept), [n_dept, 12, 6, 3][i])
            s = {m for d in take for m in depts[d]}
        elif kind < 0.004:                             # a whole department (or two)
            s = {m for d in rnd.sample(range(n_dept), rnd.choice([1, 1, 2])) for m in depts[d]}
        elif kind < 0.10 and small:                    # a copy of an earlier app (test/prod twins)
            s = set(rnd.choice(small))
        elif kind < 0.35:                              # a handful of shared mailboxes
            s = set(rnd.sample(shared_pool, rnd.randint(1, 12)))
        else:                                          # one to three teams of one department, with noise
            t0 = rnd.randrange(len(teams))
            same = [t for t in range(max(0, t0 - 6), min(len(teams), t0 + 7)) if team_dept[t] == team_dept[t0]]
            s = {m for t in rnd.sample(same, min(len(same), rnd.choice([1, 1, 2, 3]))) for m in teams[t]}
            if rnd.random() < noise:                   # a few people missing (left, or excluded on purpose)
                s -= set(rnd.sample(sorted(s), min(len(s) - 1, rnd.randint(1, max_changes))))
            if rnd.random() < noise:                   # a few extra people or shared mailboxes
                s |= set(rnd.sample(names, rnd.randint(1, max_changes))) | set(rnd.sample(shared_pool,
                                                                                          rnd.randint(0, 2)))
        fs = frozenset(s)
        if len(fs) < 2_000:
            small.append(fs)
        sets[app_id(i)] = fs
    if with_existing:
        return sets, [frozenset(t) for t in teams] + [frozenset(d) for d in depts]
    return sets


def child(seed: int, time_limit: float, noise: float, max_changes: int) -> None:
    import resource

    import migrator.planner.exact  # noqa: F401  (imports outside the timing)
    from migrator.planner.cover import solve_cover
    t0 = time.perf_counter()
    sets, existing = make_tenant(seed, with_existing=True, noise=noise, max_changes=max_changes)
    build = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0, c0 = time.perf_counter(), time.process_time()
    res = solve_cover(sets, time_limit=time_limit)
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    reuse = solve_cover(sets, time_limit=time_limit, preferred=existing)
    reuse_secs = time.perf_counter() - t1
    existing_set = set(existing)
    t1 = time.perf_counter()
    per_app = solve_cover(sets, strategy="per-app", time_limit=time_limit)
    per_app_secs = time.perf_counter() - t1
    st = res.stats
    print(json.dumps({
        "seed": seed, "noise": noise, "max_changes": max_changes,
        "apps": st["apps"], "mailboxes": st["mailboxes"], "grants": st["grants"],
        "distinct_app_sets": st["distinct_app_sets"], "mailbox_classes": st["mailbox_classes"],
        "reduced": st["reduced"], "groups": len(res.groups), "lower_bound": res.lower_bound,
        "optimal": res.optimal, "gap": len(res.groups) - res.lower_bound, "per_app_groups": len(per_app.groups),
        "assignments": sum(len(v) for v in res.app_groups.values()),
        "seconds": round(secs, 2), "cpu_seconds": round(cpu, 2), "load_average": round(os.getloadavg()[0], 1),
        "with_preferred_seconds": round(reuse_secs, 2),
        "existing_groups": len(existing), "reused_without_preference": sum(g in existing_set for g in res.groups),
        "reused_with_preference": sum(g in existing_set for g in reuse.groups),
        "groups_with_preference": len(reuse.groups), "preferred_stats": reuse.stats.get("preferred"),
        "per_app_seconds": round(per_app_secs, 2), "build_seconds": round(build, 2),
        "rss_after_build_mb": round(rss_before, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "solve": {k: v for k, v in st["solve"].items() if k != "ilp"}, "ilp": st["solve"]["ilp"][:5],
        "reductions": st["reductions"],
    }))


def time_cli(seed: int, noise: float, max_changes: int) -> dict:
    import resource
    import shutil
    import tempfile
    sets = make_tenant(seed, noise=noise, max_changes=max_changes)
    exe = shutil.which("migrator", path=str(Path(sys.executable).parent)) or "migrator"
    with tempfile.TemporaryDirectory(prefix="scale-plan-") as tmp:
        csv = Path(tmp) / "grants.csv"
        with csv.open("w") as f:
            f.write("app_id,mailbox\n")
            for app in sorted(sets):
                f.writelines(f"{app},{m}\n" for m in sorted(sets[app]))
        t0 = time.perf_counter()
        p = subprocess.run([exe, "plan", str(csv), "--out", str(Path(tmp) / "plan")], capture_output=True, text=True)
        secs = time.perf_counter() - t0
        if p.returncode:
            print(p.stderr[-2000:], file=sys.stderr)
        return {"seconds": round(secs, 2), "exit_code": p.returncode, "csv_mb": round(csv.stat().st_size / 2**20, 1),
                "maxrss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1, help="generator seed")
    ap.add_argument("--noise", type=float, default=0.3,
                    help="chance that a team app lacks a few members, and again that it has a few extra mailboxes")
    ap.add_argument("--max-changes", type=int, default=3, help="at most this many members missing / extra")
    ap.add_argument("--time-limit", type=float, default=25.0, help="solver time limit (s)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale_planner.md",
                    help="markdown table to write")
    ap.add_argument("--cli", action="store_true",
                    help="also write the grants CSV and time `migrator plan CSV --out TMP` end to end")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.seed, args.time_limit, args.noise, args.max_changes)
        return 0
    p = subprocess.run([sys.executable, __file__, "--child", "--seed", str(args.seed), "--noise", str(args.noise),
                        "--max-changes", str(args.max_changes),
                        "--time-limit", str(args.time_limit)], capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stderr, file=sys.stderr)
        return 1
    r = json.loads(p.stdout.strip().splitlines()[-1])
    if args.cli:
        r["cli"] = time_cli(args.seed, args.noise, args.max_changes)
    print(json.dumps(r, indent=1))
    table = ("| mailboxes | apps | grants | distinct app sets | reduced | groups | lower bound | optimal | per-app "
             "groups | role assignments | solve s (CPU s) | peak RSS MB "
             "| existing groups reused (plain / preferred) |\n"
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
             f"| {r['mailboxes']:,} | {r['apps']:,} | {r['grants']:,} | {r['distinct_app_sets']:,} "
             f"| {r['reduced'][0]:,} x {r['reduced'][1]:,} | {r['groups']:,} | {r['lower_bound']:,} "
             f"| {'yes' if r['optimal'] else 'no (gap ' + str(r['gap']) + ')'} | {r['per_app_groups']:,} "
             f"| {r['assignments']:,} | {r['seconds']:.2f} ({r['cpu_seconds']:.2f}) | {r['peak_rss_mb']:,.0f} "
             f"| {r['reused_without_preference']:,} / {r['reused_with_preference']:,} "
             f"(of {r['existing_groups']:,}; {r['with_preferred_seconds']:.2f} s) |")
    note = (f"\nMeasured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {os.cpu_count()} cores, seed "
            f"{r['seed']}, noise {r['noise']} (max {r['max_changes']} changes), load average {r['load_average']}, "
            "`bench/scale_planner.py`. Solve s: `solve_cover()` (minimal strategy) including building the matrix, "
            "the exact verification and the per-app assignment; the instance generator is excluded. Peak RSS: the "
            "whole process (generator, both strategies). Existing groups: one per team and per department, passed "
            "as `preferred`; the count is the groups of the cover that equal one of them.\n")
    if "cli" in r:
        c = r["cli"]
        note += (f"\n`migrator plan` on the same tenant as a grants CSV ({c['csv_mb']} MB), end to end in a subprocess "
                 f"(start-up, CSV parsing, cover, batches, names, writing and re-checking the plan): "
                 f"{c['seconds']:.1f} s, peak RSS {c['maxrss_mb']:,.0f} MB, exit code {c['exit_code']}.\n")
    print("\n" + table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("# Scale benchmark (synthetic tenant)\n\n" + table + "\n" + note)
    args.out.with_suffix(".json").write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
