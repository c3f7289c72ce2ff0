"""A plan for the AAP tenant of aap_tenant.py, built by hand (the test-side builder of the executor's Graph/EWS
tests): batch 1 moves Billing Mailer's SendAs (adele, bob) to Application SMTP.SendAsApp and Mail Archiver's Graph
Mail.Read and Mail.Send, fenced by a RestrictAccess policy on a nested group (adele and bob through Sales Senders,
carol directly), to Application Mail.Read / Mail.Send on a new flat group of the same three mailboxes. EWS Sync
(DenyAccess) and Room Booker (no policy: tenant-wide) are not in the plan.
"""

from __future__ import annotations

from pathlib import Path

from aap_tenant import ARCHIVE_SET, ARCHIVER
from migrator.model import RBAC_ROLE_SMTP_SEND_AS
from migrator.planner import opath
from migrator.planner.plan import (
    KIND_GRAPH_EWS,
    Plan,
    PlanAssignment,
    PlanBatch,
    PlanGrant,
    PlanGroup,
    PlanMailAccess,
    PlanPolicy,
    PlanScope,
    write_plan,
)
from sandbox_tenant import BILLING

GRAPH = "Microsoft Graph"
BILLING_SET = ("adele.vance@contoso.com", "bob.obrien@contoso.com")


def archiver_policy_identity(state) -> str:
    """The Identity Get-ApplicationAccessPolicy shows for Mail Archiver's policy (SID and object id are the
    sandbox's)."""
    rows = state.invoke("Get-ApplicationAccessPolicy", {}, caller=state.admin_caller())
    return next(r["Identity"] for r in rows if r["AppId"] == ARCHIVER)


def aap_plan(state, out: Path) -> Path:
    grants = tuple(PlanGrant(BILLING, "Billing Mailer", m, "SendAs", "migrate", "", 1) for m in BILLING_SET)
    groups = (PlanGroup("G0001", "RBAC SendAs Billing", "new", "", frozenset(BILLING_SET), "rbac-sendas-billing",
                        "rbac-sendas-billing@contoso.com", 1, 1),
              PlanGroup("G0002", "RBAC Mail Archiver", "new", "", frozenset(ARCHIVE_SET), "rbac-mail-archiver",
                        "rbac-mail-archiver@contoso.com", 1, 1))
    scopes = (PlanScope("S0001", "RBAC Scope Billing", opath.member_of_new("G0001"), ("G0001",), "group", (), 1),
              PlanScope("S0002", "RBAC Scope Mail Archiver", opath.member_of_new("G0002"), ("G0002",), "group", (),
                        1))
    assignments = (
        PlanAssignment("A00001", BILLING, "Billing Mailer", RBAC_ROLE_SMTP_SEND_AS, "S0001", 1, "RBAC Billing"),
        PlanAssignment("A00002", ARCHIVER, "Mail Archiver", "Application Mail.Read", "S0002", 1,
                       "RBAC Mail Archiver Mail.Read", KIND_GRAPH_EWS),
        PlanAssignment("A00003", ARCHIVER, "Mail Archiver", "Application Mail.Send", "S0002", 1,
                       "RBAC Mail Archiver Mail.Send", KIND_GRAPH_EWS))
    batches = (PlanBatch(1, (BILLING, ARCHIVER), len(grants), mailboxes=len(BILLING_SET) + len(ARCHIVE_SET), new_groups=2, scopes=2,
                         assignments=3),)
    mail_access = tuple(PlanMailAccess(ARCHIVER, "Mail Archiver", perm, GRAPH, f"Application {perm}", 1)
                        for perm in ("Mail.Read", "Mail.Send"))
    policies = (PlanPolicy(archiver_policy_identity(state), ARCHIVER, "Mail Archiver", "RestrictAccess",
                           "archive-scope@contoso.com", 1),)
    plan = Plan({"format": 1, "role": RBAC_ROLE_SMTP_SEND_AS}, grants, groups, scopes, assignments, batches,
                mail_access=mail_access, mail_reach={ARCHIVER: frozenset(ARCHIVE_SET)}, policies=policies)
    return write_plan(plan, out)
