"""`migrator audit` on a migrated sandbox tenant: clean when untouched; then four hand-made changes through the
sandbox's own API (a legacy grant added, a member added to a shared group, an app's Entra claim re-granted, a scope
filter edited) are reported exactly, with the apps each affects, and the command exits non-zero."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.planner.plan import load_plan
from sandbox_world import make_fixture, make_plan

pytestmark = pytest.mark.integration

GRAPH = "https://graph.microsoft.com"


def _migrate(tmp_path):
    """A small tenant with a group two apps share, every batch executed through the real clients."""
    from migrator.executor.context import ExecSettings, Output
    from migrator.executor.session import connect
    from migrator.rehearse import REHEARSAL_DELAYS, REHEARSAL_WAITS, run_batches
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    for seed in range(20):
        fixture, _ = make_fixture(seed=seed, mailboxes=14, apps=5, per_app=(2, 6), clusters=2)
        plan_path = make_plan(fixture, tmp_path / f"plan{seed}", pilot=1, batch_size=2)
        plan = load_plan(plan_path)
        if any(g.apps >= 2 for g in plan.groups):
            break
    else:
        raise AssertionError("no seed gives a group two apps share")
    clock = Clock()
    sb = start_sandbox(fixture, clock=clock, settings=SandboxSettings(**REHEARSAL_DELAYS), run_dir=tmp_path / "sb",
                       smtp=False)
    conn = connect(sb.profile_path, graph_write=True)
    settings = ExecSettings(concurrency=2, verify_retry_delay=5.0, replication_poll=5.0, replication_timeout=900.0,
                            **REHEARSAL_WAITS)
    run = run_batches(plan, plan_path, conn, [b.number for b in plan.batches], settings, output=Output(quiet=True),
                      now=clock.now, sleep=clock.advance)
    conn.session.close()
    assert run.ok, run.problems
    return sb, plan


def _audit(sb, plan, *extra):
    return CliRunner().invoke(main, ["audit", str(plan.path), "--profile", str(sb.profile_path), *extra])


def test_audit_is_clean_on_a_migrated_tenant_then_reports_exactly_four_changes(tmp_path):
    sb, plan = _migrate(tmp_path)
    try:
        clean = _audit(sb, plan, "--json")
        assert clean.exit_code == 0, clean.output
        assert json.loads(clean.output)["clean"] is True

        state, admin = sb.state, sb.state.admin_caller()
        shared = next(g for g in plan.groups if g.apps >= 2)
        scope = next(s for s in plan.scopes if shared.key in s.groups)
        sharers = sorted(a.app_id for a in plan.assignments
                         if any(shared.key in s.groups for s in plan.scopes if s.key == a.scope))
        all_mailboxes = sorted({g.mailbox for g in plan.grants})
        newcomer = next(m for m in all_mailboxes if m not in shared.members)
        granted_app = sharers[0]
        held = {g.mailbox for g in plan.grants if g.app_id == granted_app}
        target = next(m for m in all_mailboxes if m not in held)
        regranted = sharers[-1]

        # 1. a per-mailbox SendAs grant, the legacy way
        state.invoke("Add-RecipientPermission", {"Identity": target, "Trustee": state.apps[granted_app].object_id,
                                                 "AccessRights": "SendAs", "Confirm": False}, caller=admin)
        # 2. a member added by hand to a group two apps share
        state.invoke("Add-DistributionGroupMember", {"Identity": shared.name, "Member": newcomer,
                                                     "BypassSecurityGroupManagerCheck": True}, caller=admin)
        # 3. the Entra SMTP.SendAsApp claim re-granted (a later "Grant admin consent")
        exo_sp = state.resources["Office 365 Exchange Online"]
        role_id = next(r["id"] for r in exo_sp["appRoles"] if r["value"] == "SMTP.SendAsApp")
        sp_id = state.apps[regranted].object_id
        state.graph("grant_app_role", sp_id, {"principalId": sp_id, "resourceId": exo_sp["id"],
                                              "appRoleId": role_id}, caller=state.admin_caller(GRAPH))
        # 4. a scope's filter edited
        state.invoke("Set-ManagementScope", {"Identity": scope.name,
                                             "RecipientRestrictionFilter": "Department -eq 'Sales'"}, caller=admin)

        found = _audit(sb, plan, "--json")
        assert found.exit_code == 1, found.output
        report = json.loads(found.stdout)
        kinds = sorted((f["kind"], f["target"]) for f in report["findings"])
        assert kinds == sorted([
            ("new legacy grant", f"{granted_app} on {target}"),
            ("group member added", shared.name),
            ("SMTP.SendAsApp claim re-granted", regranted),
            ("scope filter changed", scope.name),
        ]), report["findings"]
        by_kind = {f["kind"]: f for f in report["findings"]}
        assert sorted(by_kind["group member added"]["apps"]) == sharers  # every app of the group is over-granted
        assert by_kind["group member added"]["effect"] == "over-grant" and newcomer in by_kind[
            "group member added"]["detail"]
        assert by_kind["new legacy grant"]["apps"] == [granted_app]
        assert by_kind["SMTP.SendAsApp claim re-granted"]["apps"] == [regranted]
        over = {r["app_id"]: r["extra"] for r in report["reach"]}
        assert all(newcomer in over[a] for a in sharers)  # the reach view agrees

        text = _audit(sb, plan)
        assert text.exit_code == 1 and "group member added" in text.output
        md = _audit(sb, plan, "--markdown")
        assert md.output.startswith("# Audit: 4 finding(s)") and "| group member added |" in md.output
    finally:
        sb.stop()
