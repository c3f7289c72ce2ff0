"""Inventory -> plan: reuse, attribute scopes, FullAccess kept, flagged apps, batches, names, exactness."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.errors import InputError
from migrator.planner.build import PlanOptions, build_plan
from migrator.planner.plan import FUTURE_NOTE, check_exact, load_plan, write_plan
from migrator.planner.source import Source, load_source
from plan_helpers import DN_SUFFIX, addr, make_inventory, write

# Three apps whose sets need exactly two groups: {m1,m2} and {m3,m4}.
SENDAS = {"big": ["m1", "m2", "m3", "m4"], "left": ["m1", "m2"], "right": ["m3", "m4"]}


def _plan(inv, **opts):
    return build_plan(Source.from_inventory(inv, "inventory", "inventory/test", "0" * 64), PlanOptions(**opts),
                      created="2026-01-01T00:00:00Z")


def load_source_inv(inv):
    return Source.from_inventory(inv, "inventory", "inventory/test", "0" * 64)


def _effective(plan, app):
    return {m for a in plan.assignments if a.app_id == app
            for s in plan.scopes if s.key == a.scope
            for g in plan.groups if g.key in s.groups for m in g.members}


def test_minimal_plan_is_exact_and_uses_one_assignment_per_app():
    plan = _plan(make_inventory(SENDAS))
    assert check_exact(plan) == []
    assert sorted(sorted(g.members) for g in plan.groups) == [[addr("m1"), addr("m2")], [addr("m3"), addr("m4")]]
    assert plan.meta["cover"] == {"strategy": "minimal", "sets": 2, "lower_bound": 2, "optimal": True, "gap": 0,
                                  "cut": None}
    assert sorted(a.app_id for a in plan.assignments) == ["big", "left", "right"]
    for app, boxes in SENDAS.items():
        assert _effective(plan, app) == {addr(m) for m in boxes}
    big_scope = next(s for s in plan.scopes if s.key == next(a.scope for a in plan.assignments if a.app_id == "big"))
    assert big_scope.filter == "(MemberOfGroup -eq '{dn:G0001}') -or (MemberOfGroup -eq '{dn:G0002}')"
    assert len(plan.scopes) == 3 and all(g.status == "new" and g.dn == "" for g in plan.groups)


def test_per_app_strategy_makes_one_group_per_distinct_set():
    plan = _plan(make_inventory({**SENDAS, "twin": ["m1", "m2"]}), strategy="per-app")
    assert check_exact(plan) == []
    assert len(plan.groups) == 3 and len(plan.scopes) == 3 and len(plan.assignments) == 4
    assert plan.meta["cover"]["strategy"] == "per-app" and plan.meta["cover"]["lower_bound"] == 2


def test_exact_existing_group_is_reused_with_its_dn():
    inv = make_inventory(SENDAS, groups={"pair-a": ["m1", "m2"], "pair-b-plus": ["m3", "m4", "m9"],
                                         "pair-b-nested": ["m3", "m4"]},
                         other_members={"pair-b-nested": 1})
    plan = _plan(inv)
    assert check_exact(plan) == []
    reused = [g for g in plan.groups if g.status == "reuse"]
    assert [(g.address, g.dn) for g in reused] == [(addr("pair-a"), f"CN=pair-a,{DN_SUFFIX}")]
    # a superset, and a group with a nested member, are not reused: the other pair is a new group
    new = [g for g in plan.groups if g.status == "new"]
    assert [sorted(g.members) for g in new] == [[addr("m3"), addr("m4")]]
    left = next(s for s in plan.scopes if s.groups == (reused[0].key,))
    assert left.filter == f"MemberOfGroup -eq 'CN=pair-a,{DN_SUFFIX}'"


def test_attribute_scope_only_when_allowed_and_exact_case_insensitively():
    attrs = {"m1": {"CustomAttribute1": "EMEA"}, "m2": {"CustomAttribute1": "emea"},
             "m3": {"Department": "Sales"}, "m4": {"Department": "Sales"}, "m9": {"Department": "Sales"}}
    inv = make_inventory(SENDAS, attributes=attrs)
    plain = _plan(inv)
    assert all(not s.attributes for s in plain.scopes) and len(plain.groups) == 2

    plan = _plan(inv, allow_attribute_scopes=True)
    assert check_exact(plan) == []
    left = next(s for s in plan.scopes if s.key == next(a.scope for a in plan.assignments if a.app_id == "left"))
    assert left.kind == "attribute" and left.groups == ()
    assert left.filter == "CustomAttribute1 -eq 'EMEA'"
    assert FUTURE_NOTE in left.note
    # Department=Sales also holds m9, so it is not exact for {m3, m4}: a group is created instead
    assert [sorted(g.members) for g in plan.groups] == [[addr("m3"), addr("m4")]]
    big = next(s for s in plan.scopes if s.key == next(a.scope for a in plan.assignments if a.app_id == "big"))
    assert big.kind == "mixed"
    assert sorted(plan.attributes) == [("CustomAttribute1", "EMEA", addr("m1")),
                                       ("CustomAttribute1", "emea", addr("m2"))]
    assert any(FUTURE_NOTE in b.note for b in plan.batches)


def test_fullaccess_is_kept_and_flagged_apps_are_reported():
    inv = make_inventory({"a1": ["m1"], "mailer": ["m2", "m3"]}, fullaccess={"a1": ["m1"], "reader": ["m4"]},
                         permissions=[("mailer", "Microsoft Graph", "Mail.Send"),
                                      ("a1", "Office 365 Exchange Online", "SMTP.SendAsApp")])
    plan = _plan(inv, pilot=0)
    assert check_exact(plan) == []
    batch_of = {a: b.number for b in plan.batches for a in b.apps}
    kept = [g for g in plan.grants if g.action == "keep"]
    # a1's FullAccess is SMTP reach (it holds SMTP.SendAsApp): in its batch, kept for IMAP/POP; reader's is not
    assert [(g.app_id, g.mailbox, g.batch) for g in kept] == [("a1", addr("m1"), batch_of["a1"]),
                                                              ("reader", addr("m4"), None)]
    assert "FullAccess kept for IMAP/POP" in kept[0].reason and "SMTP reach: " in kept[0].reason
    assert "no SMTP reach to move" in kept[1].reason and "no RBAC role" in kept[1].reason
    assert "reader" not in {a for b in plan.batches for a in b.apps}
    assert plan.meta["flagged_apps"] == [{"app_id": "mailer", "app_name": "App mailer",
                                          "permissions": ["Microsoft Graph/Mail.Send"]}]
    mailer = [g for g in plan.grants if g.app_id == "mailer"]
    assert all(g.action == "migrate" and "unscoped Microsoft Graph/Mail.Send" in g.reason for g in mailer)
    assert "mailer (Microsoft Graph/Mail.Send)" in plan.batches[0].note


EXO = "Office 365 Exchange Online"


def _rbac_sets(plan) -> dict[str, set[str]]:
    members = {g.key: g.members for g in plan.groups}
    scopes = {s.key: set().union(*(members[k] for k in s.groups)) for s in plan.scopes}
    out: dict[str, set[str]] = {}
    for a in plan.assignments:
        out.setdefault(a.app_id, set()).update(scopes[a.scope])
    return out


def test_smtp_reach_includes_fullaccess_of_apps_holding_the_smtp_claim():
    """relay: FullAccess only, SMTP.SendAsApp; both: SendAs + FullAccess (different mailboxes), SMTP and IMAP;
    archiver: FullAccess, IMAP only. The RBAC sets are the SMTP reach; IMAP-only FullAccess stays out."""
    inv = make_inventory({"both": ["m1"]}, fullaccess={"relay": ["m2", "m3"], "both": ["m4"], "archiver": ["m5"]},
                         permissions=[("relay", EXO, "SMTP.SendAsApp"), ("both", EXO, "SMTP.SendAsApp"),
                                      ("both", EXO, "IMAP.AccessAsApp"), ("archiver", EXO, "IMAP.AccessAsApp")])
    plan = _plan(inv, pilot=0)
    assert check_exact(plan) == []
    assert _rbac_sets(plan) == {"relay": {addr("m2"), addr("m3")}, "both": {addr("m1"), addr("m4")}}
    assert all(g.action == "keep" for g in plan.grants if g.right == "FullAccess")  # nothing else serves IMAP/POP
    assert {a["app_id"]: (a["smtp_reach"], a["imap_pop"]) for a in plan.meta["fullaccess"]["apps"]} == {
        "relay": (True, False), "both": (True, True), "archiver": (False, True)}
    assert plan.meta["fullaccess"]["app_permissions"] == "known"
    # an edited plan that drops a FullAccess-only mailbox from the app's group is caught as a loss
    group = next(g for g in plan.groups if addr("m2") in g.members)
    edited = replace(plan, groups=tuple(replace(g, members=g.members - {addr("m2")}) if g is group else g
                                        for g in plan.groups))
    assert any("relay would lose 1 mailbox" in p for p in check_exact(edited))


def test_remove_fullaccess_only_for_smtp_apps_without_imap():
    inv = make_inventory({"both": ["m1"]}, fullaccess={"relay": ["m2"], "both": ["m1"], "archiver": ["m5"]},
                         permissions=[("relay", EXO, "SMTP.SendAsApp"), ("both", EXO, "SMTP.SendAsApp"),
                                      ("both", EXO, "POP.AccessAsApp"), ("archiver", EXO, "IMAP.AccessAsApp")])
    plan = build_plan(load_source_inv(inv), PlanOptions(pilot=0, time_limit=5, remove_fullaccess=True))
    assert check_exact(plan) == []
    fa = {g.app_id: g for g in plan.grants if g.right == "FullAccess"}
    assert fa["relay"].action == "migrate" and fa["relay"].batch is not None
    assert "--remove-fullaccess" in fa["relay"].reason
    assert fa["both"].action == "keep" and fa["archiver"].action == "keep"
    assert [a["app_id"] for a in plan.meta["fullaccess"]["apps"] if a["removed"]] == ["relay"]


def test_unknown_permissions_with_fullaccess_are_never_guessed():
    inv = make_inventory({"a1": ["m1"]}, fullaccess={"relay": ["m2"], "a1": ["m3"]}, permissions_known=False)
    with pytest.raises(InputError) as exc:
        _plan(inv, pilot=0, time_limit=5)
    assert "2 app(s) hold FullAccess grants" in str(exc.value) and "relay (App relay)" in str(exc.value)
    assert "--fullaccess-smtp yes" in str(exc.value)
    yes = build_plan(load_source_inv(inv), PlanOptions(pilot=0, time_limit=5, fullaccess_smtp="yes"))
    assert check_exact(yes) == [] and _rbac_sets(yes) == {"a1": {addr("m1"), addr("m3")}, "relay": {addr("m2")}}
    assert yes.meta["fullaccess"]["app_permissions"] == "unknown"
    assert all("--fullaccess-smtp yes" in a["why"] for a in yes.meta["fullaccess"]["apps"])
    no = build_plan(load_source_inv(inv), PlanOptions(pilot=0, time_limit=5, fullaccess_smtp="no",
                                                      remove_fullaccess=True))
    assert _rbac_sets(no) == {"a1": {addr("m1")}}
    assert all(g.action == "keep" and g.batch is None for g in no.grants if g.right == "FullAccess")
    # SendAs alone needs no such knowledge
    assert check_exact(_plan(make_inventory({"a1": ["m1"]}, permissions_known=False), pilot=0)) == []


def test_batches_pilot_smallest_blast_radius_then_waves_groups_created_first_needed():
    sendas = {"huge": [f"h{i}" for i in range(9)], "one": ["x1"], "two-a": ["x1", "x2"], "two-b": ["y1", "y2"],
              "three": ["x1", "x2", "y1"]}
    plan = _plan(make_inventory(sendas), pilot=1, batch_size=2)
    assert check_exact(plan) == []
    assert [b.apps for b in plan.batches] == [("one",), ("two-a", "two-b"), ("three", "huge")]
    assert plan.batches[0].note.startswith("pilot")
    batch_of = {a: b.number for b in plan.batches for a in b.apps}
    for g in plan.groups:
        users = [a.batch for a in plan.assignments for s in plan.scopes if s.key == a.scope and g.key in s.groups]
        assert g.batch == min(users)
    assert all(a.batch == batch_of[a.app_id] for a in plan.assignments)
    assert [b.grants for b in plan.batches] == [1, 4, 12]
    assert sum(b.new_groups for b in plan.batches) == len(plan.groups)


def test_pilot_ties_broken_by_fewest_new_groups():
    # both apps have two mailboxes; "reusing" needs no new group, so it goes first
    inv = make_inventory({"aaa": ["m1", "m2"], "reusing": ["m3", "m4"]}, groups={"existing": ["m3", "m4"]})
    plan = _plan(inv, pilot=1)
    assert plan.batches[0].apps == ("reusing",)


def test_names_are_unique_short_and_avoid_existing_recipients():
    inv = make_inventory(SENDAS)
    first = _plan(inv)
    clash = first.groups[0].name.lower()
    inv2 = make_inventory(SENDAS, extra_mailboxes=[clash])
    plan = _plan(inv2)
    names = [g.name for g in plan.groups] + [s.name for s in plan.scopes] + [a.name for a in plan.assignments]
    assert len(set(n.lower() for n in names)) == len(names)
    assert all(len(n) <= 64 for n in names)
    assert plan.groups[0].name.lower() == clash + "-2"
    assert [g.name for g in _plan(inv).groups] == [g.name for g in first.groups]  # deterministic


def test_bad_options_are_input_errors():
    inv = make_inventory(SENDAS)
    for opts in ({"pilot": -1}, {"batch_size": 0}, {"strategy": "fast"}, {"role": "SMTP.SendAsApp"},
                 {"prefix": "bad prefix"}, {"time_limit": 0}):
        with pytest.raises(InputError):
            _plan(inv, **opts)


app_ids = st.sampled_from([f"app{i}" for i in range(8)])
boxes = st.sampled_from([f"m{i}" for i in range(10)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sendas=st.dictionaries(app_ids, st.lists(boxes, min_size=1, max_size=8, unique=True), min_size=1),
       pilot=st.integers(0, 3), batch_size=st.integers(1, 4))
def test_random_instances_plan_exactly_and_round_trip(tmp_path_factory, sendas, pilot, batch_size):
    inv = make_inventory(sendas)
    minimal = _plan(inv, pilot=pilot, batch_size=batch_size)
    per_app = _plan(inv, strategy="per-app", pilot=pilot, batch_size=batch_size)
    for plan in (minimal, per_app):
        assert check_exact(plan) == []
        for app, ms in sendas.items():
            assert _effective(plan, app) == {addr(m) for m in ms}
        assert len(plan.groups) >= plan.meta["cover"]["lower_bound"]
    assert len(minimal.groups) <= len(per_app.groups)
    out = write_plan(minimal, tmp_path_factory.mktemp("p") / "plan")
    loaded = load_plan(out)
    assert replace(loaded, path=None) == minimal.__class__(**{**minimal.__dict__, "meta": loaded.meta})


def test_inventory_folder_to_plan(tmp_path):
    folder = write(make_inventory(SENDAS, fullaccess={"big": ["m1"]}), tmp_path / "inv")
    plan = build_plan(load_source(folder), PlanOptions())
    assert plan.meta["source"]["kind"] == "inventory" and len(plan.meta["source"]["sha256"]) == 64
    assert check_exact(plan) == []


def _independent_effective(plan, inv, app):
    """An app's mailboxes evaluated against the inventory itself (not the plan's attributes.csv), the way
    Exchange would: direct group members, or mailboxes whose attribute equals the value ignoring case."""
    out = set()
    for a in plan.assignments:
        if a.app_id != app:
            continue
        scope = next(s for s in plan.scopes if s.key == a.scope)
        for key in scope.groups:
            out |= plan.group(key).members
        for attribute, value in scope.attributes:
            out |= {mb.address for mb in inv.mailboxes if mb.attribute(attribute).casefold() == value.casefold()}
    return out


@settings(max_examples=40, deadline=None)
@given(sendas=st.dictionaries(app_ids, st.lists(boxes, min_size=1, max_size=6, unique=True), min_size=1),
       attrs=st.dictionaries(boxes, st.sampled_from(["a", "A", "b", "c"]), max_size=10),
       existing=st.lists(st.lists(boxes, min_size=1, max_size=4, unique=True), max_size=4))
def test_random_instances_with_reuse_and_attribute_scopes_stay_exact(sendas, attrs, existing):
    inv = make_inventory(sendas, attributes={m: {"CustomAttribute7": v} for m, v in attrs.items()},
                         groups={f"grp{i}": ms for i, ms in enumerate(existing)})
    plan = _plan(inv, allow_attribute_scopes=True)
    assert check_exact(plan) == []
    for app, ms in sendas.items():
        assert _independent_effective(plan, inv, app) == {addr(m) for m in ms}
    for g in plan.groups:
        if g.status == "reuse":
            assert frozenset(next(x for x in inv.groups if x.address == g.address).members) == g.members
