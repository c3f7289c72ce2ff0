"""The planner builds on existing RBAC for Applications (planner/existing.py): an app already served is not planned
again, a half-moved app gets only the rest, an app whose existing reach goes beyond its legacy grants or cannot be
told exactly is left as it is, and the plan stays exact on its own files."""

from __future__ import annotations

import dataclasses

import pytest

from migrator.errors import InputError, PlanError
from migrator.inventory.rbac import EXACT, UNKNOWN, RbacAssignment, Unknown, filter_reach
from migrator.inventory.store import RBAC_FILE, read_inventory, write_inventory
from migrator.model import RBAC_ROLE_SMTP_SEND_AS, Group, Mailbox
from migrator.planner.build import PlanOptions, build_plan
from migrator.planner.plan import KEEP, MIGRATE, ExistingAction, check_exact, load_plan, write_plan
from migrator.planner.source import load_source
from plan_helpers import DN_SUFFIX, addr, make_inventory

ROLE = RBAC_ROLE_SMTP_SEND_AS
A, B, C, D = "app-a", "app-b", "app-c", "app-d"


def _rbac(app: str, name: str, mailboxes: list[str] | None, *, role: str = ROLE, note: str = "") -> RbacAssignment:
    if mailboxes is None:
        return RbacAssignment(app, name, role, "custom", f"scope-{name}", "Department -like 'x*'", UNKNOWN,
                              frozenset(), note or "filter: the inventory does not hold the property Foo")
    return RbacAssignment(app, name, role, "custom", f"scope-{name}", "MemberOfGroup -eq 'x'", EXACT,
                          frozenset(addr(m) for m in mailboxes))


def _inventory(rbac, *, known: bool = True):
    inv = make_inventory({A: ["m1", "m2", "m3"], B: ["m1", "m2", "m3", "m4"], C: ["m5", "m6"], D: ["m7"]},
                         extra_mailboxes=["m8"])
    return dataclasses.replace(inv, rbac=tuple(rbac), rbac_known=known)


def _plan(tmp_path, inv, **options):
    folder = write_inventory(inv, tmp_path / "inv")
    plan = build_plan(load_source(folder), PlanOptions(time_limit=5, pilot=0, batch_size=10, **options),
                      created="2026-01-01T00:00:00Z")
    assert check_exact(plan) == []
    write_plan(plan, tmp_path / "plan")
    return load_plan(tmp_path / "plan")  # hashes, exactness and counts again, from the files alone


def test_covered_partial_beyond_unknown_and_other_roles(tmp_path):
    rbac = [_rbac(A, "hand-a", ["m1", "m2", "m3"]),  # exactly A's legacy set: removal only
            _rbac(B, "hand-b", ["m1", "m2"]),  # part of B's: only m3, m4 get a new assignment
            _rbac(C, "hand-c", ["m5", "m6", "m8"]),  # beyond C's: left as it is
            _rbac(D, "hand-d", None),  # unknown reach: left as it is
            _rbac(A, "mail-read", ["m8"], role="Application Mail.Read")]  # another role: recorded, not acted on
    plan = _plan(tmp_path, _inventory(rbac))
    by_app = {g.app_id: [x for x in plan.grants if x.app_id == g.app_id] for g in plan.grants}
    # A: nothing created for it, its grants removed after verification of the existing assignment
    assert not [x for x in plan.assignments if x.app_id == A]
    assert all(g.action == MIGRATE and g.batch and "hand-a" in g.reason for g in by_app[A])
    # B: one new assignment whose scope reaches exactly what hand-b does not
    new_b = [x for x in plan.assignments if x.app_id == B]
    assert len(new_b) == 1
    scope = next(s for s in plan.scopes if s.key == new_b[0].scope)
    reach = set().union(*(plan.group(k).members for k in scope.groups))
    assert reach == {addr("m3"), addr("m4")}
    # C and D: left as they are, in no batch, every grant kept, with the finding as the reason
    for app, word in ((C, "reach"), (D, "cannot be told exactly")):
        assert all(g.action == KEEP and g.batch is None and word in g.reason for g in by_app[app]), app
        assert not any(app in b.apps for b in plan.batches)
    existing = {e.assignment: e for e in plan.existing}
    assert set(existing) == {"hand-a", "hand-b", "hand-c", "hand-d"}  # the plan's role only
    assert existing["hand-a"].action == existing["hand-b"].action == ExistingAction.REUSE
    assert existing["hand-c"].action == existing["hand-d"].action == ExistingAction.LEFT
    assert existing["hand-a"].members == {addr("m1"), addr("m2"), addr("m3")} and not existing["hand-c"].members
    statuses = {a["app_id"]: a["status"] for a in plan.meta["existing_rbac"]["apps"]}
    assert statuses == {A: "covered", B: "partial", C: "beyond", D: "unknown"}
    # no duplicate: no app gets a new assignment on a scope it already holds
    assert not {(x.app_id, x.name) for x in plan.assignments} & {(e.app_id, e.assignment) for e in plan.existing}


