"""Existing RBAC for Applications on the sandbox, through the real clients over HTTPS.

1. A tenant where someone made RBAC assignments by hand (through the sandbox's own Exchange API: New-ManagementScope,
   New-ManagementRoleAssignment, Set-Mailbox): the live inventory reads them with their reach; the plan reuses the
   one that serves an app exactly (nothing created for it), adds only the rest for a half-moved app, leaves an app
   whose RBAC reaches beyond its grants and one whose filter cannot be evaluated as they are; executed, the tenant's
   timeline shows zero gaps and zero over-grants. Inventoried and planned again: nothing left to do.
2. Parity: the live inventory and the PowerShell exports of the same tenant give the same RBAC data.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.exchange.profile import load_profile
from migrator.inventory.export_script import SCRIPT_FILES
from migrator.inventory.exports import inventory_from_exports
from migrator.inventory.rbac import EXACT, UNKNOWN
from migrator.inventory.store import counts, read_inventory
from migrator.inventory.tenant import Clients, live_inventory
from migrator.model import RBAC_ROLE_SMTP_SEND_AS
from migrator.planner.build import PlanOptions, build_plan
from migrator.planner.plan import KEEP, MIGRATE, ExistingAction, load_plan, write_plan
from migrator.planner.source import load_source
from sandbox_world import make_fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="thread")]

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "migrator" / "samples" / "contoso"
ROLE = RBAC_ROLE_SMTP_SEND_AS


def _legacy(fixture: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in fixture["recipient_permissions"]:
        out.setdefault(p["trustee"]["app"], []).append(p["mailbox"])
    return {a: sorted(ms) for a, ms in out.items()}


def _by_hand(exo, fixture: dict, clock) -> dict[str, str]:
    """Hand-made RBAC for four of the five apps, through the sandbox's Exchange API. Returns app id -> what it is."""
    apps = [a["app_id"] for a in fixture["apps"]]
    legacy = _legacy(fixture)
    sp = {row["AppId"].lower(): row["ObjectId"] for row in exo.get_service_principals()}
    covered, partial, beyond, unknown = apps[:4]
    # covered: an attribute scope reaching exactly the app's mailboxes (nothing but verify can see it change)
    for mailbox in legacy[covered]:
        exo.invoke("Set-Mailbox", {"Identity": mailbox, "CustomAttribute9": "hand-moved"})
    exo.new_management_scope("Hand Scope Covered", "CustomAttribute9 -eq 'hand-moved'")
    exo.new_role_assignment("Hand Assignment Covered", ROLE, sp[covered], "Hand Scope Covered")
    # partial: a group holding two of the app's mailboxes, a scope on its DN, the app assigned to it
    exo.new_distribution_group("Hand Made Senders", "hand-made-senders")
    clock.advance(60)  # directory replication: a new group is found by Get-* only after a while
    exo.update_group_members("Hand Made Senders", legacy[partial][:2])
    dn = exo.get_distribution_group("Hand Made Senders")["DistinguishedName"]
    exo.new_management_scope("Hand Scope Partial", f"MemberOfGroup -eq '{dn}'")
    exo.new_role_assignment("Hand Assignment Partial", ROLE, sp[partial], "Hand Scope Partial")
    # beyond: the whole organisation (no scope)
    exo.invoke("New-ManagementRoleAssignment", {"Name": "Hand Assignment Beyond", "Role": ROLE, "App": sp[beyond]})
    # unknown: a filter on a property the inventory does not hold
    exo.new_management_scope("Hand Scope Unknown", "EmailAddresses -like 'smtp:user*'")
    exo.new_role_assignment("Hand Assignment Unknown", ROLE, sp[unknown], "Hand Scope Unknown")
    return {covered: "covered", partial: "partial", beyond: "beyond", unknown: "unknown", apps[4]: "none"}


