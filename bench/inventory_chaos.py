"""Benchmark: the live inventory under the sandbox's `chaos` fault profile on 10 synthetic tenants (issue 11).

Each seed makes a synthetic tenant (sandbox/synth.py) of 2,500-5,000 mailboxes and 270-1,200 apps, serves it in a
child process (so the server does not share the client's GIL) with the `chaos` profile (latency, Exchange and
Graph token buckets with sustained Graph throttling, 429s with and without Retry-After, the concurrency text,
transient 500/503, dropped connections, NUL-byte 403s labelled gzip), and runs `migrator inventory` against it
(the real clients: msal, requests, tenacity, the adaptive limiters). The inventory must equal the fixture's ground
truth exactly (every (app, mailbox, right)); a failed run is reported with its error.

    .venv/bin/python bench/inventory_chaos.py [--seeds 10] [--first-seed 1] [--out bench/results/inventory_chaos.md]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _serve(fixture_path: str, seed: int, conn) -> None:
    """Child process: serve the fixture with the chaos profile until told to stop; then report the faults."""
    from migrator.sandbox.server import start_sandbox

    sb = start_sandbox(fixture_path, seed=seed, faults="chaos")
    conn.send({"profile": str(sb.profile_path)})
    conn.recv()  # stop
    counts = dict(sb.faults.counts)
    sb.stop()
    conn.send(counts)


def shape(seed: int) -> tuple[int, int]:
    """(mailboxes, apps) of a seed: spread over the issue's ranges, the extremes included."""
    rng = random.Random(f"inventory-chaos-{seed}")
    return rng.randint(2500, 5000), rng.choice([270, 1200, rng.randint(270, 1200)])


def run_seed(seed: int, tmp: Path) -> dict:
    from migrator.exchange.profile import load_profile
    from migrator.inventory.tenant import live_inventory
    from migrator.sandbox import synth
    from migrator.sandbox.truth import ground_truth

    mailboxes, apps = shape(seed)
    data = synth.generate(mailboxes=mailboxes, apps=apps, seed=seed)
    fixture = tmp / f"tenant-{seed}.json"
    fixture.write_text(json.dumps(data), encoding="utf-8")
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(str(fixture), 300 + seed, child), daemon=True)
    proc.start()
    row: dict = {"seed": seed, "mailboxes": mailboxes, "apps": apps}
    try:
        profile = load_profile(parent.recv()["profile"])
        t0 = time.monotonic()
        try:
            inv = live_inventory(profile.path, tmp / f"inv-{seed}", progress=False, allow_unknown_trustees=True)
        except Exception as exc:
            row.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300], wall_s=round(time.monotonic() - t0, 1))
        else:
            got = {(g.app_id, g.mailbox, g.right.value) for g in inv.grants}
            truth = ground_truth(data)
            api = inv.manifest["api"]
            row.update(ok=got == truth, wall_s=round(time.monotonic() - t0, 1), grants=len(got),
                       missing=len(truth - got), extra=len(got - truth), calls=api["total"],
                       retries=api["retries"], graph=api["limiter_graph"], exchange=api["limiter"],
                       retry_kinds=api.get("retry_kinds", {}))
        parent.send("stop")
        row["faults"] = parent.recv()
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.terminate()
    return row


def report(rows: list[dict], command: str) -> str:
    ok = sum(1 for r in rows if r["ok"])
    lines = [
        "# Live inventory under the `chaos` fault profile",
        "",
        f"{ok} of {len(rows)} runs exact (inventory == the fixture's ground truth), {len(rows) - ok} failed or "
        f"inexact. Command: `{command}`. Sandbox in a child process; the machine was shared with other work, so "
        "wall times are indicative only.",
        "",
        "| seed | mailboxes | apps | exact | grants | wall (s) | HTTP requests | retries | retries by kind | "
        "Graph 429s (pace at end) | NUL 403s sent | error |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in rows:
        g = r.get("graph") or {}
        kinds = ", ".join(f"{k} {v}" for k, v in sorted((r.get("retry_kinds") or {}).items()))
        lines.append(f"| {r['seed']} | {r['mailboxes']} | {r['apps']} | {'yes' if r['ok'] else 'NO'} | "
                     f"{r.get('grants', '')} | {r['wall_s']} | {r.get('calls', '')} | {r.get('retries', '')} | "
                     f"{kinds} | {g.get('throttles', '')} ({g.get('rate')}) | {r['faults'].get('nul403', 0)} | "
                     f"{r.get('error', '')} |")
    lines += ["", "Faults fired per run (sandbox counts): "
              + "; ".join(f"seed {r['seed']}: {json.dumps(r['faults'], sort_keys=True)}" for r in rows), ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inventory_chaos.md")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="migrator-chaos-") as tmp:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            row = run_seed(seed, Path(tmp))
            rows.append(row)
            print(f"seed {seed}: {row['mailboxes']} mailboxes, {row['apps']} apps: "
                  f"{'exact' if row['ok'] else 'FAILED ' + row.get('error', 'inexact')} in {row['wall_s']} s",
                  file=sys.stderr, flush=True)
    text = report(rows, f".venv/bin/python bench/inventory_chaos.py --seeds {args.seeds} "
                        f"--first-seed {args.first_seed}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
