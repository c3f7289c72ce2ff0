"""The planner's Graph/EWS track (issue 16): apps whose Entra mail permissions are fenced by RestrictAccess policies
get `Application <permission>` roles scoped to exactly what their policies allow today, from the same minimal cover
as the SMTP apps; DenyAccess, policy-less and not-fully-read apps are reported in plan.json, never planned."""

from __future__ import annotations

import dataclasses
import json

import pytest

from migrator.errors import PlanError
from migrator.inventory.mailaccess import AccessPolicy, MailAccess, MailPermission, ScopeMember
from migrator.inventory.store import Inventory
from migrator.model import Grant, Group, Mailbox, Right, ServicePrincipal
from migrator.planner.build import PlanOptions, build_plan
from migrator.planner.plan import (
    KIND_GRAPH_EWS,
    KIND_SMTP,
    check_exact,
    load_plan,
    write_plan,
)
from migrator.planner.source import Source

D = "@fabrikam.example"
SMTP_APP = "a0000000-0000-0000-0000-000000000001"  # SendAs on m1, m2 (no Graph)
ARCHIVER = "a0000000-0000-0000-0000-000000000002"  # Graph Mail.Read + Mail.Send, RestrictAccess nested: m1..m4
TWIN = "a0000000-0000-0000-0000-000000000003"  # Graph Calendars.Read, RestrictAccess on another group: m1..m4 too
MIXED = "a0000000-0000-0000-0000-000000000004"  # SendAs m5, m6 and EWS full_access_as_app on m5..m6 (flat group)
DENIED = "a0000000-0000-0000-0000-000000000005"  # Graph Mail.Read, DenyAccess on m1
OPEN = "a0000000-0000-0000-0000-000000000006"  # Graph Contacts.Read, no policy: tenant-wide
EMPTY = "a0000000-0000-0000-0000-000000000007"  # policy, no fenced permission
GRAPH, EXO = "Microsoft Graph", "Office 365 Exchange Online"


def mb(n: int) -> str:
    return f"m{n}{D}"


def _perm(app: str, resource: str, permission: str) -> MailPermission:
    return MailPermission(app, f"sp-{app[-1]}", f"app {app[-1]}", resource, permission)


def inventory(*, members_read: bool = True, reuse_flat: bool = False) -> Inventory:
    mailboxes = tuple(Mailbox(mb(i)) for i in range(1, 9))
    sps = tuple(ServicePrincipal(a, f"sp-{a[-1]}", f"app {a[-1]}") for a in (SMTP_APP, MIXED))
    grants = (Grant(SMTP_APP, mb(1)), Grant(SMTP_APP, mb(2)), Grant(MIXED, mb(5)), Grant(MIXED, mb(6)))
    groups = [Group(f"archive{D}", "Archive", "CN=Archive", members=frozenset({mb(3), mb(4)}), other_members=1),
              Group(f"sales{D}", "Sales", "CN=Sales", members=frozenset({mb(1), mb(2)})),
              Group(f"twin{D}", "Twin", "CN=Twin", members=frozenset({mb(i) for i in (1, 2, 3, 4)})),
              Group(f"ews{D}", "Ews", "CN=Ews", members=frozenset({mb(5), mb(6)}))]
    if reuse_flat:  # an existing flat group holding exactly the archiver's flattened set
        groups.append(Group(f"flat{D}", "Flat", "CN=Flat", members=frozenset({mb(i) for i in (1, 2, 3, 4)})))
    policies = (
        AccessPolicy("pol-archiver", ARCHIVER, "RestrictAccess", f"archive{D}", "group"),
        AccessPolicy("pol-twin", TWIN, "RestrictAccess", f"twin{D}", "group"),
        AccessPolicy("pol-mixed", MIXED, "RestrictAccess", f"ews{D}", "group"),
        AccessPolicy("pol-denied", DENIED, "DenyAccess", mb(1), "mailbox"),
        AccessPolicy("pol-empty", EMPTY, "RestrictAccess", f"sales{D}", "group"),
    )
    members = tuple(
        [ScopeMember(f"archive{D}", mb(3)), ScopeMember(f"archive{D}", mb(4)),
         ScopeMember(f"archive{D}", mb(1), f"sales{D}"), ScopeMember(f"archive{D}", mb(2), f"sales{D}"),
         ScopeMember(f"ews{D}", mb(5)), ScopeMember(f"ews{D}", mb(6)), ScopeMember(mb(1), mb(1)),
         ScopeMember(f"sales{D}", mb(1)), ScopeMember(f"sales{D}", mb(2))]
        + [ScopeMember(f"twin{D}", mb(i)) for i in (1, 2, 3, 4)])
    perms = (_perm(ARCHIVER, GRAPH, "Mail.Read"), _perm(ARCHIVER, GRAPH, "Mail.Send"),
             _perm(TWIN, GRAPH, "Calendars.Read"), _perm(MIXED, EXO, "full_access_as_app"),
             _perm(DENIED, GRAPH, "Mail.Read"), _perm(OPEN, GRAPH, "Contacts.Read"))
    access = MailAccess(policies, members if members_read else (), perms, True, members_read, True)
    app_perms = tuple((p.app_id, p.resource, p.permission) for p in perms) + ((SMTP_APP, EXO, "SMTP.SendAsApp"),)
    return Inventory(sps, mailboxes, grants, tuple(groups), app_perms, {"format": 1}, app_permissions_known=True,
                     mail_access=access)


