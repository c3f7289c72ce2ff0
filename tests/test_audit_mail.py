"""`migrator audit` over a batch that moved Graph/EWS apps off their access policies (issue 16): clean right after
the batch; a consent granted again (with the policy gone: every mailbox), a Graph/EWS role assignment removed, a
member added to a group a Graph/EWS role uses, each reported with its effect. Through the real clients."""

from __future__ import annotations

import pytest

from aap_tenant import ARCHIVER
from migrator.audit import run_audit
from migrator.audit.compare import MAIL_ASSIGNMENT_MISSING, MAIL_CONSENT_BACK, MEMBER_ADDED
from migrator.planner.plan import load_plan
from test_executor_aap import _regrant, run, template, world  # noqa: F401 (the fixtures)

pytestmark = pytest.mark.integration


def test_audit_watches_the_moved_graph_ews_apps(world):  # noqa: F811
    sb, conn, plan_path, clock = world
    assert run(world).outcomes[0].status == "done"
    clean = run_audit([plan_path], sb.profile_path)
    assert [f for f in clean.findings if f.apps and ARCHIVER in f.apps] == [], clean.findings

    plan = load_plan(plan_path)
    mail = [a for a in plan.assignments if a.app_id == ARCHIVER and a.kind == "graph-ews"]
    scope = next(s for s in plan.scopes if s.key == mail[0].scope)
    group = next(g for g in plan.groups if g.key == scope.groups[0])
    outsider = next(m for m in ("dan.wu@contoso.com", "erin.li@contoso.com") if m not in group.members)
    _regrant(conn, "Mail.Read")
    conn.exo.remove_role_assignment(mail[0].name)
    conn.exo.add_group_member(group.address or group.name, outsider)
    clock.sleep(10)
    found = {(f.kind, f.effect) for f in run_audit([plan_path], sb.profile_path).findings if ARCHIVER in f.apps}
    assert (MAIL_CONSENT_BACK, "over-grant") in found  # its policy is gone: the consent reaches every mailbox
    assert (MAIL_ASSIGNMENT_MISSING, "under-grant") in found
    assert (MEMBER_ADDED, "over-grant") in found