def _run_all(sb, plan_path: Path, clock, *, max_resumes: int = 8):
    from migrator.executor.context import ExecSettings, Output
    from migrator.executor.session import connect
    from migrator.rehearse import REHEARSAL_WAITS, run_batches

    plan = load_plan(plan_path)
    conn = connect(sb.profile_path, graph_write=True)
    settings = ExecSettings(concurrency=2, verify_retry_delay=5.0, replication_poll=5.0, replication_timeout=900.0,
                            **REHEARSAL_WAITS)
    try:
        return run_batches(plan, plan_path, conn, [b.number for b in plan.batches], settings,
                           output=Output(quiet=True), now=clock.now, sleep=clock.advance, max_resumes=max_resumes)
    finally:
        conn.session.close()


def _hand_made_tenant(tmp_path: Path) -> tuple[dict, dict, dict[str, str]]:
    """(the sandbox fixture of a tenant with hand-made RBAC, the original fixture, app id -> kind).

    The hand-made objects are made through the API on a first sandbox, whose state then becomes the fixture of the
    tenant under test: they are part of its starting point (the timeline's original reach), as on a real tenant
    where they were made long before the tool came."""
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox

    fixture, _ = make_fixture(seed=5, mailboxes=14, apps=5, per_app=(3, 6))
    build_clock = Clock()
    with start_sandbox(fixture, clock=build_clock, run_dir=tmp_path / "build", smtp=False) as builder:
        clients = Clients(load_profile(builder.profile_path))
        try:
            kind = _by_hand(clients.exo, fixture, build_clock)
        finally:
            clients.close()
        build_clock.advance(7200)
        made = builder.state.snapshot()
    for key in ("mailboxes", "groups", "management_scopes", "role_assignments"):
        for obj in made[key]:
            obj.pop("created", None)  # on the other sandbox's clock: the fixture's defaults say "there at load"
    assert len(made["role_assignments"]) == 4 and len(made["management_scopes"]) == 3
    return made, fixture, kind


