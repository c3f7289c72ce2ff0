"""Benchmark: API calls per migrated grant and wall time of `execute --all`, against the writes the plan requires.

A synthetic tenant (tests/sandbox_world.py: APPS apps holding SendAs on shared pools of mailboxes, about GRANTS
grants in all) is served by the sandbox in a child process (so the server does not share the executor's GIL), with
a fixed latency and a throttle budget (token bucket: RATE requests/s per service, BURST deep). The real planner
plans it; the executor runs every batch through the real clients (msal, requests, adaptive limiter).

Reported:
- writes sent vs the lower bound: the writes the plan itself requires (per new group: create + hide + one member
  update per 5,000 members (one Add per member beyond); one per scope, per role assignment, per app cut over, per
  legacy grant removed); target <= 1.1x;
- reads, and all calls per migrated grant;
- wall time, and active time (wall time minus the propagation/token waits, which are set to ~1 s here);
- budget used = answered Exchange requests / (BURST + RATE * active time); target >= 90 %;
- failed operations (items that failed in a step), target 0; and the sandbox's timeline check (gaps, over-grants).

    .venv/bin/python bench/execute_api.py [--grants 5000] [--latency-ms 50] [--rate 100] [--burst 50]
                                          [--concurrency 8] [--read-lag 0] [--read-lag-jitter 0]
                                          [--out bench/results/execute_api.md]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def _serve(fixture: dict, faults: dict, settings: dict, seed: int, run_dir: str, conn) -> None:
    from migrator.sandbox.faults import FaultProfile
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    sb = start_sandbox(fixture, seed=seed, faults=FaultProfile(**faults), settings=SandboxSettings(**settings),
                       run_dir=run_dir)
    conn.send({"profile": str(sb.profile_path)})
    grants = conn.recv()  # the original grants: check the timeline, then stop
    report = sb.state.check(grants)
    conn.send({"gaps": len(report.gaps), "overgrants": len(report.overgrants), "faults": dict(sb.faults.counts),
               "requests": sb.requests.counts()})
    sb.stop()


def lower_bound(plan, chunk: int = 5000) -> dict:
    new = [g for g in plan.groups if g.status == "new"]
    members = sum(min(1, len(g.members)) * math.ceil(min(len(g.members), chunk) / chunk) +
                  max(0, len(g.members) - chunk) for g in new)
    parts = {"groups": 2 * len(new), "members": members, "scopes": len(plan.scopes),
             "assignments": len(plan.assignments),
             "cutover": len({a for b in plan.batches for a in b.apps}),
             "legacy": sum(1 for g in plan.grants if g.action == "migrate")}
    parts["total"] = sum(parts.values())
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grants", type=int, default=5000, help="about this many SendAs grants")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--rate", type=float, default=100.0, help="throttle budget, requests/s per service")
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--read-lag", type=float, default=0.0,
                    help="read-after-write lag, s: after a write, admin reads of the object show its earlier state")
    ap.add_argument("--read-lag-jitter", type=float, default=0.0, help="+/- this many seconds per write (seeded)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from migrator.planner.plan import load_plan
    from sandbox_world import make_fixture, make_plan

    apps = max(2, args.grants // 125)
    fixture, grants = make_fixture(seed=args.seed, mailboxes=max(50, args.grants // 2), apps=apps,
                                   per_app=(80, 170), clusters=max(1, apps // 2))
    tmp = Path(tempfile.mkdtemp(prefix="bench-execute-"))
    t_plan = time.monotonic()
    plan_path = make_plan(fixture, tmp / "plan", pilot=1, batch_size=max(1, apps))
    plan = load_plan(plan_path)
    t_plan = time.monotonic() - t_plan
    bound = lower_bound(plan)

    faults = {"name": "bench", "latency_mean_ms": args.latency_ms, "throttle_rate": args.rate,
              "throttle_burst": args.burst, "read_lag_s": args.read_lag, "read_lag_jitter_s": args.read_lag_jitter}
    sandbox_settings = {"propagation_delay": 0.5, "token_lifetime": 1.0, "sendas_delay": 0.3,
                        "graph_replication_delay": 0.3}
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_serve, args=(fixture, faults, sandbox_settings, args.seed,
                                                                str(tmp / "sb"), child), daemon=True)
    proc.start()
    profile = parent.recv()["profile"]

    run = _execute(plan, Path(profile), args.concurrency)
    parent.send(grants)
    check = parent.recv()
    proc.join(10)

    text = "\n".join(_report_lines(args, fixture, grants, apps, plan, bound, t_plan, run, check))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


def _execute(plan, profile: Path, concurrency: int) -> dict:
    """`execute --all --wait` through the run facade; what the report needs of it."""
    from migrator.executor.context import ExecSettings, Output
    from migrator.executor.session import RunOptions, RunSession, connect

    conn = connect(profile, preflight=False)
    settings = ExecSettings(propagation_wait=0.8, token_lifetime=1.0, token_margin=0.3, readback_spacing=0.4,
                            concurrency=concurrency)
    options = RunOptions(settings, wait=True, output=Output(quiet=True))
    t0, cpu0 = time.monotonic(), time.process_time()
    with RunSession.open(plan, conn, options) as session:
        result = session.execute()
        step_times = [(s.batch, s.step, (s.finished_at or 0) - (s.started_at or 0)) for s in session.journal.steps()
                      if not s.step.endswith("_wait")]
    # result.waited: time actually spent idle in waits (they overlap other batches' work)
    return {"result": result, "waits": result.waited, "step_times": step_times, "conn": conn,
            "wall": time.monotonic() - t0, "cpu": time.process_time() - cpu0}


def _report_lines(args, fixture, grants, apps, plan, bound, t_plan, run, check) -> list[str]:
    from migrator.exchange.access import public_methods
    from migrator.exchange.graph import GraphClient

    result, conn, wall, cpu, waits = run["result"], run["conn"], run["wall"], run["cpu"], run["waits"]
    calls = result.calls
    writes, reads = calls.get("write", 0), calls.get("read", 0)
    migrated = bound["legacy"]
    failed = sum(len(o.failures) for o in result.outcomes)
    active = max(1e-9, wall - waits)
    lim = conn.limiter
    answered = lim.successes
    graph_methods = set(public_methods(GraphClient))  # the executor's calls by method: Graph's are not Exchange's
    exo_calls = sum(v for k, v in calls.items() if k not in ("read", "write") and k not in graph_methods)
    exo_budget = exo_calls / (args.burst + args.rate * active)
    received = check["requests"]

    by_kind = ', '.join(f'{k} {v}' for k, v in bound.items() if k != 'total')
    return [
        f"# execute --all: API calls per migrated grant ({time.strftime('%Y-%m-%d')})",
        "",
        f"Tenant: {len(fixture['mailboxes'])} mailboxes, {apps} apps, {len(grants)} SendAs grants; plan: "
        f"{len(plan.groups)} groups, {len(plan.scopes)} scopes, {len(plan.assignments)} assignments, "
        f"{len(plan.batches)} batches (planned in {t_plan:.1f} s).",
        f"Sandbox: {args.latency_ms:.0f} ms latency, throttle {args.rate:.0f} req/s per service (burst {args.burst}); "
        f"executor concurrency {args.concurrency}"
        + (f"; read-after-write lag {args.read_lag:g} +/- {args.read_lag_jitter:g} s on every admin read."
           if args.read_lag or args.read_lag_jitter else "."),
        "",
        "| measure | value |",
        "|---|---|",
        f"| writes sent | {writes} |",
        f"| writes the plan requires (lower bound) | {bound['total']} ({by_kind}) |",
        f"| writes / lower bound | {writes / bound['total']:.3f}x |",
        f"| reads | {reads} |",
        f"| requests the sandbox received (its request log, retries included): reads / writes | "
        f"{received['read']} / {received['write']} |",
        f"| calls per migrated grant (all / writes) | {(reads + writes) / migrated:.2f} / {writes / migrated:.3f} |",
        f"| wall time | {wall:.1f} s (waits {waits:.1f} s, active {active:.1f} s); executor CPU {cpu:.1f} s |",
        f"| Exchange budget used (Exchange calls / (burst + rate x active)) | {100 * exo_budget:.0f} % |",
        f"| requests answered (Exchange limiter) / 429s received: Exchange, Graph | {answered} / {lim.throttles}, "
        f"{conn.session.limiters['graph'].throttles} (window cuts {lim.cuts}; learnt pace "
        f"{f'{lim.rate:.0f}/s' if lim.rate else 'none'}) |",
        f"| failed operations | {failed} |",
        f"| timeline: gaps / over-grants | {check['gaps']} / {check['overgrants']} |",
        "",
        "Step times (s): " + ", ".join(f"b{b} {n} {t:.1f}" for b, n, t in run["step_times"]),
        "",
        "Calls by method: " + ", ".join(f"{k} {v}" for k, v in sorted(calls.items()) if k not in ("read", "write")),
    ]


if __name__ == "__main__":
    main()
