"""Benchmark: API calls and wall time of the live inventory vs. the naive per-mailbox loop, in the same run.

A synthetic tenant (sandbox/synth.py) is served by the sandbox in a child process (so the server does not share
the client's GIL) with a fixed latency and a throttle budget (token bucket: RATE requests/s, BURST deep). Then:

1. live:  migrator's inventory strategy (inventory/tenant.py: full scans + group-member fan-out + $batch);
2. naive: list the mailboxes, then one Get-RecipientPermission and one Get-MailboxPermission per mailbox,
          fanned out through the same session, retries and adaptive limiter.

Both must give the same grants. Reported per run: API calls (HTTP requests, retries included), wall time, 429s and
concurrency answers received, failed reads, and the share of the throttle budget used:
    budget used = answered requests / (BURST + RATE * wall time)
i.e. how much of what the tenant would have served in that time was actually asked for and served.

    .venv/bin/python bench/inventory_api.py [--mailboxes 20000] [--latency-ms 50] [--rate 200] [--burst 50]
                                            [--out bench/results/inventory_api.md]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _serve(fixture_path: str, faults: dict, seed: int, trustee_display: str, conn) -> None:
    """Child process: serve the fixture until told to stop; then report the faults that fired."""
    from migrator.sandbox.faults import FaultProfile
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    sb = start_sandbox(fixture_path, seed=seed, faults=FaultProfile(**faults),
                       settings=SandboxSettings(trustee_display=trustee_display))
    conn.send({"profile": str(sb.profile_path)})
    conn.recv()  # stop
    counts = dict(sb.faults.counts)
    sb.stop()
    conn.send(counts)


def make_fixture(mailboxes: int, apps: int, seed: int, path: Path) -> dict:
    from migrator.sandbox import synth

    data = synth.generate(mailboxes=mailboxes, apps=apps, seed=seed)
    path.write_text(json.dumps(data), encoding="utf-8")
    return data


def run_live(profile, workers: int, fullaccess: str = "scan") -> dict:
    from migrator.inventory.tenant import Clients, api_summary, inventory_from_readings, read_tenant

    clients = Clients(profile)
    t0 = time.monotonic()
    readings = read_tenant(clients, workers=workers, progress=False, fullaccess=fullaccess)
    wall = time.monotonic() - t0
    clients.close()
    api = api_summary(clients)
    inv = inventory_from_readings(readings, profile, api=api, allow_unknown_trustees=True)
    name = "live (concurrent scans + fan-out)" if fullaccess == "scan" else "live, --fullaccess per-mailbox"
    res = _result(name, clients, wall, inv)
    res["timings"] = readings.timings
    return res


def run_naive(profile, workers: int) -> dict:
    from migrator.exchange.ratelimit import fan_out
    from migrator.inventory.tenant import Clients, Readings, api_summary, inventory_from_readings

    clients = Clients(profile)
    exo = clients.exo
    t0 = time.monotonic()
    r = Readings(fullaccess_strategy="per-mailbox (naive)")
    r.service_principals = exo.get_service_principals()
    r.mailboxes = exo.get_mailboxes(["Name", "Alias", "DisplayName", "PrimarySmtpAddress", "UserPrincipalName",
                                     "ExternalDirectoryObjectId", "Guid", "DistinguishedName",
                                     "RecipientTypeDetails"])
    idents = [m["ExternalDirectoryObjectId"] or m["PrimarySmtpAddress"] for m in r.mailboxes]

    def both(ident):
        return exo.get_recipient_permissions(ident), exo.get_mailbox_permissions(ident)

    pairs = fan_out(both, idents, workers=workers)
    wall = time.monotonic() - t0
    r.recipient_permissions = [row for rp, _ in pairs for row in rp]
    r.mailbox_permissions = [row for _, mp_ in pairs for row in mp_]
    clients.close()
    inv = inventory_from_readings(r, profile, api=api_summary(clients), allow_unknown_trustees=True)
    return _result("naive (2 queries per mailbox)", clients, wall, inv)


GRAPH_OPS = ("GET /", "POST /", "PATCH /", "DELETE /")  # Graph operations are named by method and path


def _result(name, clients, wall, inv) -> dict:
    s = clients.session
    lim = clients.limiter.stats()
    calls = sum(s.calls.values())
    graph_calls = sum(n for op, n in s.calls.items() if op.startswith(GRAPH_OPS))
    return {"exchange_calls": calls - graph_calls, "graph_calls": graph_calls,
            "name": name, "calls": calls, "by_operation": dict(s.calls), "wall_s": round(wall, 2),
            "throttled": lim["throttles"], "retries": sum(s.retries.values()), "failed": sum(s.failures.values()),
            "answered": calls - lim["throttles"], "limiter": lim,
            "grants": sorted((g.app_id, g.mailbox, g.right.value) for g in inv.grants)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mailboxes", type=int, default=20000)
    ap.add_argument("--apps", type=int, default=400)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--rate", type=float, default=200.0, help="throttle budget, requests/s")
    ap.add_argument("--burst", type=int, default=50)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--trustee-display", choices=["display_name", "object_id"], default="object_id",
                    help="how the sandbox shows an SP trustee (UNVERIFIED live; docs/exchange.md §3). The synthetic "
                         "tenant gives some apps the same display name; the naive loop cannot tell those apart")
    ap.add_argument("--per-mailbox-run", action=argparse.BooleanOptionalAction, default=True,
                    help="also run the live inventory with --fullaccess per-mailbox (the fallback when a scan "
                         "cannot be trusted): a queue of per-mailbox reads, budget-bound like the naive loop")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "inventory_api.md")
    args = ap.parse_args()

    from migrator.exchange.profile import load_profile

    faults = {"name": "bench", "latency_mean_ms": args.latency_ms, "throttle_rate": args.rate,
              "throttle_burst": args.burst, "throttle_no_retry_after": 0.2, "throttle_concurrency_text": 0.1}
    with tempfile.TemporaryDirectory(prefix="migrator-bench-") as tmp:
        fixture = Path(tmp) / "tenant.json"
        t0 = time.monotonic()
        make_fixture(args.mailboxes, args.apps, args.seed, fixture)
        print(f"synthetic tenant: {args.mailboxes} mailboxes, {args.apps} apps ({time.monotonic() - t0:.1f} s)",
              file=sys.stderr)
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(str(fixture), faults, args.seed, args.trustee_display, child),
                           daemon=True)
        proc.start()
        try:
            profile = load_profile(parent.recv()["profile"])
            results = []
            runners = [run_live, run_naive]
            if args.per_mailbox_run:
                runners.append(lambda p, w: run_live(p, w, fullaccess="per-mailbox"))
            for runner in runners:
                time.sleep(args.burst / args.rate + 0.5)  # let the bucket refill: each run starts on a full budget
                res = runner(profile, args.workers)
                res["budget_used"] = round(res["answered"] / (args.burst + args.rate * res["wall_s"]), 3)
                # Exchange alone (its own bucket; Graph has another): the budget the target is about
                res["exchange_budget_used"] = round((res["exchange_calls"] - res["throttled"])
                                                    / (args.burst + args.rate * res["wall_s"]), 3)
                results.append(res)
                print(f"{res['name']}: {res['calls']} calls, {res['wall_s']} s, {res['throttled']} throttled, "
                      f"{res['failed']} failed, budget used {res['budget_used']:.0%} "
                      f"(Exchange {res['exchange_budget_used']:.0%})", file=sys.stderr)
            parent.send("stop")
            fired = parent.recv()
        finally:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    live, naive = results[:2]
    same = all(r["grants"] == naive["grants"] for r in results)
    ratio = naive["calls"] / max(1, live["calls"])
    lines = [
        "# Live inventory: API calls and wall time vs. the naive per-mailbox loop",
        "",
        f"Synthetic tenant: {args.mailboxes} mailboxes, {args.apps} apps, {len(live['grants'])} grants; sandbox in a "
        f"child process with {args.latency_ms:g} ms latency and a throttle budget of {args.rate:g} requests/s "
        f"(burst {args.burst}), trustees shown by {args.trustee_display}. Command: `.venv/bin/python "
        f"bench/inventory_api.py --mailboxes {args.mailboxes} --apps {args.apps} --latency-ms {args.latency_ms:g} "
        f"--rate {args.rate:g} --burst {args.burst} --trustee-display {args.trustee_display}`.",
        "",
        "| run | API calls | wall time (s) | 429/concurrency answers | failed reads | throttle budget used "
        "| Exchange budget used |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['name']} | {r['calls']} | {r['wall_s']} | {r['throttled']} | {r['failed']} | "
                     f"{r['budget_used']:.0%} | {r['exchange_budget_used']:.0%} |")
    timings = live["timings"]
    longest = max(timings, key=lambda k: timings[k][1] - timings[k][0])
    chain = timings[longest][1] - timings[longest][0]
    lines += ["", "Budget used = answered requests / (burst + rate x wall time); Exchange budget used counts the "
                  "Exchange requests only (Graph has its own bucket). 429/concurrency answers: Exchange's.",
              "", "**What the 90% target means here.** A budget share is a measure of how well a client keeps a "
                  "*queue* of work flowing: the naive loop has 40k independent queries queued and its adaptive "
                  "limiter keeps the tenant busy at the figure above. The live inventory has no such queue: it "
                  "needs a few hundred calls, and most are pages of a few whole-tenant scans; the pages of one "
                  "scan are strictly sequential (each @odata.nextLink arrives with the previous page), so its wall "
                  "time cannot drop below its longest scan, whatever the budget. All its independent reads already "
                  "run concurrently (listings, group-member fan-out, scan checks, Graph $batch chunks), so the run "
                  f"ends about when its longest read does: `{longest}`, {chain:.2f} s of the {live['wall_s']} s. "
                  f"Using 90% of the budget in that time would mean sending about "
                  f"{int(0.9 * (args.burst + args.rate * live['wall_s']))} requests instead of {live['calls']}: "
                  "more calls for the same answer, i.e. a worse inventory. The reads that bound it: the longest "
                  "Exchange listing (then the mailbox index and the scan checks, which need the whole mailbox "
                  "list), and `app_permissions`, Graph $batch calls whose 20 inner requests each take a token of "
                  "Graph's own bucket (about 21 per call, so ~20 calls for 400 SPs already exceed its burst) and "
                  "whose throttled inner requests wait out a Retry-After of whole seconds. So the 90% target is "
                  "met where there is a queue of work to keep the budget busy (the naive loop, and the live "
                  "inventory's per-mailbox fallback, same fan-out and limiter, in the table); for the scan "
                  "strategy the figures of merit are calls and wall time.",
              "", "Reads of the live run (start, end in seconds from its start; concurrent): "
                  + json.dumps(timings, sort_keys=True),
              "", f"Calls: the naive loop makes {ratio:.1f}x as many as the live inventory. "
                  f"Same grants from every run: {same}. "
                  f"Faults fired by the sandbox: {json.dumps(fired, sort_keys=True)}.",
              "", "Calls by operation (live): " + json.dumps(live["by_operation"], sort_keys=True),
              "", "Limiter at the end (naive): " + json.dumps(naive["limiter"], sort_keys=True), ""]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    ok = same and ratio >= 10 and all(r["failed"] == 0 for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