def test_hand_made_rbac_is_reused_or_left_and_the_run_stays_exact(tmp_path):
    from migrator.rehearse import REHEARSAL_DELAYS
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    made, fixture, kind = _hand_made_tenant(tmp_path)
    clock = Clock()
    with start_sandbox(made, clock=clock, settings=SandboxSettings(**REHEARSAL_DELAYS), run_dir=tmp_path / "sb",
                       smtp=False) as sb:
        inv = live_inventory(sb.profile_path, tmp_path / "inv", progress=False)
        assert inv.rbac_known and read_inventory(tmp_path / "inv").manifest["counts"]["rbac_assignments"] == 4
        reach = {a.app_id: a for a in inv.rbac}
        legacy = _legacy(fixture)
        app_of = {v: k for k, v in kind.items()}
        assert reach[app_of["covered"]].reach == EXACT and sorted(reach[app_of["covered"]].mailboxes) == \
            legacy[app_of["covered"]]
        assert reach[app_of["partial"]].mailboxes == set(legacy[app_of["partial"]][:2])
        assert reach[app_of["beyond"]].scope_type == "organization" and len(reach[app_of["beyond"]].mailboxes) == 14
        assert reach[app_of["unknown"]].reach == UNKNOWN and "EmailAddresses" in reach[app_of["unknown"]].note

        plan_path = write_plan(build_plan(load_source(tmp_path / "inv"),
                                          PlanOptions(pilot=1, batch_size=2, time_limit=10)), tmp_path / "plan")
        plan = load_plan(plan_path)
        status = {a["app_id"]: a["status"] for a in plan.meta["existing_rbac"]["apps"]}
        assert status == {app_of[k]: k for k in ("covered", "partial", "beyond", "unknown")}
        assert not [a for a in plan.assignments if a.app_id == app_of["covered"]]  # reused, never duplicated
        assert len([a for a in plan.assignments if a.app_id == app_of["partial"]]) == 1
        for k in ("beyond", "unknown"):
            assert all(g.action == KEEP and g.batch is None for g in plan.grants if g.app_id == app_of[k])
        assert {e.assignment: e.action for e in plan.existing} == {
            "Hand Assignment Covered": ExistingAction.REUSE, "Hand Assignment Partial": ExistingAction.REUSE,
            "Hand Assignment Beyond": ExistingAction.LEFT, "Hand Assignment Unknown": ExistingAction.LEFT}

        run = _run_all(sb, plan_path, clock)
        assert run.ok, run.problems
        clock.advance(7200)
        report = sb.check()
        assert report.gaps == [] and report.overgrants == [], (report.gaps[:3], report.overgrants[:3])
        access = sb.access()
        for app in (app_of["covered"], app_of["partial"], app_of["none"]):
            assert not access[app].sendas and sorted(access[app].rbac) == legacy[app]  # migrated: RBAC only
        for app in (app_of["beyond"], app_of["unknown"]):
            assert sorted(access[app].sendas) == legacy[app]  # left as they were
        audit = CliRunner().invoke(main, ["audit", str(plan_path), "--profile", str(sb.profile_path), "--json"])
        assert audit.exit_code == 0, audit.output  # the reused and the left-alone assignments are no finding
        writes = {e.operation for e in sb.requests.writes()}
        assert "Remove-ManagementRoleAssignment" not in writes and "Remove-ManagementScope" not in writes

        # inventoried and planned again: nothing left to do, said so, exit 0
        live_inventory(sb.profile_path, tmp_path / "inv2", progress=False)
        result = CliRunner().invoke(main, ["plan", str(tmp_path / "inv2"), "--out", str(tmp_path / "plan2")])
        assert result.exit_code == 0, result.output
        assert "Nothing to migrate" in result.output and "already send through RBAC" in result.output
        again = load_plan(tmp_path / "plan2")
        assert not again.batches and not again.assignments and not again.groups
        status = {a["app_id"]: a["status"] for a in again.meta["existing_rbac"]["apps"]}
        assert status[app_of["covered"]] == status[app_of["partial"]] == status[app_of["none"]] == "rbac_only"

        # a reused assignment's scope edited by hand afterwards: audit reports it, with the app it affects
        clients = Clients(load_profile(sb.profile_path))
        try:
            clients.exo.invoke("Set-ManagementScope", {"Identity": "Hand Scope Covered",
                                                       "RecipientRestrictionFilter": "CustomAttribute9 -eq 'other'"})
        finally:
            clients.close()
        audit = CliRunner().invoke(main, ["audit", str(plan_path), "--profile", str(sb.profile_path), "--json"])
        assert audit.exit_code != 0, audit.output
        found = json.loads(audit.output[audit.output.index("{"):])  # after the one-line error on stderr
        changed = [f for f in found["findings"] if f["kind"] == "scope filter changed"]
        assert [(f["target"], f["apps"]) for f in changed] == [("Hand Scope Covered", [app_of["covered"]])]
        cut = {r["app_id"]: r for r in found["reach"]}
        assert sorted(cut[app_of["covered"]]["missing"]) == legacy[app_of["covered"]]


TAMPER = {  # what changes, on which app's existing assignment, and the drift it must stop on ("" none)
    "member_removed": ("partial", "member removed from its scope's group"),
    "filter_edited": ("partial", "filter changed"),
    "assignment_removed": ("covered", "not found"),
    # not drift (an attribute filter): verify finds the reach short before the cut-over, nothing removed; the app
    # has no new assignment, so only the verification of its existing one stands between it and a gap
    "attribute_cleared": ("covered", ""),
}


