"""The Graph/EWS part of the inventory (inventory/mailaccess.py): Application Access Policies, their scopes'
flattened members (nested groups followed) and the apps' AAP-fenced Entra permissions. The live inventory of the
Northwind sample (through the real clients) and the PowerShell exports of the same tenant read the same; older
exports without the files say "not read", never "none"; bad rows name the file, row and field."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from migrator.errors import InputError
from migrator.exchange.profile import load_profile
from migrator.inventory.export_script import SCRIPT_FILES
from migrator.inventory.exports import inventory_from_exports
from migrator.inventory.mailaccess import MEMBERS_FILE, PERMISSIONS_FILE, POLICIES_FILE
from migrator.inventory.store import counts, read_inventory, write_inventory
from migrator.inventory.tenant import Clients, live_inventory
from migrator.samples import CONTOSO_EXPORTS, NORTHWIND_FIXTURE
from migrator.sandbox.exports import write_exports

pytestmark = pytest.mark.integration

ARCHIVER = "4e0f0000-0000-4000-8000-000000000002"
EWS = "4e0f0000-0000-4000-8000-000000000003"
BOOKER = "4e0f0000-0000-4000-8000-000000000004"
CONTRACTS = "4e0f0000-0000-4000-8000-000000000005"
D = "@northwind.example"


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from migrator.sandbox.server import start_sandbox

    tmp = tmp_path_factory.mktemp("northwind")
    with start_sandbox(NORTHWIND_FIXTURE, smtp=False, run_dir=tmp / "sb") as sb:
        clients = Clients(load_profile(sb.profile_path))
        try:
            write_exports(clients, tmp / "exports")
        finally:
            clients.close()
        live = live_inventory(sb.profile_path, tmp / "inv", progress=False)
    return live, inventory_from_exports(tmp / "exports"), tmp


def test_live_reads_the_policies_their_flattened_members_and_the_fenced_permissions(both):
    live, _exported, _tmp = both
    access = live.mail_access
    assert access.policies_read and access.members_read and access.permissions_read
    by_app: dict[str, set] = {}
    for p in access.policies:
        by_app.setdefault(p.app_id, set()).add((p.access_right, p.scope, p.scope_kind))
    assert by_app == {ARCHIVER: {("RestrictAccess", f"archive-scope{D}", "group")},
                      EWS: {("DenyAccess", f"legal-team{D}", "group")},
                      CONTRACTS: {("RestrictAccess", f"legal-team{D}", "group"),
                                  ("RestrictAccess", f"finance-team{D}", "group")}}
    scopes = access.scope_mailboxes()
    assert scopes[f"archive-scope{D}"] == {f"ana.silva{D}", f"ben.okafor{D}", f"chen.li{D}", f"invoices{D}"}
    via = {m.mailbox: m.via for m in access.members if m.scope == f"archive-scope{D}"}
    assert via[f"ana.silva{D}"] == f"sales-team{D}" and via[f"chen.li{D}"] == ""  # nested, and direct
    perms = {(p.app_id, p.permission) for p in access.permissions}
    assert perms == {(ARCHIVER, "Mail.Read"), (ARCHIVER, "Mail.Send"), (EWS, "full_access_as_app"),
                     (BOOKER, "Calendars.ReadWrite"), (CONTRACTS, "Mail.ReadWrite"), (CONTRACTS, "Calendars.Read")}
    # Room Booker and Contracts have no Exchange pointer: found from the resources' side all the same
    assert {sp.app_id for sp in live.service_principals} & {BOOKER, CONTRACTS} == set()
    assert {p.rbac_role for p in access.permissions if p.app_id == EWS} == {"Application EWS.AccessAsApp"}
    assert counts(live)["access_policies"] == 4 and counts(live)["mail_permission_apps"] == 4
    assert live.manifest["access_policies"]["policies_read"] is True


def test_live_and_exports_read_the_same(both):
    live, exported, _tmp = both
    assert exported.mail_access == live.mail_access
    assert counts(exported) == counts(live)
    assert exported.grants == live.grants


def test_the_folder_round_trips_and_counts_in_the_manifest(both):
    live, _exported, tmp = both
    back = read_inventory(tmp / "inv")
    assert back.mail_access == live.mail_access
    manifest = json.loads((tmp / "inv" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["policy_scope_members"] == len(live.mail_access.members) == 4 + 2 + 2
    with open(tmp / "inv" / POLICIES_FILE, encoding="utf-8-sig") as fh:
        assert next(csv.reader(fh)) == ["identity", "app_id", "access_right", "scope", "scope_kind",
                                        "scope_external_id", "description", "is_valid"]


def test_older_exports_say_not_read_and_empty_files_say_none(tmp_path):
    old = inventory_from_exports(CONTOSO_EXPORTS, allow_unknown_trustees=True)
    assert not (old.mail_access.policies_read or old.mail_access.permissions_read)
    assert counts(old)["access_policies"] == "not read"
    assert "Get-ApplicationAccessPolicy" in old.manifest["access_policies"]["why_policies"]
    write_inventory(old, tmp_path / "inv")
    assert not (tmp_path / "inv" / POLICIES_FILE).exists() and not (tmp_path / "inv" / PERMISSIONS_FILE).exists()
    assert read_inventory(tmp_path / "inv").mail_access.policies_read is False
    exports = tmp_path / "exports"
    shutil.copytree(CONTOSO_EXPORTS, exports)
    for name in ("access-policies.csv", "app-role-assigned-to.csv"):  # what the script writes when there are none
        (exports / name).write_text(",".join(f'"{c}"' for c in SCRIPT_FILES[name][1]) + "\r\n", encoding="utf-8")
    none = inventory_from_exports(exports, allow_unknown_trustees=True)
    assert none.mail_access.policies_read and none.mail_access.permissions_read
    assert counts(none)["access_policies"] == 0 and counts(none)["mail_permission_apps"] == 0


def test_a_bad_export_row_names_file_row_and_field(tmp_path, both):
    _live, _exported, tmp = both
    exports = tmp_path / "exports"
    shutil.copytree(tmp / "exports", exports)
    path = exports / "access-policies.csv"
    text = path.read_text(encoding="utf-8-sig").replace('"RestrictAccess"', '"AllowAccess"', 1)
    path.write_text(text, encoding="utf-8-sig")
    with pytest.raises(InputError) as err:
        inventory_from_exports(exports)
    assert err.value.path == str(path) and err.value.field == "AccessRight" and err.value.row >= 2


@pytest.mark.parametrize(("name", "column", "value", "field"), [
    (POLICIES_FILE, 3, "Allow", "access_right"),
    (POLICIES_FILE, 5, "folder", "scope_kind"),
    (MEMBERS_FILE, 2, "nobody@northwind.example", "mailbox"),
    (MEMBERS_FILE, 1, "elsewhere@northwind.example", "scope"),
    (PERMISSIONS_FILE, 5, "Files.Read.All", "permission"),
    (PERMISSIONS_FILE, 4, "Office 365 Exchange Online", "resource"),
])
def test_a_bad_inventory_row_names_file_row_and_field(tmp_path, both, name, column, value, field):
    _live, _exported, tmp = both
    folder = tmp_path / "inv"
    shutil.copytree(tmp / "inv", folder)
    with open(folder / name, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if name == PERMISSIONS_FILE and field == "resource":
        row = next(i for i, r in enumerate(rows) if r[4] == "Mail.Read")
    else:
        row = 1
    rows[row][column - 1] = value
    with open(folder / name, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    with pytest.raises(InputError) as err:
        read_inventory(folder)
    assert err.value.path == str(folder / name) and err.value.row == row + 1 and err.value.field == field


def test_the_read_only_migration_report_of_the_live_inventory(both):
    from migrator.planner.aap_report import DENY, MIGRATE, TENANT_WIDE, report_apps, summary

    live, _exported, _tmp = both
    reports = {r.app_id: r for r in report_apps(live.mail_access, frozenset(m.address for m in live.mailboxes),
                                                live.groups)}
    assert {a: r.status for a, r in reports.items()} == {ARCHIVER: MIGRATE, EWS: DENY, BOOKER: TENANT_WIDE,
                                                          CONTRACTS: MIGRATE}
    assert reports[ARCHIVER].reach == {f"ana.silva{D}", f"ben.okafor{D}", f"chen.li{D}", f"invoices{D}"}
    assert reports[CONTRACTS].reach == {f"eli.cohen{D}", f"fay.morgan{D}", f"chen.li{D}", f"dara.walsh{D}"}
    assert len(reports[EWS].reach or ()) == 6 and reports[BOOKER].reach is None
    assert summary(tuple(reports.values()))["role_assignments"] == 4


def test_a_rehearsal_tenant_built_from_the_inventory_reaches_the_same_per_permission(both):
    from migrator.sandbox import Clock, TenantState
    from migrator.sandbox.from_inventory import fixture_from_inventory

    live, _exported, _tmp = both
    original = TenantState.from_fixture(json.loads(NORTHWIND_FIXTURE.read_text(encoding="utf-8")),
                                        clock=Clock.manual())
    copy = TenantState.from_fixture(fixture_from_inventory(live), clock=Clock.manual())
    mailboxes = sorted(m.address for m in live.mailboxes)
    for p in live.mail_access.permissions:
        def reach(state, app=p.app_id, perm=p.permission):
            return {m for m in mailboxes if state.can_use_mailbox(app, perm, m)}
        assert reach(copy) == reach(original), p
    assert len(copy.access_policies) == 4 and copy.check().ok
    # a nested group the inventory does not list: its members come in through one added nested group
    import dataclasses

    without = dataclasses.replace(live, groups=tuple(g for g in live.groups if g.address != f"sales-team{D}"))
    fixture = fixture_from_inventory(without)
    scope = next(g for g in fixture["groups"] if g["primary_smtp"] == f"archive-scope{D}")
    assert f"archive-scope-nested{D}" in scope["members"] and f"sales-team{D}" not in scope["members"]
    rebuilt = TenantState.from_fixture(fixture, clock=Clock.manual())
    assert {m for m in mailboxes if rebuilt.can_use_mailbox(ARCHIVER, "Mail.Read", m)} == \
        {f"ana.silva{D}", f"ben.okafor{D}", f"chen.li{D}", f"invoices{D}"}


def test_a_refused_policy_read_is_not_read_with_the_reason_and_the_inventory_goes_on(tmp_path):
    from migrator.sandbox.faults import FaultProfile
    from migrator.sandbox.server import start_sandbox

    profile = FaultProfile(name="no-aap-role", refused_cmdlets=("Get-ApplicationAccessPolicy",))
    with start_sandbox(NORTHWIND_FIXTURE, smtp=False, run_dir=tmp_path / "sb", faults=profile) as sb:
        inv = live_inventory(sb.profile_path, tmp_path / "inv", progress=False)
    access = inv.mail_access
    assert not access.policies_read and not access.members_read and access.permissions_read
    assert counts(inv)["access_policies"] == "not read" and len(inv.grants) == 2
    manifest = json.loads((tmp_path / "inv" / "manifest.json").read_text(encoding="utf-8"))
    assert "refused" in manifest["access_policies"]["why_policies"]
    assert not (tmp_path / "inv" / POLICIES_FILE).exists()
    assert "refused" in read_inventory(tmp_path / "inv").mail_access.notes["why_policies"]


@pytest.mark.parametrize("which", ["live", "exports"])
def test_northwind_plans_the_restricted_apps_and_reports_the_others(both, which):
    """Both inventory paths give the same Graph/EWS plan: the two RestrictAccess apps get their Application roles
    on exactly the flattened sets (Archive Scope's nested Sales Team; Contracts' two policies together), the
    DenyAccess and policy-less apps are reported, not planned."""
    from migrator.planner.build import PlanOptions, build_plan
    from migrator.planner.plan import check_exact
    from migrator.planner.source import Source

    inv = both[0] if which == "live" else both[1]
    plan = build_plan(Source.from_inventory(inv, "inventory", "inv", "0" * 64), PlanOptions(time_limit=10))
    assert check_exact(plan) == []
    roles = {(a.app_id, a.role) for a in plan.assignments if a.kind == "graph-ews"}
    assert roles == {(ARCHIVER, "Application Mail.Read"), (ARCHIVER, "Application Mail.Send"),
                     (CONTRACTS, "Application Mail.ReadWrite"), (CONTRACTS, "Application Calendars.Read")}
    assert plan.mail_reach[ARCHIVER] == {f"ana.silva{D}", f"ben.okafor{D}", f"chen.li{D}", f"invoices{D}"}
    assert plan.mail_reach[CONTRACTS] == {f"eli.cohen{D}", f"fay.morgan{D}", f"chen.li{D}", f"dara.walsh{D}"}
    assert sorted(p.app_id for p in plan.policies) == sorted([ARCHIVER, CONTRACTS, CONTRACTS])
    status = {a["app_id"]: (a["status"], a["planned"]) for a in plan.meta["mail_access"]["apps"]}
    assert status[EWS] == ("deny", False) and status[BOOKER] == ("tenant_wide", False)
