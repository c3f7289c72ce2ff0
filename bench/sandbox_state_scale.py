"""Scale of the sandbox tenant state (no HTTP): synthetic tenant generation, fixture load, typical cmdlet calls
and the timeline checker, for a few tenant sizes. Bounded: each size runs a fixed number of calls.

    .venv/bin/python bench/sandbox_state_scale.py [--sizes 10000:200,100000:2000]
"""

from __future__ import annotations

import argparse
import time

from migrator.sandbox import Clock, TenantState
from migrator.sandbox.synth import generate


def rate(fn, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t)


def run(mailboxes: int, apps: int, seed: int) -> dict:
    t0 = time.perf_counter()
    data = generate(mailboxes=mailboxes, apps=apps, seed=seed)
    t1 = time.perf_counter()
    state = TenantState.from_fixture(data, clock=Clock.manual())
    t2 = time.perf_counter()
    caller = state.admin_caller()
    boxes = sorted(r.primary_smtp for r in state.recipients.values() if r.kind == "mailbox")
    app = next(a for a in sorted(state.apps.values(), key=lambda a: a.app_id) if a.exchange_pointer)

    def invoke(cmdlet, **params):
        return state.invoke(cmdlet, params, caller=caller)

    out = {"mailboxes": mailboxes, "apps": apps, "grants": len(data["recipient_permissions"]),
           "generate_s": t1 - t0, "load_s": t2 - t1}
    out["get_mailbox_per_s"] = rate(lambda i: invoke("Get-Mailbox", Identity=boxes[i * 7919 % len(boxes)]), 2000)
    out["get_recipient_permission_per_s"] = rate(
        lambda i: invoke("Get-RecipientPermission", Identity=boxes[i * 7919 % len(boxes)]), 2000)
    had = state.effective_sendas(app)
    fresh = [b for b in boxes if b not in had][:500]  # leave the app's real grants alone
    out["add_remove_sendas_per_s"] = 2 * rate(lambda i: (
        invoke("Add-RecipientPermission", Identity=fresh[i], Trustee=app.app_id, AccessRights="SendAs"),
        invoke("Remove-RecipientPermission", Identity=fresh[i], Trustee=app.app_id, AccessRights="SendAs")),
        len(fresh))
    t3 = time.perf_counter()
    rows = invoke("Get-RecipientPermission", ResultSize="Unlimited")
    out["full_permission_scan_s"] = time.perf_counter() - t3
    out["scan_rows"] = len(rows)
    original = {(a.app_id, m) for a in state.apps.values() for m in state.effective_sendas(a)}
    t4 = time.perf_counter()
    report = state.check(original)
    out["check_s"] = time.perf_counter() - t4
    out["check_pairs"] = len(original)
    out["check_ok"] = report.ok
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000:200,100000:2000", help="mailboxes:apps pairs, comma-separated")
    ap.add_argument("--seed", type=int, default=1, help="synthetic tenant seed")
    args = ap.parse_args()
    print("| mailboxes | apps | permission rows | generate | load | Get-Mailbox -Identity | "
          "Get-RecipientPermission -Identity | Add/Remove SendAs | full scan | checker |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for spec in args.sizes.split(","):
        m, a = (int(x) for x in spec.split(":"))
        r = run(m, a, args.seed)
        print(f"| {r['mailboxes']:,} | {r['apps']:,} | {r['grants']:,} | {r['generate_s']:.1f} s | {r['load_s']:.1f} s"
              f" | {r['get_mailbox_per_s']:,.0f}/s | {r['get_recipient_permission_per_s']:,.0f}/s"
              f" | {r['add_remove_sendas_per_s']:,.0f}/s"
              f" | {r['full_permission_scan_s']:.1f} s ({r['scan_rows']:,} rows)"
              f" | {r['check_s']:.1f} s ({r['check_pairs']:,} pairs) |", flush=True)


if __name__ == "__main__":
    main()