def plan_of(inv: Inventory, **options):
    source = Source.from_inventory(inv, "inventory", "inventory/fabrikam", "0" * 64)
    return build_plan(source, PlanOptions(time_limit=10, **{"pilot": 0, "batch_size": 10, **options}))


def reach(plan, app: str, role: str) -> set[str]:
    scopes = {s.key: s for s in plan.scopes}
    out: set[str] = set()
    for a in plan.assignments:
        if a.app_id == app and a.role == role:
            for key in scopes[a.scope].groups:
                out |= plan.group(key).members
    return out


def test_restrict_access_apps_get_their_roles_on_exactly_the_flattened_set():
    plan = plan_of(inventory())
    assert check_exact(plan) == []
    four = {mb(i) for i in (1, 2, 3, 4)}
    assert reach(plan, ARCHIVER, "Application Mail.Read") == four  # nested Sales members included
    assert reach(plan, ARCHIVER, "Application Mail.Send") == four
    assert reach(plan, TWIN, "Application Calendars.Read") == four
    assert reach(plan, MIXED, "Application EWS.AccessAsApp") == {mb(5), mb(6)}
    assert reach(plan, SMTP_APP, "Application SMTP.SendAsApp") == {mb(1), mb(2)}
    kinds = {(a.app_id, a.role): a.kind for a in plan.assignments}
    assert kinds[(MIXED, "Application SMTP.SendAsApp")] == KIND_SMTP
    assert kinds[(MIXED, "Application EWS.AccessAsApp")] == KIND_GRAPH_EWS
    assert {(m.app_id, m.permission, m.role) for m in plan.mail_access} == {
        (ARCHIVER, "Mail.Read", "Application Mail.Read"), (ARCHIVER, "Mail.Send", "Application Mail.Send"),
        (TWIN, "Calendars.Read", "Application Calendars.Read"),
        (MIXED, "full_access_as_app", "Application EWS.AccessAsApp")}
    assert {p.identity for p in plan.policies} == {"pol-archiver", "pol-twin", "pol-mixed"}
    assert plan.mail_reach[ARCHIVER] == four


def test_equal_sets_share_the_cover_and_an_app_moves_in_one_batch():
    plan = plan_of(inventory(), batch_size=1)
    scope_of = {(a.app_id, a.role): a.scope for a in plan.assignments}
    # the archiver's and its twin's equal sets: one scope, one cover; the SMTP app's {m1, m2} is part of it
    assert scope_of[(ARCHIVER, "Application Mail.Read")] == scope_of[(TWIN, "Application Calendars.Read")]
    assert len(plan.groups) == plan.meta["cover"]["sets"]
    assert plan.meta["cover"]["sets"] == 3  # {m1,m2}, {m3,m4}, {m5,m6}: the SMTP and mail sets share pieces
    batch_of = {app: b.number for b in plan.batches for app in b.apps}
    assert {a.batch for a in plan.assignments if a.app_id == MIXED} == {batch_of[MIXED]}
    assert {p.batch for p in plan.policies if p.app_id == MIXED} == {batch_of[MIXED]}
    assert set(batch_of) == {SMTP_APP, ARCHIVER, TWIN, MIXED}


def test_an_existing_flat_group_equal_to_the_set_is_reused():
    plan = plan_of(inventory(reuse_flat=True))
    reused = [g for g in plan.groups if g.status == "reuse"]
    # every set has an exact flat group: the SMTP app's, the EWS app's and the archiver's (a nested group, Archive,
    # never: RBAC would not see its nested members)
    assert {g.address for g in reused} == {f"sales{D}", f"ews{D}", f"flat{D}"}
    scopes = {s.key: s for s in plan.scopes}
    a = next(a for a in plan.assignments if a.app_id == ARCHIVER)
    assert scopes[a.scope].filter == "MemberOfGroup -eq 'CN=Flat'"