def test_every_app_already_served_plans_nothing_to_create(tmp_path):
    inv = make_inventory({A: ["m1", "m2"]})
    inv = dataclasses.replace(inv, rbac=(_rbac(A, "hand-a", ["m1", "m2"]),), rbac_known=True)
    plan = _plan(tmp_path, inv)
    assert not plan.groups and not plan.scopes and not plan.assignments
    assert [b.apps for b in plan.batches] == [(A,)]  # the removal of its legacy grants, after verification


def test_rbac_only_apps_make_an_empty_plan(tmp_path):
    inv = make_inventory({}, fullaccess={A: ["m1"]}, extra_mailboxes=["m2"], permissions=[])  # no SMTP claim now
    inv = dataclasses.replace(inv, rbac=(_rbac(A, "done-a", ["m2"]),), rbac_known=True)
    plan = _plan(tmp_path, inv)
    assert not plan.batches and not plan.assignments
    assert [(e.action, e.batch) for e in plan.existing] == [(ExistingAction.NONE, None)]
    assert plan.meta["existing_rbac"]["apps"][0]["status"] == "rbac_only"


def test_not_read_is_said_and_plans_as_before(tmp_path):
    plan = _plan(tmp_path, _inventory([], known=False))
    assert plan.meta["existing_rbac"]["read"] is False and not plan.existing
    assert not (tmp_path / "plan" / "existing.csv").exists()


def test_a_reused_assignment_must_carry_the_apps_whole_reach(tmp_path):
    plan = _plan(tmp_path, _inventory([_rbac(A, "hand-a", ["m1", "m2", "m3"])]))
    e = plan.existing[0]
    shrunk = dataclasses.replace(plan, existing=(dataclasses.replace(e, members=e.members - {addr("m1")}),))
    assert any("would lose 1 mailbox" in p for p in check_exact(shrunk))
    kept_in_batch = dataclasses.replace(plan, grants=tuple(
        g._replace(action=KEEP) if g.app_id == A and g.mailbox == addr("m1") else g for g in plan.grants))
    assert any("keeps SendAs grants" in p or "must be migrated" in p for p in check_exact(kept_in_batch))


def test_an_edited_existing_file_is_refused_naming_it(tmp_path):
    _plan(tmp_path, _inventory([_rbac(A, "hand-a", ["m1", "m2", "m3"])]))
    path = tmp_path / "plan" / "existing_members.csv"
    path.write_text(path.read_text().replace("m3@", "m8@"))
    with pytest.raises(PlanError, match=r"existing_members\.csv"):
        load_plan(tmp_path / "plan")


# ------------------------------------------------------------------------------------- filters and the CSV file

MBX = [Mailbox(addr("m1"), name="m1", alias="m1", attributes=(("Department", "Sales"),)),
       Mailbox(addr("m2"), name="m2", alias="m2", attributes=(("Department", "sales"), ("CustomAttribute1", "x"))),
       Mailbox(addr("m3"), name="m3", alias="m3", recipient_type="SharedMailbox")]
GROUPS = [Group(addr("g1"), "g1", f"CN=g1,{DN_SUFFIX}", members=frozenset({addr("m1"), addr("m3")}), other_members=1)]


