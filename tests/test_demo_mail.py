"""`migrator demo`'s Graph/EWS apps (demo_mail.py): the tenant they make reaches what the module says, and the demo's
checks fail when a migrated app's reach or configuration is wrong, when a reported app is touched, and when the
policy goes before the consent (the timeline's per-permission over-grant)."""

from __future__ import annotations

import pytest

from migrator.demo_mail import (
    ARCHIVE_DIRECT,
    ARCHIVER,
    CRM_SYNC,
    EWS_SYNC,
    NESTED,
    MailWatch,
    describe_plan,
    timeline_problems,
    with_mail_apps,
)
from migrator.planner.plan import Plan, PlanMailAccess
from migrator.sandbox.clock import Clock
from migrator.sandbox.server import DEFAULT_FIXTURE, load_fixture_data, start_sandbox
from migrator.sandbox.settings import SandboxSettings

GRAPH = "Microsoft Graph"


@pytest.fixture
def sb(tmp_path):
    settings = SandboxSettings(propagation_delay=1.0, token_lifetime=2.0, graph_replication_delay=0.0,
                               access_policy_delay=0.0, sendas_delay=0.0)
    with start_sandbox(with_mail_apps(load_fixture_data(DEFAULT_FIXTURE)), settings=settings, clock=Clock.manual(),
                       run_dir=tmp_path / "sb", smtp=False) as sandbox:
        yield sandbox


def legal_members() -> set[str]:
    fixture = load_fixture_data(DEFAULT_FIXTURE)
    return set(next(g for g in fixture["groups"] if g["primary_smtp"] == NESTED)["members"])


def plan_moving_the_archiver(batch: int = 3) -> Plan:
    rows = tuple(PlanMailAccess(ARCHIVER, "Contoso Mail Archiver", perm, GRAPH, f"Application {perm}", batch)
                 for perm in ("Mail.Read", "Mail.Send"))
    return Plan({}, (), (), (), (), (), mail_access=rows)


def invoke(sb, cmdlet: str, **params):
    with sb.app.lock:
        return sb.state.invoke(cmdlet, params, caller=sb.state.admin_caller())


def test_the_tenant_reaches_what_the_module_says(sb):
    reach = sb.mail_access()
    archive = set(ARCHIVE_DIRECT) | legal_members()  # the nested group's members, flattened
    assert len(archive) == 11
    assert reach[ARCHIVER] == {"Mail.Read": archive, "Mail.Send": archive}
    assert len(reach[EWS_SYNC]["full_access_as_app"]) == 300 - len(legal_members())  # DenyAccess on the group
    assert reach[CRM_SYNC] == {"Mail.Send": None}  # no policy: every mailbox
    assert sb.mail_config([ARCHIVER, EWS_SYNC, CRM_SYNC]) == {
        ARCHIVER: {"consents": ["Mail.Read", "Mail.Send"], "policies": [("RestrictAccess", "archive-scope@contoso.com")]},
        EWS_SYNC: {"consents": ["full_access_as_app"], "policies": [("DenyAccess", NESTED)]},
        CRM_SYNC: {"consents": ["Mail.Send"], "policies": []}}
    assert timeline_problems(sb.check()) == []


def test_the_checks_catch_a_policy_removed_before_the_consent(sb):
    watch = MailWatch(sb)
    plan = plan_moving_the_archiver()
    # not migrated yet (batch 3 not applied): as at the start
    assert watch.migrated_problems(sb, plan, applied=set()) == []
    policy = next(r["Identity"] for r in invoke(sb, "Get-ApplicationAccessPolicy") if r["AppId"] == ARCHIVER)
    invoke(sb, "Remove-ApplicationAccessPolicy", Identity=policy)  # the wrong order: the consent is still there
    problems = watch.migrated_problems(sb, plan, applied={3})
    assert problems[:2] == ["Contoso Mail Archiver Mail.Read: reaches every mailbox(es), had 11",
                            "Contoso Mail Archiver Mail.Send: reaches every mailbox(es), had 11"]
    assert "consents ['Mail.Read', 'Mail.Send'] and policies []" in problems[2]
    over = timeline_problems(sb.check())
    assert over and all(p.startswith(f"over-grant: app {ARCHIVER} Mail.") for p in over)
    assert watch.untouched_problems(sb) == []  # the other apps were not touched


def test_the_checks_catch_a_reported_app_touched(sb):
    watch = MailWatch(sb)
    policy = next(r["Identity"] for r in invoke(sb, "Get-ApplicationAccessPolicy") if r["AppId"] == EWS_SYNC)
    invoke(sb, "Remove-ApplicationAccessPolicy", Identity=policy)
    problems = watch.untouched_problems(sb)
    assert problems[0].startswith(f"app {EWS_SYNC}: {{'consents': ['full_access_as_app'], 'policies': []}} now")
    assert problems[1] == f"app {EWS_SYNC}: reaches {{'full_access_as_app': None}} now"


def test_the_plan_line_names_moved_and_reported_apps():
    plan = plan_moving_the_archiver()
    plan = Plan({"mail_access": {"apps": [
        {"app_id": ARCHIVER, "app_name": "Contoso Mail Archiver", "status": "migrate", "planned": True},
        {"app_id": EWS_SYNC, "app_name": "Contoso EWS Sync", "status": "deny", "planned": False},
        {"app_id": CRM_SYNC, "app_name": "CRM Sync Service", "status": "tenant_wide", "planned": False}]}},
        (), (), (), (), (), mail_access=plan.mail_access, mail_reach={ARCHIVER: frozenset({"a@x", "b@x"})})
    assert describe_plan(plan) == (
        "Graph/EWS: Contoso Mail Archiver (2 mailboxes, batch 3) -> 0 Application role assignment(s); reported "
        "only, not touched: Contoso EWS Sync (DenyAccess), CRM Sync Service (no policy: tenant-wide)")
