"""`migrator rehearse` on a plan that moves Graph/EWS access (plans/northwind): the rehearsal tenant keeps the
policies' identities (their tenant id), the timeline is checked per permission, and the end state says whether
each moved app reaches exactly its set with its consents and policies gone, and each reported app is untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.inventory.exports import inventory_from_exports
from migrator.inventory.store import write_inventory
from migrator.planner.plan import load_plan
from migrator.rehearse import mail_end_state_problems
from migrator.sandbox.from_inventory import fixture_from_inventory

ROOT = Path(__file__).resolve().parent.parent
NORTHWIND_PLAN = ROOT / "plans" / "northwind"
EXPORTS = ROOT / "migrator" / "samples" / "northwind" / "exports"
ARCHIVER = "4e0f0000-0000-4000-8000-000000000002"
EWS = "4e0f0000-0000-4000-8000-000000000003"


@pytest.fixture(scope="module")
def northwind_inventory(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inv") / "northwind"
    write_inventory(inventory_from_exports(EXPORTS), out)
    return out


def test_the_rehearsal_tenant_keeps_the_tenant_id_of_the_policies_identities():
    inv = inventory_from_exports(EXPORTS)
    tenant = fixture_from_inventory(inv)["tenant"]["id"]
    assert {p.identity.split("\\")[0] for p in inv.mail_access.policies} == {tenant}


@pytest.mark.integration
def test_rehearse_northwind_is_clean_per_permission_under_both_claim_rules(northwind_inventory):
    result = CliRunner().invoke(main, ["rehearse", str(NORTHWIND_PLAN), "--inventory", str(northwind_inventory),
                                       "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and [r["claim_rule"] for r in data["rehearsals"]] == ["documented", "union"]
    for r in data["rehearsals"]:
        assert r["mail_gaps"] == [] and r["mail_overgrants"] == [] and r["end_state"] == []
        assert set(r["batches"].values()) == {"done"}


class FakeSandbox:
    def __init__(self, reach, config):
        self.reach, self.config = reach, config

    def mail_access(self, apps):
        return {a: self.reach.get(a, {}) for a in apps}

    def mail_config(self, apps):
        return {a: self.config[a] for a in apps if a in self.config}


def test_mail_end_state_names_what_differs():
    plan = load_plan(NORTHWIND_PLAN)
    reach = sorted(plan.mail_reach[ARCHIVER])
    good = {ARCHIVER: {"Mail.Read": frozenset(reach), "Mail.Send": frozenset(reach)}}
    moved_config = {"consents": [], "policies": []}
    ews_before = {"consents": ["full_access_as_app"], "policies": [("DenyAccess", "legal-team@northwind.example")]}
    contracts = next(a for a in plan.mail_apps() if a != ARCHIVER)
    contracts_reach = frozenset(plan.mail_reach[contracts])
    full = {**good, contracts: {"Mail.ReadWrite": contracts_reach, "Calendars.Read": contracts_reach}}
    before = {EWS: ews_before}
    clean = FakeSandbox(full, {ARCHIVER: moved_config, contracts: moved_config, EWS: ews_before})
    assert mail_end_state_problems(clean, plan, {1, 2}, before) == []

    wide = FakeSandbox({**full, ARCHIVER: {**good[ARCHIVER], "Mail.Send": None}},
                       {ARCHIVER: {"consents": ["Mail.Send"], "policies": []}, contracts: moved_config,
                        EWS: {"consents": ["full_access_as_app"], "policies": []}})
    problems = mail_end_state_problems(wide, plan, {1, 2}, before)
    assert f"app {ARCHIVER}: Mail.Send reaches every mailbox, the plan says 4" in problems
    assert f"app {ARCHIVER}: Entra consent Mail.Send is held, the plan removed it" in problems
    assert f"app {EWS} (reported, not moved): its consents or policies changed" in problems