@pytest.mark.parametrize("tamper", sorted(TAMPER))
def test_an_existing_assignment_changed_after_the_plan_never_opens_a_gap(tmp_path, tamper):
    """The plan counts on the existing assignments it reuses; changed between plan and execute, the batch stops
    (drift) or fails its verification, and no legacy grant or Entra claim of the app is removed."""
    from migrator.errors import DriftError
    from migrator.rehearse import REHEARSAL_DELAYS
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    made, fixture, kind = _hand_made_tenant(tmp_path)
    app_of = {v: k for k, v in kind.items()}
    legacy = _legacy(fixture)
    clock = Clock()
    with start_sandbox(made, clock=clock, settings=SandboxSettings(**REHEARSAL_DELAYS), run_dir=tmp_path / "sb",
                       smtp=False) as sb:
        live_inventory(sb.profile_path, tmp_path / "inv", progress=False)
        plan_path = write_plan(build_plan(load_source(tmp_path / "inv"),
                                          PlanOptions(pilot=0, batch_size=5, time_limit=10)), tmp_path / "plan")
        app = app_of[TAMPER[tamper][0]]
        clients = Clients(load_profile(sb.profile_path))
        try:
            exo = clients.exo
            if tamper == "member_removed":
                exo.invoke("Remove-DistributionGroupMember", {"Identity": "Hand Made Senders",
                                                              "Member": legacy[app][0], "Confirm": False})
            elif tamper == "filter_edited":
                dn = exo.get_distribution_group("Hand Made Senders")["DistinguishedName"]
                exo.invoke("Set-ManagementScope", {"Identity": "Hand Scope Partial",
                                                   "RecipientRestrictionFilter": f"(MemberOfGroup -eq '{dn}')"
                                                                                 " -or (Department -eq 'Sales')"})
            elif tamper == "assignment_removed":
                exo.remove_role_assignment("Hand Assignment Covered")
            else:
                exo.invoke("Set-Mailbox", {"Identity": legacy[app][0], "CustomAttribute9": ""})
        finally:
            clients.close()
        sb.requests.clear()
        word = TAMPER[tamper][1]
        if word:
            with pytest.raises(DriftError, match=word):
                _run_all(sb, plan_path, clock)
            assert not sb.requests.writes()  # stopped before its first write
        else:
            run = _run_all(sb, plan_path, clock, max_resumes=1)
            assert not run.ok and "not in scope" in " ".join(run.problems), run.problems
        clock.advance(7200)
        access = sb.access([app])[app]
        assert sorted(access.sendas) == legacy[app] and access.claim  # nothing of the app's access removed
        report = sb.check()
        assert report.gaps == [], report.gaps[:3]


def test_rollback_restores_the_legacy_grants_and_leaves_the_existing_assignments(tmp_path):
    """Rolled back, a batch of apps that built on existing assignments gets its grants and claims back; the
    assignments that were there before stay, exactly as they were (only what the tool created goes)."""
    from migrator.executor.context import ExecSettings, Output
    from migrator.executor.session import connect
    from migrator.rehearse import REHEARSAL_DELAYS, REHEARSAL_WAITS, rollback_batch
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    made, fixture, kind = _hand_made_tenant(tmp_path)
    app_of = {v: k for k, v in kind.items()}
    legacy = _legacy(fixture)
    clock = Clock()
    with start_sandbox(made, clock=clock, settings=SandboxSettings(**REHEARSAL_DELAYS), run_dir=tmp_path / "sb",
                       smtp=False) as sb:
        before = sb.access()
        live_inventory(sb.profile_path, tmp_path / "inv", progress=False)
        plan_path = write_plan(build_plan(load_source(tmp_path / "inv"),
                                          PlanOptions(pilot=0, batch_size=5, time_limit=10)), tmp_path / "plan")
        assert len(load_plan(plan_path).batches) == 1
        assert _run_all(sb, plan_path, clock).ok
        assert not sb.access([app_of["covered"]])[app_of["covered"]].sendas  # migrated
        sb.requests.clear()
        conn = connect(sb.profile_path, graph_write=True)
        try:
            run = rollback_batch(load_plan(plan_path), plan_path, conn, 1,
                                 ExecSettings(concurrency=2, verify_retry_delay=5.0, replication_poll=5.0,
                                              replication_timeout=900.0, **REHEARSAL_WAITS),
                                 output=Output(quiet=True), now=clock.now, sleep=clock.advance)
        finally:
            conn.session.close()
        assert run.ok, run.problems
        clock.advance(7200)
        after = sb.access()
        for app in (app_of["covered"], app_of["partial"], app_of["none"]):
            assert after[app].sendas == before[app].sendas and after[app].claim  # back on its legacy grants
            assert after[app].rbac == before[app].rbac  # the hand-made reach, no more (the tool's own is gone)
        clients = Clients(load_profile(sb.profile_path))
        try:  # the hand-made objects, read back as they were
            for name in ("Hand Assignment Covered", "Hand Assignment Partial"):
                assert clients.exo.get_role_assignment(name) is not None, name
            assert clients.exo.get_management_scope("Hand Scope Partial")["RecipientFilter"].startswith("MemberOfGroup")
            assert len(clients.exo.get_group_members("Hand Made Senders")) == 2
        finally:
            clients.close()
        report = sb.check()
        assert report.gaps == [] and report.overgrants == [], (report.gaps[:3], report.overgrants[:3])
        assert sorted(after[app_of["beyond"]].sendas) == legacy[app_of["beyond"]]


