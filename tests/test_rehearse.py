"""`migrator rehearse`: an inventory as a sandbox fixture, the sample plan rehearsed clean under both claim rules,
and a broken plan (a group with an extra member) caught as an over-grant by the sandbox's timeline."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.inventory.exports import inventory_from_exports
from migrator.inventory.store import write_inventory
from migrator.planner.build import PlanOptions, build_plan
from migrator.planner.plan import load_plan, write_plan
from migrator.planner.source import load_source
from migrator.rehearse import copy_plan, find_source, rehearse_once, source_inventory
from migrator.sandbox.from_inventory import fixture_from_folder, fixture_from_inventory
from migrator.sandbox.state import TenantState
from migrator.sandbox.state_backend import StateBackend

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "migrator" / "samples" / "contoso"
SAMPLE_PLAN = ROOT / "plans" / "contoso"


@pytest.fixture(scope="module")
def sample_inventory(tmp_path_factory) -> Path:
    """The sample tenant's inventory, made from its exports as plans/contoso was (inventory/ is not committed)."""
    out = tmp_path_factory.mktemp("inv") / "contoso"
    write_inventory(inventory_from_exports(SAMPLE / "exports"), out)
    return out


def _grants(pairs: dict[str, list[str]]) -> str:
    rows = ["app_id,mailbox,right,app_name"]
    for app, mailboxes in pairs.items():
        rows += [f"{app},{m},SendAs,App {app[:4]}" for m in mailboxes]
    return "\n".join(rows) + "\n"


# ---- from_inventory ---------------------------------------------------------------------------------------------
def test_fixture_from_sample_inventory_holds_the_same_grants_groups_and_defaults(sample_inventory):
    fixture = fixture_from_folder(sample_inventory)
    state = TenantState.from_fixture(fixture)
    original = TenantState.from_fixture(json.loads((SAMPLE / "tenant.json").read_text(encoding="utf-8")))
    # The same effective SendAs grants (app, mailbox) as the tenant the inventory was read from.
    assert StateBackend(state).original_grants == StateBackend(original).original_grants
    assert len(StateBackend(state).original_grants) == 357
    # Existing groups keep their DN (a reused group's scope filter names it) and their mailbox members.
    old = {r.primary_smtp: r for r in original.recipients.values() if r.is_group}
    new = {r.primary_smtp: r for r in state.recipients.values() if r.is_group}
    assert set(new) == set(old)
    for address, group in new.items():
        assert group.dn == old[address].dn
        members = {state.recipients[g].primary_smtp for g in group.members}
        assert members == {original.recipients[g].primary_smtp for g in old[address].members
                           if original.recipients[g].kind == "mailbox"}
    # The sample inventory holds the apps' Entra roles (its app-role export): the same claims, the same SMTP and
    # IMAP/POP reach, and the pointers named as Exchange showed them; the admin can do the run.
    apps = [a for a in original.apps.values() if not a.is_admin and a.exchange_pointer]
    assert {a.app_id: (state.claim_now(a.app_id), state.imap_claim_now(a.app_id)) for a in apps} == \
        {a.app_id: (original.claim_now(a.app_id), original.imap_claim_now(a.app_id)) for a in apps}
    assert state.smtp_reach_grants() == original.smtp_reach_grants()
    assert {a.app_id: state.apps[a.app_id].pointer_name for a in apps} == {a.app_id: a.pointer_name for a in apps}
    admin = state.apps[state.admin_app_id]
    assert "Exchange Administrator" in admin.directory_roles
    assert "Exchange.ManageAsApp" in state.token_roles(admin.app_id, "https://outlook.office365.com")
    assert not any("SMTP.SendAsApp" in note for note in fixture["notes"])


def test_fixture_from_a_bare_grants_csv_creates_its_mailboxes_and_apps(tmp_path):
    csv = tmp_path / "grants.csv"
    csv.write_text(_grants({"a1": ["x@fabrikam.com", "y@fabrikam.com"], "b2": ["y@fabrikam.com"]}), encoding="utf-8")
    fixture = fixture_from_inventory(source_inventory(load_source(csv)))
    state = TenantState.from_fixture(fixture)
    assert StateBackend(state).original_grants == {("a1", "x@fabrikam.com"), ("a1", "y@fabrikam.com"),
                                                  ("b2", "y@fabrikam.com")}
    assert fixture["tenant"]["domain"] == "fabrikam.onmicrosoft.com"
    # a grants CSV does not say which Entra roles the apps hold: every app is given SMTP.SendAsApp, and told so
    assert all(state.claim_now(a.app_id) for a in state.apps.values() if not a.is_admin)
    assert any("SMTP.SendAsApp" in note for note in fixture["notes"])


