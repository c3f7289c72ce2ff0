"""Benchmark: what one `migrator grant`/`revoke` costs on a migrated tenant, per strategy the planner picks.

A synthetic tenant (tests/sandbox_world.py: APPS apps holding SendAs on shared pools of mailboxes) is migrated by
the real planner and executor on the in-process sandbox (waits fast-forwarded on the sandbox clock); then REQUESTS
random grant/revoke requests (1-3 mailboxes each) run the way the CLI runs them (read the tenant, plan, write the
change folder, apply with the journal, drift check, verification, waits). Reported per strategy: requests, tenant
writes the sandbox served (every Exchange cmdlet that changes something; includes writes repeated on a replication
retry), reads, wall seconds (the tenant read twice per request: planning and the drift check), objects created;
and whether every app's reach moved by exactly the request (checked on the sandbox after each request).

    .venv/bin/python bench/change_api.py [--mailboxes 400] [--apps 24] [--requests 24] [--seed 1]
                                         [--out bench/results/change_api.md]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from change_world import migrated, rbac_reach, request

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mailboxes", type=int, default=400)
    ap.add_argument("--apps", type=int, default=24)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        world = migrated(Path(tmp), seed=args.seed, mailboxes=args.mailboxes, apps=args.apps,
                         clusters=max(2, args.apps // 4))
        migrate_s = time.perf_counter() - t0
        try:
            universe = sorted({g.mailbox for g in world.plan.grants})
            reach = {a: set(r) for a, r in rbac_reach(world).items()}
            rows: dict[str, list] = defaultdict(list)
            exact = 0
            for _ in range(args.requests):
                app = rng.choice(sorted(reach))
                kind = rng.choice(["grant", "revoke"])
                pool = sorted(reach[app]) if kind == "revoke" and reach[app] else universe
                wanted = rng.sample(pool, min(len(pool), rng.randint(1, 3)))
                world.sb.requests.clear()
                t = time.perf_counter()
                prepared, result = request(world, kind, app, wanted)
                wall = time.perf_counter() - t
                counts = world.sb.requests.counts()
                change = prepared.change
                strategy = change.strategy if change is not None else "resumed"
                created = (len(change.new_groups) + len(change.new_scopes) + len(change.new_assignments)
                           if change is not None else 0)
                rows[f"{kind}: {strategy}"].append((counts["write"], counts["read"], wall, created,
                                                     len(change.effective) if change else 0))
                assert result is None or result.exit_code == 0, result.outcomes
                reach[app] = reach[app] | set(wanted) if kind == "grant" else reach[app] - set(wanted)
                world.clock.advance(4000)
                exact += {a: set(r) for a, r in rbac_reach(world).items()} == reach
        finally:
            world.close()
    lines = [f"# grant/revoke cost ({args.mailboxes} mailboxes, {args.apps} apps, {args.requests} requests, "
             f"seed {args.seed}; migration {migrate_s:.1f} s)", "",
             "| request: strategy | requests | mailboxes changed | writes (mean) | reads (mean) | objects created "
             "(mean) | wall s (mean) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(rows):
        r = rows[key]
        n = len(r)
        lines.append(f"| {key} | {n} | {sum(x[4] for x in r)} | {sum(x[0] for x in r) / n:.1f} | "
                     f"{sum(x[1] for x in r) / n:.1f} | {sum(x[3] for x in r) / n:.1f} | "
                     f"{sum(x[2] for x in r) / n:.2f} |")
    lines += ["", f"Every app's reach moved by exactly the request after {exact} of {args.requests} requests."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
