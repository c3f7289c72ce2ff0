"""The read-only report of what an Application Access Policy migration would do per app (planner/aap_report.py):
Microsoft's rules over flattened members, statuses, shared sets, reusable flat groups, and "unknown" whenever a part
was not read."""

from __future__ import annotations

from dataclasses import replace

from migrator.inventory.mailaccess import AccessPolicy, MailAccess, MailPermission, ScopeMember
from migrator.model import Group
from migrator.planner.aap_report import (
    DENY,
    MIGRATE,
    NO_PERMISSION,
    TENANT_WIDE,
    UNKNOWN,
    report_apps,
    rows,
    summary,
)

G, X = "Microsoft Graph", "Office 365 Exchange Online"
A, B, C, D, E, F = (f"a000000{i}-0000-0000-0000-000000000000" for i in range(1, 7))
MBX = frozenset(f"{n}@x.test" for n in ("ana", "ben", "chen", "dara", "eli", "fay"))


def m(name: str) -> str:
    return f"{name}@x.test"


def policy(app, right, scope, kind="group"):
    return AccessPolicy(f"t\\{app}:{scope}", app, right, scope, kind)


def perm(app, permission, resource=G):
    return MailPermission(app, "sp-" + app[:8], "App " + app[:8], resource, permission)


def access(**changes) -> MailAccess:
    base = MailAccess(
        policies=(policy(A, "RestrictAccess", "archive@x.test"), policy(B, "RestrictAccess", "archive@x.test"),
                  policy(C, "DenyAccess", "legal@x.test"), policy(D, "RestrictAccess", "archive@x.test"),
                  policy(D, "DenyAccess", m("ben"), "mailbox"), policy(F, "RestrictAccess", "legal@x.test")),
        members=(ScopeMember("archive@x.test", m("ana"), "sales@x.test"), ScopeMember("archive@x.test", m("ben"),
                 "sales@x.test"), ScopeMember("archive@x.test", m("chen")),
                 ScopeMember("legal@x.test", m("eli")), ScopeMember("legal@x.test", m("fay")),
                 ScopeMember(m("ben"), m("ben"))),
        permissions=(perm(A, "Mail.Read"), perm(A, "Mail.ReadBasic.All"), perm(B, "Calendars.ReadWrite"),
                     perm(C, "full_access_as_app", X), perm(D, "Mail.Send"), perm(E, "Contacts.Read")),
        policies_read=True, members_read=True, permissions_read=True)
    return replace(base, **changes)


def by_app(reports):
    return {r.app_id: r for r in reports}


def test_restrict_access_apps_migrate_to_the_flattened_set_per_permission():
    r = by_app(report_apps(access(), MBX))
    assert r[A].status == MIGRATE and r[A].reach == {m("ana"), m("ben"), m("chen")}  # ana, ben nested
    assert [(t.permission, t.role) for t in r[A].targets] == [("Mail.Read", "Application Mail.Read"),
                                                              ("Mail.ReadBasic.All", "Application Mail.ReadBasic")]
    assert r[B].status == MIGRATE and r[B].shared_with == (A,) and r[A].shared_with == (B,)


def test_deny_access_and_policy_less_apps_are_reported_not_migrated():
    r = by_app(report_apps(access(), MBX))
    assert r[C].status == DENY and r[C].reach == MBX - {m("eli"), m("fay")}
    assert r[D].status == DENY and r[D].reach == {m("ana"), m("chen")}  # restricted, minus the denied mailbox
    assert r[E].status == TENANT_WIDE and r[E].reach is None and r[E].advice
    assert r[F].status == NO_PERMISSION and r[F].reach == {m("eli"), m("fay")}
    table = {(row["app_id"], row["permission"]): row for row in rows(report_apps(access(), MBX))}
    assert table[(C, "full_access_as_app")]["role"] == "" and "DenyAccess" in table[(C, "full_access_as_app")]["policies"]
    assert table[(E, "Contacts.Read")]["mailboxes"] == "every mailbox"
    assert table[(A, "Mail.Read")]["role"] == "Application Mail.Read" and table[(A, "Mail.Read")]["mailboxes"] == "3"


def test_an_existing_flat_group_with_exactly_the_set_is_reusable_a_nested_one_is_not():
    flat = Group("archive-flat@x.test", members=frozenset({m("ana"), m("ben"), m("chen")}))
    nested = Group("archive-nested@x.test", members=frozenset({m("ana"), m("ben"), m("chen")}), other_members=1)
    r = by_app(report_apps(access(), MBX, (nested, flat)))
    assert r[A].reuse_group == r[B].reuse_group == "archive-flat@x.test"
    assert by_app(report_apps(access(), MBX, (nested,)))[A].reuse_group == ""


def test_nothing_is_guessed_when_a_part_was_not_read():
    r = by_app(report_apps(access(members_read=False, members=()), MBX))
    assert {r[a].status for a in (A, B, C, D, F)} == {UNKNOWN} and "members" in r[A].why
    assert r[E].status == TENANT_WIDE  # no policy: its members do not matter
    r = by_app(report_apps(access(permissions_read=False, permissions=()), MBX))
    assert {x.status for x in r.values()} == {UNKNOWN} and "Entra permissions" in r[A].why
    r = by_app(report_apps(access(policies_read=False, policies=()), MBX))
    assert r[E].status == UNKNOWN  # without the policies, "no policy" cannot be told from "not read"
    lost = access(policies=(*access().policies, policy(A, "RestrictAccess", "gone-group", "unknown")))
    r = by_app(report_apps(lost, MBX))
    assert r[A].status == UNKNOWN and "gone-group" in r[A].why and r[B].status == MIGRATE


def test_summary_counts():
    s = summary(report_apps(access(), MBX))
    assert s == {"apps": {MIGRATE: 2, DENY: 2, TENANT_WIDE: 1, NO_PERMISSION: 1, UNKNOWN: 0},
                 "role_assignments": 3, "distinct_sets": 1, "reusable_groups": 0}