def test_a_tenant_migrated_by_the_tool_replans_to_nothing(tmp_path):
    """Every access shape (SendAs, FullAccess for SMTP, both with IMAP, IMAP only), migrated from a live inventory
    by the tool; the next inventory + plan has nothing to do."""
    from migrator.rehearse import REHEARSAL_DELAYS
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, _ = make_fixture(seed=2, mailboxes=12, apps=5, per_app=(2, 5), clusters=2, shapes=True)
    clock = Clock()
    with start_sandbox(fixture, clock=clock, settings=SandboxSettings(**REHEARSAL_DELAYS), run_dir=tmp_path / "sb",
                       smtp=False) as sb:
        live_inventory(sb.profile_path, tmp_path / "inv", progress=False)
        first = CliRunner().invoke(main, ["plan", str(tmp_path / "inv"), "--out", str(tmp_path / "plan"),
                                          "--batch-size", "2"])
        assert first.exit_code == 0, first.output
        assert load_plan(tmp_path / "plan").batches
        run = _run_all(sb, tmp_path / "plan", clock)
        assert run.ok, run.problems
        clock.advance(7200)
        assert sb.check().ok
        live_inventory(sb.profile_path, tmp_path / "inv2", progress=False)
        result = CliRunner().invoke(main, ["plan", str(tmp_path / "inv2"), "--out", str(tmp_path / "plan2")])
        assert result.exit_code == 0, result.output
        assert "Nothing to migrate" in result.output
        again = load_plan(tmp_path / "plan2")
        assert not again.batches and not again.assignments and not again.scopes and not again.groups
        assert all(g.action == KEEP for g in again.grants)  # FullAccess kept for IMAP/POP, as the first plan said
        assert {a["status"] for a in again.meta["existing_rbac"]["apps"]} == {"rbac_only"}
        assert not any(g.action == MIGRATE for g in again.grants)


