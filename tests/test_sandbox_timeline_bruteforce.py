"""The timeline checker against brute force: random change sequences (SendAs, FullAccess, RBAC scope, the
SMTP.SendAsApp and IMAP.AccessAsApp claims), then every instant on a fine grid is judged by asking the data plane
directly with every token the app may hold, for SMTP and for IMAP/POP. Both must agree, and both kinds of gap fail
the report."""

from __future__ import annotations

import random

import pytest

from migrator.model import EXCHANGE_ONLINE_APP_ID
from sandbox_tenant import BILLING, CRM, make_state, run
from test_sandbox_timeline import cut_over

DELAY, LIFE, STEP = 100.0, 200.0, 10.0  # every change happens on a multiple of STEP
MAILBOXES = ["adele.vance", "bob.obrien", "carol.diaz", "dan.wu", "erin.li"]
APPS = [BILLING, CRM]


def regrant(state, app_id, value="SMTP.SendAsApp"):
    admin = state.admin_caller("https://graph.microsoft.com")
    sp = state.graph("get_service_principal_by_app_id", app_id, caller=admin)
    exo = state.graph("get_service_principal_by_app_id", EXCHANGE_ONLINE_APP_ID, caller=admin)
    role = next(r["id"] for r in exo["appRoles"] if r["value"] == value)
    if not any(a["appRoleId"] == role for a in state.graph("list_app_role_assignments", sp["id"], caller=admin)):
        state.graph("grant_app_role", sp["id"], {"principalId": sp["id"], "resourceId": exo["id"],
                                                 "appRoleId": role}, caller=admin)


def revoke(state, app_id, value):
    admin = state.admin_caller("https://graph.microsoft.com")
    sp = state.graph("get_service_principal_by_app_id", app_id, caller=admin)
    exo = state.graph("get_service_principal_by_app_id", EXCHANGE_ONLINE_APP_ID, caller=admin)
    role = next(r["id"] for r in exo["appRoles"] if r["value"] == value)
    for a in state.graph("list_app_role_assignments", sp["id"], caller=admin):
        if a["appRoleId"] == role:
            state.graph("delete_app_role_assignment", sp["id"], a["id"], caller=admin)


def random_history(state, rng: random.Random, steps: int) -> None:
    for app in APPS:  # one group + scope per app, initially empty, so membership drives RBAC
        name = f"G-{app[:4]}"
        dn = run(state, "New-DistributionGroup", Name=name, Type="Security")[0]["DistinguishedName"]
        run(state, "New-ManagementScope", Name=name, RecipientRestrictionFilter=f"MemberOfGroup -eq '{dn}'")
    for _ in range(steps):
        state.clock.advance(STEP * rng.randint(0, 8))
        app, mbx = rng.choice(APPS), rng.choice(MAILBOXES)
        group = f"G-{app[:4]}"
        op = rng.randrange(10)
        try:
            if op == 0:
                run(state, "Add-RecipientPermission", Identity=mbx, Trustee=app, AccessRights="SendAs")
            elif op == 1:
                run(state, "Remove-RecipientPermission", Identity=mbx, Trustee=app, AccessRights="SendAs")
            elif op == 2:
                run(state, "Add-DistributionGroupMember", Identity=group, Member=mbx)
            elif op == 3:
                run(state, "Remove-DistributionGroupMember", Identity=group, Member=mbx)
            elif op == 4:
                run(state, "New-ManagementRoleAssignment", Name=f"A-{app[:4]}", Role="Application SMTP.SendAsApp",
                    App=app, CustomResourceScope=group)
            elif op == 5:
                run(state, "Remove-ManagementRoleAssignment", Identity=f"A-{app[:4]}")
            elif op == 6:
                run(state, "Add-MailboxPermission", Identity=mbx, User=app, AccessRights="FullAccess")
            elif op == 7:
                run(state, "Remove-MailboxPermission", Identity=mbx, User=app, AccessRights="FullAccess")
            elif op == 8:
                (revoke(state, app, "IMAP.AccessAsApp") if rng.random() < 0.5 else
                 regrant(state, app, "IMAP.AccessAsApp"))
            else:
                (cut_over if rng.random() < 0.5 else regrant)(state, app)
        except Exception as exc:
            # CmdletError: an invalid random step; GraphError: a delete of an assignment a stale read still showed
            if type(exc).__name__ not in ("CmdletError", "GraphError"):
                raise
    state.clock.advance(DELAY + LIFE + 50.0 + STEP)