# ---- the sample plan ----------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_rehearse_sample_plan_is_clean_under_both_claim_rules(sample_inventory):
    before = sorted(p.name for p in SAMPLE_PLAN.iterdir())
    result = CliRunner().invoke(main, ["rehearse", str(SAMPLE_PLAN), "--inventory", str(sample_inventory), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True
    assert [r["claim_rule"] for r in data["rehearsals"]] == ["documented", "union"]
    for r in data["rehearsals"]:
        assert r["gaps"] == [] and r["overgrants"] == [] and r["end_state"] == []
        assert set(r["batches"].values()) == {"done"} and len(r["batches"]) == 4
        assert sum(r["faults"].values()) > 0  # faults were injected, and survived
        # The apps signed in over SMTP all along: always on their original mailboxes, never on others, and every
        # answer is what the timeline predicts.
        assert r["smtp"]["probes"] > 0 and r["smtp"]["granted"] > 0 and r["smtp"]["denied"] > 0
        assert (r["smtp"]["gaps"], r["smtp"]["overgrants"], r["smtp"]["errors"]) == ([], [], [])
        assert r["smtp"]["disagreements"] == 0 and r["smtp"]["ok"] is True
    # The real plan folder is untouched: the rehearsal ran on a copy with its own journal.
    assert sorted(p.name for p in SAMPLE_PLAN.iterdir()) == before


def test_rehearse_refuses_an_inventory_that_is_not_the_plans_source(tmp_path):
    other = tmp_path / "grants.csv"
    other.write_text(_grants({"a1": ["x@contoso.com"]}), encoding="utf-8")
    result = CliRunner().invoke(main, ["rehearse", str(SAMPLE_PLAN), "--inventory", str(other)])
    assert result.exit_code == 2
    assert "is not the inventory this plan was made from" in result.output


def test_rehearse_says_where_the_missing_source_was_expected(tmp_path, monkeypatch):
    plan_copy = copy_plan(load_plan(SAMPLE_PLAN), tmp_path / "plans" / "contoso")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["rehearse", str(plan_copy)])
    assert result.exit_code == 2
    assert "inventory/contoso" in result.output and "--inventory" in result.output


# ---- a broken plan ------------------------------------------------------------------------------------------------
@pytest.fixture
def small_plan(tmp_path):
    """Three apps over eight mailboxes; the plan puts the shared mailboxes in a group used by two apps."""
    csv = tmp_path / "grants.csv"
    csv.write_text(_grants({
        "aaaa1111": ["m1@fabrikam.com", "m2@fabrikam.com", "m3@fabrikam.com", "m4@fabrikam.com"],
        "bbbb2222": ["m1@fabrikam.com", "m2@fabrikam.com", "m3@fabrikam.com", "m5@fabrikam.com"],
        "cccc3333": ["m6@fabrikam.com", "m7@fabrikam.com", "m8@fabrikam.com"],
    }), encoding="utf-8")
    plan = build_plan(load_source(csv), PlanOptions(batch_size=4, pilot=0))
    write_plan(plan, tmp_path / "plan")
    return load_plan(tmp_path / "plan"), csv


def test_small_plan_rehearses_clean(small_plan):
    plan, csv = small_plan
    fixture = fixture_from_inventory(source_inventory(find_source(plan, csv)))
    result = rehearse_once(plan, fixture, claim_rule="documented", faults="none")
    assert result.ok, (result.gaps, result.overgrants, result.end_state, result.problems)


def test_a_group_with_an_extra_member_is_reported_as_an_over_grant(small_plan, tmp_path):
    """load_plan refuses such a plan (hashes and the exactness check), and rightly so. The honest way to rehearse
    one is to build the broken Plan object in memory, bypassing those checks, and see that the sandbox's own
    timeline (not the planner's checker) catches what it would do to the tenant."""
    plan, csv = small_plan
    group = max(plan.groups, key=lambda g: (g.apps, g.key))  # the most shared group
    users = {a.app_id for a in plan.assignments
             if any(group.key in s.groups for s in plan.scopes if s.key == a.scope)}
    assert users
    held = {g.mailbox for g in plan.grants if g.app_id in users}
    extra = min({g.mailbox for g in plan.grants} - held)  # a tenant mailbox none of the group's apps may send as
    broken_group = dataclasses.replace(group, members=frozenset(group.members | {extra}))
    folder = copy_plan(plan, tmp_path / "broken")
    broken = dataclasses.replace(plan, groups=tuple(broken_group if g.key == group.key else g for g in plan.groups),
                                 path=folder)
    fixture = fixture_from_inventory(source_inventory(find_source(plan, csv)))
    result = rehearse_once(broken, fixture, claim_rule="documented", faults="none", max_resumes=0,
                           smtp_sample=(8, 8))
    assert not result.ok
    assert result.gaps == []
    assert {(i.app_id, i.mailbox) for i in result.overgrants} == {(app, extra) for app in users}
    # Over the wire nothing was ever accepted: the verify step stopped the batch before the propagation wait, so no
    # token could use the wrong scope (tests/test_smtp_witness.py shows the witness catching one that takes effect).
    assert result.statuses == {1: "failed"}
    assert result.smtp["overgrants"] == [] and result.smtp["probes"] > 0
    assert result.smtp["gaps"] == [] and result.smtp["disagreements"] == 0


def test_a_hand_edited_plan_is_refused_before_any_rehearsal(small_plan, tmp_path):
    plan, csv = small_plan
    memberships = Path(plan.path) / "memberships.csv"
    lines = memberships.read_text(encoding="utf-8").splitlines()
    group_key = lines[1].split(",")[0]
    memberships.write_text("\n".join(lines + [f"{group_key},m8@fabrikam.com"]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["rehearse", str(plan.path), "--inventory", str(csv)])
    assert result.exit_code == 2
    assert "memberships.csv" in result.output