def _export_rbac(exo, folder: Path) -> None:
    """role-assignments.csv and management-scopes.csv as the export script writes them: per service principal,
    Get-ManagementRoleAssignment -RoleAssignee <ObjectId> (Application roles only), then Get-ManagementScope."""
    ra_cols = SCRIPT_FILES["role-assignments.csv"][1]
    rows = []
    for sp in exo.get_service_principals():
        oid = str(sp["ObjectId"])
        for r in exo.invoke("Get-ManagementRoleAssignment", {"RoleAssignee": oid}):
            if str(r.get("Role") or "").startswith("Application "):
                rows.append({**{c: "" if r.get(c) is None else str(r.get(c)) for c in ra_cols}, "RoleAssignee": oid})
    with open(folder / "role-assignments.csv", "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.DictWriter(fh, ra_cols, quoting=csv.QUOTE_ALL)
        w.writeheader()
        w.writerows(rows)
    sc_cols = SCRIPT_FILES["management-scopes.csv"][1]
    with open(folder / "management-scopes.csv", "w", newline="", encoding="utf-8-sig") as fh:
        w = csv.DictWriter(fh, sc_cols, quoting=csv.QUOTE_ALL)
        w.writeheader()
        for s in exo.get_management_scopes():
            w.writerow({c: "" if s.get(c) is None else str(s.get(c)) for c in sc_cols})


def test_live_and_exports_read_the_same_rbac(tmp_path):
    from migrator.sandbox.server import start_sandbox

    with start_sandbox(SAMPLE / "tenant.json", smtp=False, run_dir=tmp_path / "sb") as sb:
        clients = Clients(load_profile(sb.profile_path))
        try:
            exo = clients.exo
            sp = {row["DisplayName"]: row["ObjectId"] for row in exo.get_service_principals()}
            legal = exo.get_distribution_group("Legal Notices Senders")["DistinguishedName"]
            exo.new_management_scope("Hand Legal", f"MemberOfGroup -eq '{legal}'")
            exo.new_role_assignment("Hand Legal Notices", ROLE, sp["EXO SP for Legal Notices Mailer"], "Hand Legal")
            exo.new_management_scope("Hand Finance", "Department -eq 'Finance'")
            exo.new_role_assignment("Hand Billing", ROLE, sp["EXO SP for Contoso Billing Mailer"], "Hand Finance")
            exo.invoke("New-ManagementRoleAssignment", {"Name": "Hand Payroll Group", "Role": ROLE,
                                                        "App": sp["EXO SP for Payroll Notifier"],
                                                        "RecipientGroupScope": "Finance Team"})
            exo.new_management_scope("Hand Odd", "EmailAddresses -like 'smtp:scan*'")
            exo.new_role_assignment("Hand Scanner", ROLE, sp["EXO SP for Scan-to-Email Relay"], "Hand Odd")
            exo.invoke("New-ManagementRoleAssignment", {"Name": "Hand CRM Read", "Role": "Application Mail.Read",
                                                        "App": sp["svc-crm-sync"]})
            exports = tmp_path / "exports"
            shutil.copytree(SAMPLE / "exports", exports)
            _export_rbac(exo, exports)
        finally:
            clients.close()
        live = live_inventory(sb.profile_path, tmp_path / "inv", progress=False, allow_unknown_trustees=True)
    exported = inventory_from_exports(exports, allow_unknown_trustees=True)
    assert live.rbac_known and exported.rbac_known
    assert len(live.rbac) == 5
    assert live.rbac == exported.rbac
    assert counts(live)["rbac_assignments"] == counts(exported)["rbac_assignments"] == 5
    reach = {a.name: a for a in live.rbac}
    assert reach["Hand Legal Notices"].reach == EXACT and len(reach["Hand Legal Notices"].mailboxes) == 9
    assert reach["Hand Billing"].reach == EXACT and len(reach["Hand Billing"].mailboxes) == 25
    assert reach["Hand Payroll Group"].scope_type == "group" and len(reach["Hand Payroll Group"].mailboxes) == 26
    assert reach["Hand Scanner"].reach == UNKNOWN
    assert reach["Hand CRM Read"].role == "Application Mail.Read" and reach["Hand CRM Read"].scope_type == "organization"
    # what the plan makes of them (the sample's own apps and options)
    write_plan(build_plan(load_source(tmp_path / "inv"), PlanOptions(batch_size=4, time_limit=10)), tmp_path / "p")
    status = {a["app_name"]: a["status"] for a in load_plan(tmp_path / "p").meta["existing_rbac"]["apps"]}
    assert status == {"EXO SP for Legal Notices Mailer": "covered", "EXO SP for Contoso Billing Mailer": "covered",
                      "EXO SP for Payroll Notifier": "beyond", "EXO SP for Scan-to-Email Relay": "unknown"}


def test_older_exports_without_the_rbac_files_say_not_read(tmp_path):
    inv = inventory_from_exports(SAMPLE / "exports", allow_unknown_trustees=True)
    assert not inv.rbac_known and inv.manifest["rbac"]["read"] is False
    assert counts(inv)["rbac_assignments"] == "not read"
    # a header-only file (the script writes one when there are none) means "read, none"
    exports = tmp_path / "exports"
    shutil.copytree(SAMPLE / "exports", exports)
    for name in ("role-assignments.csv", "management-scopes.csv"):
        (exports / name).write_text(",".join(f'"{c}"' for c in SCRIPT_FILES[name][1]) + "\r\n", encoding="utf-8")
    inv = inventory_from_exports(exports, allow_unknown_trustees=True)
    assert inv.rbac_known and inv.rbac == () and counts(inv)["rbac_assignments"] == 0