def test_deny_tenant_wide_and_empty_apps_are_reported_not_planned():
    plan = plan_of(inventory())
    planned = {a.app_id for a in plan.assignments}
    assert not planned & {DENIED, OPEN, EMPTY}
    apps = {a["app_id"]: a for a in plan.meta["mail_access"]["apps"]}
    assert (apps[DENIED]["status"], apps[DENIED]["planned"]) == ("deny", False)
    assert (apps[OPEN]["status"], apps[OPEN]["planned"]) == ("tenant_wide", False)
    assert (apps[EMPTY]["status"], apps[EMPTY]["planned"]) == ("no_permission", False)
    assert apps[ARCHIVER]["planned"] and apps[ARCHIVER]["batch"] == 1
    assert apps[ARCHIVER]["roles"] == ["Application Mail.Read", "Application Mail.Send"]
    assert "DenyAccess" in apps[DENIED]["note"] or "Deny" in apps[DENIED]["note"]


def test_policy_members_not_read_plans_no_mail_app_and_says_why():
    plan = plan_of(inventory(members_read=False))
    assert not plan.mail_access and not plan.policies
    assert all(a.kind == KIND_SMTP for a in plan.assignments)
    apps = {a["app_id"]: a for a in plan.meta["mail_access"]["apps"]}
    assert apps[ARCHIVER]["status"] == "unknown" and "members" in apps[ARCHIVER]["note"]


def test_a_migrated_graph_mail_send_is_not_flagged_as_unscoped():
    inv = inventory()
    inv = dataclasses.replace(inv, grants=inv.grants + (Grant(ARCHIVER, mb(3), Right.SEND_AS),),
                              service_principals=inv.service_principals + (ServicePrincipal(ARCHIVER, "sp-2", "a"),))
    plan = plan_of(inv)
    assert ARCHIVER not in {f["app_id"] for f in plan.meta["flagged_apps"]}


def test_round_trip_and_tampering_is_refused(tmp_path):
    plan = plan_of(inventory())
    out = write_plan(plan, tmp_path / "plan")
    back = load_plan(out)
    assert back.mail_access == plan.mail_access and back.policies == plan.policies
    assert back.mail_reach == plan.mail_reach
    assert [a.kind for a in back.assignments] == [a.kind for a in plan.assignments]
    meta = json.loads((out / "plan.json").read_text(encoding="utf-8"))
    assert meta["counts"]["mail_apps"] == 3 and meta["counts"]["access_policies"] == 3
    # an edited reach is caught by the file hash, with the row
    path = out / "mail_reach.csv"
    path.write_text(path.read_text(encoding="utf-8").replace(mb(4), mb(7), 1), encoding="utf-8", newline="")
    with pytest.raises(PlanError, match=r"mail_reach\.csv"):
        load_plan(out)


@pytest.mark.parametrize("edit, message", [
    (lambda p: dataclasses.replace(p, mail_reach={**p.mail_reach, ARCHIVER: p.mail_reach[ARCHIVER] - {mb(1)}}),
     "would gain 'application mail.read'"),
    (lambda p: dataclasses.replace(p, assignments=tuple(a for a in p.assignments
                                                        if a.role != "Application Mail.Send")),
     "would lose 'application mail.send'"),
    (lambda p: dataclasses.replace(p, policies=tuple(dataclasses.replace(x, access_right="DenyAccess")
                                                      for x in p.policies)),
     "only RestrictAccess"),
    (lambda p: dataclasses.replace(p, mail_access=tuple(dataclasses.replace(m, role="Application Mail.ReadWrite")
                                                         if m.permission == "Mail.Read" else m
                                                         for m in p.mail_access)),
     "Mail.Read is served by 'Application Mail.Read'"),
    (lambda p: dataclasses.replace(p, mail_access=tuple(dataclasses.replace(m, batch=m.batch + 1)
                                                         for m in p.mail_access)),
     "Graph/EWS rows are not all in batch"),
])
def test_check_exact_catches_an_inexact_mail_track(edit, message):
    problems = check_exact(edit(plan_of(inventory())))
    assert any(message in p for p in problems), problems


def test_the_powershell_export_refuses_a_batch_moving_graph_ews_access():
    from migrator.powershell.batch import batch_slice

    plan = plan_of(inventory())
    with pytest.raises(PlanError, match="does not do; run this batch with `migrator execute`"):
        batch_slice(plan, 1)


def test_a_group_a_graph_ews_role_uses_is_no_apps_own_group_for_grant():
    """`migrator grant` adds a mailbox to an app's own group: a group its EWS role is scoped on too would widen
    that role, so the helpdesk table shows it as shared."""
    from migrator.report.model import helpdesk_rows

    plan = plan_of(inventory())
    rows = {r.app_id: r for r in helpdesk_rows(plan, {})}
    assert rows[MIXED].own_groups == () and rows[MIXED].shared_groups == ("Ews",)
    assert rows[SMTP_APP].own_groups == ("Sales",)  # no Graph/EWS role on it
    assert ARCHIVER not in rows  # no SMTP assignment: nothing `migrator grant` would do for it
