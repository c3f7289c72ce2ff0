"""Benchmark: what the plan creates for apps moved off Application Access Policies, against the reference approach
of the tools that do it today (EXORBACforAppManagement, azapptoolkit, the gists: one app at a time, one group and
one scope per app, each app's flattened set as the group's members), in the same run, on the same tenants.

Synthetic tenants, seeded: departments of mailboxes; each Graph/EWS app's policy is a RestrictAccess policy on a
group nesting 1-3 department groups (so apps share whole sets, and one app's set is often part of another's), and
holds 1-3 fenced permissions; a share of apps also send as a few mailboxes (SMTP SendAs). Per tenant:
- the planner's counts (groups to create, memberships to write, scopes, role assignments), its wall time, and
  whether it proved the cover minimal (lower bound = cover size);
- the reference's counts for the same Graph/EWS apps: a group, a scope and its memberships per app, one role
  assignment per permission; its SMTP apps would be migrated separately by another tool: counted the same way.

    .venv/bin/python bench/aap_cover.py [--out bench/results/aap_cover.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrator.inventory.mailaccess import AccessPolicy, MailAccess, MailPermission, ScopeMember  # noqa: E402
from migrator.inventory.store import Inventory  # noqa: E402
from migrator.model import AAP_PERMISSIONS, Grant, Group, Mailbox, ServicePrincipal  # noqa: E402
from migrator.planner.build import PlanOptions, build_plan  # noqa: E402
from migrator.planner.plan import KIND_GRAPH_EWS, check_exact  # noqa: E402
from migrator.planner.source import Source  # noqa: E402

D = "@bench.example"
PERMS = [p for p in AAP_PERMISSIONS if p != "full_access_as_app"]


def make_tenant(seed: int, apps: int, departments: int, per_department: int, smtp_share: float,
                reusable: bool = True) -> Inventory:
    """`reusable`: the department groups exist as flat groups (the planner may reuse them); else the policy groups
    hold the mailboxes directly and nothing in the tenant equals a piece of the sets."""
    rng = random.Random(seed)
    mailboxes = [f"u{i:06d}{D}" for i in range(departments * per_department)]
    dept = {d: mailboxes[d * per_department:(d + 1) * per_department] for d in range(departments)}
    groups = [Group(f"dept{d}{D}", f"Dept {d}", f"CN=Dept{d}", members=frozenset(dept[d])) for d in dept] \
        if reusable else []
    policies, members, perms, grants, sps = [], [], [], [], []
    for a in range(apps):
        app = f"00000000-0000-4000-8000-{a:012d}"
        chosen = rng.sample(range(departments), rng.randint(1, 3))
        scope = f"app{a}-scope{D}"
        groups.append(Group(scope, f"App {a} scope", f"CN=App{a}", members=frozenset(), other_members=len(chosen)))
        policies.append(AccessPolicy(f"t\\{app}:S-1;{a}", app, "RestrictAccess", scope, "group"))
        members += [ScopeMember(scope, m, f"dept{d}{D}" if reusable else "") for d in chosen for m in dept[d]]
        for p in rng.sample(PERMS, rng.randint(1, 3)):
            perms.append(MailPermission(app, f"sp{a}", f"App {a}", AAP_PERMISSIONS[p][0], p))
        if rng.random() < smtp_share:
            sps.append(ServicePrincipal(app, f"sp{a}", f"App {a}"))
            grants += [Grant(app, m) for m in rng.sample(mailboxes, rng.randint(1, 4))]
    access = MailAccess(tuple(policies), tuple(members), tuple(perms), True, True, True)
    app_perms = tuple((p.app_id, p.resource, p.permission) for p in perms)
    return Inventory(tuple(sps), tuple(Mailbox(m) for m in mailboxes), tuple(grants), tuple(groups), app_perms,
                     {"format": 1}, app_permissions_known=True, mail_access=access)


def reference_counts(inv: Inventory) -> dict:
    """One group, one scope per app (Graph/EWS and SMTP alike), its whole set as members; an assignment per role."""
    reach = inv.mail_access.scope_mailboxes()
    by_app = {p.app_id: p.scope for p in inv.mail_access.policies}
    roles: dict[str, set[str]] = {}
    for p in inv.mail_access.permissions:
        roles.setdefault(p.app_id, set()).add(AAP_PERMISSIONS[p.permission][1])
    smtp: dict[str, set[str]] = {}
    for g in inv.grants:
        smtp.setdefault(g.app_id, set()).add(g.mailbox)
    groups = len(by_app) + len(smtp)
    return {"groups": groups, "scopes": groups,
            "memberships": sum(len(reach[s]) for s in by_app.values()) + sum(len(s) for s in smtp.values()),
            "assignments": sum(len(r) for r in roles.values()) + len(smtp)}


def run(seed: int, apps: int, departments: int, per_department: int, smtp_share: float, reusable: bool) -> dict:
    inv = make_tenant(seed, apps, departments, per_department, smtp_share, reusable)
    source = Source.from_inventory(inv, "inventory", "bench", "0" * 64)
    started = time.perf_counter()
    plan = build_plan(source, PlanOptions(time_limit=60, batch_size=25))
    seconds = time.perf_counter() - started
    assert check_exact(plan) == [], "inexact plan"
    ours = {"groups": len(plan.groups), "new": sum(1 for g in plan.groups if g.status == "new"),
            "scopes": len(plan.scopes),
            "memberships": sum(len(g.members) for g in plan.groups if g.status == "new"),
            "assignments": len(plan.assignments)}
    return {"reusable": reusable, "apps": apps, "mailboxes": departments * per_department,
            "smtp_apps": len({g.app_id for g in inv.grants}),
            "mail_assignments": sum(1 for a in plan.assignments if a.kind == KIND_GRAPH_EWS),
            "ours": ours, "reference": reference_counts(inv), "seconds": seconds,
            "optimal": bool(plan.meta["cover"]["optimal"]), "lower_bound": plan.meta["cover"]["lower_bound"]}


CASES = [(seed, apps, depts, size, 0.2, reusable) for reusable in (True, False)
         for seed, apps, depts, size in ((1, 50, 20, 50), (2, 200, 40, 100), (3, 1000, 60, 200))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    results = [run(*case) for case in CASES]
    lines = [f"# Graph/EWS apps: the plan's objects against one group per app ({dt.date.today()})", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, load "
             f"{os.getloadavg()[0]:.1f} at the end (other work on the machine). `bench/aap_cover.py`.", "",
             "| department groups | apps (SMTP too) | mailboxes | groups ours (new) / ref "
             "| memberships written ours / ref | scopes ours / ref | assignments ours / ref | cover minimal | plan s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        o, f = r["ours"], r["reference"]
        kind = "flat, reusable" if r["reusable"] else "none"
        lines.append(f"| {kind} | {r['apps']} ({r['smtp_apps']}) | {r['mailboxes']} | {o['groups']} ({o['new']}) / "
                     f"{f['groups']} | "
                     f"{o['memberships']} / {f['memberships']} | {o['scopes']} / {f['scopes']} | "
                     f"{o['assignments']} / {f['assignments']} | "
                     f"{'yes' if r['optimal'] else 'no'} (bound {r['lower_bound']}) | {r['seconds']:.2f} |")
    lines += ["", "Groups: ours counts the department groups it reuses (flat, exactly a piece of some sets) and, in "
              "brackets, those it creates; the reference creates one flattened group per app (a policy group that "
              "nests others cannot serve an RBAC scope). Memberships written: the members of the groups created.", "",
              "Assignments are equal by construction (one per app and role either way); the cover shares groups "
              "and scopes between apps with equal sets or sets made of the same pieces, which is where the "
              "reference pays per app."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