@pytest.mark.parametrize("text, want", [
    (f"MemberOfGroup -eq 'CN=g1,{DN_SUFFIX}'", {"m1", "m3"}),
    (f"(MemberOfGroup -eq 'cn=G1,{DN_SUFFIX}') -or (CustomAttribute1 -eq 'x')", {"m1", "m2", "m3"}),
    ("Department -eq 'SALES' -and -not (CustomAttribute1 -eq 'x')", {"m1"}),
    ("RecipientTypeDetails -eq 'SharedMailbox'", {"m3"}),
    ("Department -ne 'Sales'", {"m3"}),
    ("CustomAttribute1 -eq $null", {"m1", "m3"}),
    ("Alias -like 'm*'", {"m1", "m2", "m3"}),
])
def test_filters_the_inventory_can_evaluate(text, want):
    assert filter_reach(text, MBX, GROUPS) == {addr(m) for m in want}


@pytest.mark.parametrize("text, why", [
    ("MemberOfGroup -eq 'CN=other'", "no group"),
    ("Title -eq 'boss'", "Title"),
    ("Department -eq 'Sales' -and", "ends too early"),
    ("(Department -eq 'Sales'", "ends too early"),
    ("(Department -eq 'Sales'))", "cannot read the filter after"),
    ("Department -gt 'a'", "operator"),
])
def test_filters_it_cannot_are_unknown_never_guessed(text, why):
    with pytest.raises(Unknown, match=why):
        filter_reach(text, MBX, GROUPS)


def test_member_of_group_without_groups_read_is_unknown():
    with pytest.raises(Unknown, match="no groups"):
        filter_reach(f"MemberOfGroup -eq 'CN=g1,{DN_SUFFIX}'", MBX, None)


def test_rbac_file_round_trip_and_bad_rows_name_file_row_field(tmp_path):
    inv = _inventory([_rbac(A, "hand-a", ["m1", "m2"]), _rbac(D, "hand-d", None)])
    folder = write_inventory(inv, tmp_path / "inv")
    back = read_inventory(folder)
    assert back.rbac_known and back.rbac == tuple(sorted(inv.rbac, key=lambda a: (a.app_id, a.name)))
    assert back.manifest["counts"]["rbac_assignments"] == 2 and back.manifest["counts"]["rbac_unknown_reach"] == 1
    text = (folder / RBAC_FILE).read_text(encoding="utf-8")
    header, *rows = text.splitlines()
    cases = [
        (rows[0].replace(",exact,", ",maybe,"), "reach"),
        (rows[0].replace(addr("m2"), "nobody@example.com"), "mailboxes"),
        (rows[0].replace(ROLE, "Mail Recipients", 1), "role"),
        (rows[0].replace(A, "app-zz", 1), "app_id"),
        (rows[1].replace(",unknown,,", f",unknown,{addr('m1')},"), "mailboxes"),
        (rows[0].replace(",custom,", ",everywhere,"), "scope_type"),
    ]
    for bad, field in cases:
        (folder / RBAC_FILE).write_text("\n".join([header, bad, *rows[1:]]) + "\n", encoding="utf-8")
        with pytest.raises(InputError) as exc:
            read_inventory(folder)
        assert exc.value.path.endswith(RBAC_FILE) and exc.value.row == 2 and exc.value.field == field, (bad, field)
    (folder / RBAC_FILE).write_text("\n".join([header, rows[0] + ",extra"]) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="wrong number of fields"):
        read_inventory(folder)


def test_the_powershell_export_verifies_a_reused_assignment_before_removing_grants(tmp_path):
    from migrator.powershell.export import export_batch
    from ps_grammar import syntax_errors

    plan = _plan(tmp_path, _inventory([_rbac(A, "hand-a", ["m1", "m2", "m3"]), _rbac(B, "hand-b", ["m1", "m2"])]))
    batch_of = {a: b.number for b in plan.batches for a in b.apps}
    script = export_batch(plan, batch_of[A])
    assert syntax_errors(script) == []
    # A has no new assignment: its role comes from the reused one, so the verify step tests its mailboxes
    assert "[ordered]@{ Name = 'hand-a'; AppId = 'app-a'; Role = 'Application SMTP.SendAsApp' }" in script
    assert "@(@($Assignments) + @($ExistingAssignments)" in script
    script_b = export_batch(plan, batch_of[B])  # its exactness guard counts hand-b's mailboxes with the new scope
    assert syntax_errors(script_b) == [] and "'hand-b'" in script_b