def brute_force(state, original, end: float, *, imap: bool = False):
    """{(app, mailbox): set of grid instants (t + STEP/2) with a gap (original) or an over-grant (others)}, for
    SMTP or, with `imap`, for IMAP/POP."""
    tl = state.timeline
    bad: dict = {}
    t = tl.start + STEP / 2
    while t < end:
        for app in APPS:
            # token issue instants: every half-step in [t - LIFE, t] (claim changes only on whole steps)
            issued = [t - LIFE + k * STEP / 2 for k in range(int(LIFE / (STEP / 2)) + 1)]
            claims = {(tl.imap_claim_at if imap else tl.claim_seen_at)(app, s) for s in issued}
            for name in MAILBOXES:
                mbx = f"{name}@contoso.com"
                if imap:
                    served = [tl.can_open(app, mbx, t, token_imap=c) for c in claims]
                else:
                    served = [tl.can_send(app, mbx, t, token_claim=c) for c in claims]
                if (app, mbx) in original:
                    if not all(served):
                        bad.setdefault((app, mbx), set()).add(t)
                elif any(served) or (not imap and tl.rbac_at(app, mbx, t)):
                    bad.setdefault((app, mbx), set()).add(t)
        t += STEP
    return bad


def from_report(report, end: float, *, imap: bool = False) -> dict:
    bad: dict = {}
    for iv in (report.imap_gaps + report.imap_overgrants) if imap else (report.gaps + report.overgrants):
        t = iv.start + STEP / 2
        stop = iv.end if iv.end is not None else end
        while t < stop:
            bad.setdefault((iv.app_id, iv.mailbox), set()).add(t)
            t += STEP
    return bad


@pytest.mark.parametrize("sendas_delay,graph_delay", [(0.0, 0.0), (50.0, 0.0), (0.0, 40.0), (50.0, 40.0)])
@pytest.mark.parametrize("rule", ["documented", "union"])
@pytest.mark.parametrize("seed", range(6))
def test_checker_agrees_with_brute_force(rule, seed, sendas_delay, graph_delay):
    # at the start: BILLING sends as adele (SendAs and FullAccess) and bob (SendAs) and reads adele by IMAP;
    # CRM sends as carol (SendAs) and erin (FullAccess only)
    state = make_state(propagation_delay=DELAY, token_lifetime=LIFE, claim_rule=rule, sendas_delay=sendas_delay,
                       graph_replication_delay=graph_delay, extra_mailbox_permissions=[("adele.vance@contoso.com", BILLING), ("erin.li@contoso.com", CRM)],
                       extra_roles=[(BILLING, "IMAP.AccessAsApp")])
    original = {(BILLING, "adele.vance@contoso.com"), (BILLING, "bob.obrien@contoso.com"),
                (CRM, "carol.diaz@contoso.com"), (CRM, "erin.li@contoso.com")}
    original_imap = {(BILLING, "adele.vance@contoso.com")}
    random_history(state, random.Random(seed), steps=30)
    end = state.clock.now()
    report = state.check(original, original_imap=original_imap)
    assert report.unserved_at_start == []
    assert from_report(report, end) == brute_force(state, original, end)
    assert from_report(report, end, imap=True) == brute_force(state, original_imap, end, imap=True)
    assert report.ok == (not from_report(report, end) and not from_report(report, end, imap=True))
