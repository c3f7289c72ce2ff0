"""The pure planner of `migrator grant`/`revoke` (migrator/change/): the smallest exact change, checked on small
hand-made setups and, by hypothesis, on random ones (every app's reach moves by exactly the request), plus the
drift check against the recorded state and the change's plan folder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migrator.change.folder import change_plan
from migrator.change.incremental import (
    COPY_ON_WRITE,
    GRANT,
    NEW_GROUP,
    NOTHING,
    OWN_GROUP,
    REVOKE,
    check_change,
    drift,
    plan_change,
    simulate,
)
from migrator.change.setup import (
    AssignmentState,
    GroupState,
    ScopeState,
    Setup,
    filter_groups,
    resolve_app,
    resolve_mailboxes,
)
from migrator.errors import InputError
from migrator.planner.plan import check_exact, load_plan, write_plan

SUFFIX = ",OU=contoso,DC=x"


def _mb(i: int) -> str:
    return f"m{i:02d}@contoso.com"


def make_setup(groups: dict[str, set[int]], app_scopes: dict[str, list[list[str]]], mailboxes: int = 12,
               claims=(), legacy=()) -> Setup:
    """groups: name -> mailbox numbers; app_scopes: app -> one list of group names per assignment."""
    s = Setup()
    for name, members in groups.items():
        s.groups[name] = GroupState(name, f"CN={name}{SUFFIX}", frozenset(_mb(i) for i in members))
    for app, scopes in app_scopes.items():
        for n, names in enumerate(scopes):
            scope = f"scope-{app}-{n}"
            text = " -or ".join(f"(MemberOfGroup -eq 'CN={g}{SUFFIX}')" for g in names)
            s.scopes[scope] = ScopeState(scope, text, tuple(names), True)
            s.assignments[f"asg-{app}-{n}"] = AssignmentState(f"asg-{app}-{n}", app, scope)
        s.app_names[app] = (f"App {app}", app)
    s.claims = frozenset(claims)
    s.legacy = frozenset(legacy)
    s.mailbox_names = {_mb(i): _mb(i) for i in range(mailboxes)} | {f"alias{i}": _mb(i) for i in range(mailboxes)}
    return s


def test_grant_to_an_app_with_its_own_group_only_adds_members():
    s = make_setup({"own": {1, 2}, "shared": {3, 4}}, {"a": [["own", "shared"]], "b": [["shared"]]})
    change = plan_change(s, GRANT, "a", (_mb(5), _mb(6), _mb(1)))
    assert change.strategy == OWN_GROUP
    assert change.member_adds == (("own", _mb(5)), ("own", _mb(6)))
    assert change.unchanged == (_mb(1),)
    assert not change.new_groups and not change.new_scopes and not change.new_assignments
    assert not change.removed_assignments and not change.member_removes


def test_grant_when_every_group_is_shared_makes_one_group_scope_and_assignment():
    s = make_setup({"shared": {3, 4}}, {"a": [["shared"]], "b": [["shared"]]})
    change = plan_change(s, GRANT, "a", (_mb(5),))
    assert change.strategy == NEW_GROUP
    assert [g.members for g in change.new_groups] == [frozenset({_mb(5)})]
    assert len(change.new_scopes) == len(change.new_assignments) == 1
    assert not change.member_adds and not change.removed_assignments
    assert simulate(s, change).rbac_reach("b") == s.rbac_reach("b")
    # the next grant to the same app finds the new group its own
    after = simulate(s, change)
    assert plan_change(after, GRANT, "a", (_mb(7),)).strategy == OWN_GROUP


def test_a_group_another_application_role_names_is_not_the_apps_own():
    """An app's Mail.Send (or the same app's) scoped on the group: a member added there would widen it too."""
    s = make_setup({"own": {1, 2}}, {"a": [["own"]]})
    s.other_users["own"] = {"b (Application Mail.Send)"}
    assert plan_change(s, GRANT, "a", (_mb(5),)).strategy == NEW_GROUP
    assert plan_change(s, REVOKE, "a", (_mb(1),)).strategy == COPY_ON_WRITE
    s.other_users["own"] = {"a (Application Mail.Send)"}
    assert plan_change(s, GRANT, "a", (_mb(5),)).strategy == NEW_GROUP


def test_revoke_from_an_own_group_removes_members_only():
    s = make_setup({"own": {1, 2}, "shared": {3, 4}}, {"a": [["own", "shared"]], "b": [["shared"]]})
    change = plan_change(s, REVOKE, "a", (_mb(1), _mb(9)))
    assert change.strategy == OWN_GROUP
    assert change.member_removes == (("own", _mb(1)),)
    assert change.unchanged == (_mb(9),)
    assert not change.new_groups and not change.removed_assignments


def test_revoke_from_a_shared_group_is_a_copy_on_write():
    s = make_setup({"own": {1, 2}, "shared": {3, 4, 5}}, {"a": [["own", "shared"]], "b": [["shared"]]})
    change = plan_change(s, REVOKE, "a", (_mb(3),))
    assert change.strategy == COPY_ON_WRITE
    assert [g.members for g in change.new_groups] == [frozenset({_mb(4), _mb(5)})]
    assert change.new_scopes[0].groups == ("own", "N1")  # the own group kept, the copy added
    assert change.removed_assignments == ("asg-a-0",)
    after = simulate(s, change)
    assert after.groups["shared"] == s.groups["shared"]  # the other app's group is not touched
    assert after.rbac_reach("a") == frozenset({_mb(1), _mb(2), _mb(4), _mb(5)})


def test_a_copy_on_write_removes_the_old_scope_last_when_no_assignment_uses_it(tmp_path):
    from migrator.change.render import change_text

    s = make_setup({"own": {1, 2}, "shared": {3, 4, 5}}, {"a": [["own", "shared"]], "b": [["shared"]]})
    change = plan_change(s, REVOKE, "a", (_mb(3),))
    assert change.removed_scopes == ("scope-a-0",)
    after = simulate(s, change)
    assert "scope-a-0" not in after.scopes and "scope-b-0" in after.scopes
    plan = load_plan(write_plan(change_plan(s, change, created="2026-01-01T00:00:00Z"), tmp_path / "c"))
    section = plan.meta["change"]
    assert section["removed_scopes"] == ["scope-a-0"] and section["removed_scope_names"] == ["scope-a-0"]
    assert section["before"]["scopes"]["scope-a-0"]  # its filter, for the rollback and the drift check
    assert drift(section["before"], section, after) == []  # the scope gone is the change's own doing
    text = change_text(plan)
    assert text.index("remove the app's role assignment 'asg-a-0'") < text.index("remove the old scope 'scope-a-0'")
    # an own-group revoke removes no scope
    assert plan_change(s, REVOKE, "a", (_mb(1),)).removed_scopes == ()


def test_a_scope_another_assignment_uses_is_never_planned_for_removal():
    s = make_setup({"shared": {3, 4, 5}}, {"a": [["shared"]], "b": [["shared"]]})
    s.assignments["asg-b-1"] = AssignmentState("asg-b-1", "b", "scope-a-0")  # b's SMTP assignment on a's scope
    change = plan_change(s, REVOKE, "a", (_mb(3),))
    assert change.removed_assignments == ("asg-a-0",) and change.removed_scopes == ()
    s = make_setup({"shared": {3, 4, 5}}, {"a": [["shared"]], "b": [["shared"]]})
    s.other_scopes["scope-a-0"] = {"c (Application Mail.Send)"}  # another role's assignment on it
    assert plan_change(s, REVOKE, "a", (_mb(3),)).removed_scopes == ()
    # and a scope the tenant shows unused drifts when gone only if the change did not plan its removal
    section = change_plan(s, plan_change(s, REVOKE, "a", (_mb(3),))).meta["change"]
    gone = simulate(s, plan_change(s, REVOKE, "a", (_mb(3),)))
    del gone.scopes["scope-a-0"]
    assert drift(section["before"], section, gone) == ["scope 'scope-a-0' is gone"]


def test_revoke_everything_of_a_shared_group_only_removes_the_assignment():
    s = make_setup({"shared": {3}}, {"a": [["shared"]], "b": [["shared"]]})
    change = plan_change(s, REVOKE, "a", (_mb(3),))
    assert change.removed_assignments == ("asg-a-0",) and not change.new_groups and not change.new_scopes


def test_nothing_to_do():
    s = make_setup({"own": {1}}, {"a": [["own"]]})
    assert plan_change(s, GRANT, "a", (_mb(1),)).strategy == NOTHING
    assert plan_change(s, REVOKE, "a", (_mb(2),)).empty


def test_refusals_name_the_problem():
    s = make_setup({"own": {1}}, {"a": [["own"]]}, claims={"a"})
    with pytest.raises(InputError, match=r"still holds the Entra SMTP\.SendAsApp"):
        plan_change(s, GRANT, "a", (_mb(2),))
    s = make_setup({"own": {1}}, {"a": [["own"]]}, legacy={("a", _mb(1), "SendAs")})
    with pytest.raises(InputError, match=r"Remove-RecipientPermission -Identity 'm01@contoso\.com'"):
        plan_change(s, REVOKE, "a", (_mb(1),))
    s = make_setup({"own": {1}}, {"a": [["own"]]})
    s.scopes["scope-a-0"] = ScopeState("scope-a-0", "CustomAttribute1 -eq 'x'", (), False)
    with pytest.raises(InputError, match="MemberOfGroup terms"):
        plan_change(s, GRANT, "a", (_mb(2),))


def test_names_resolve_or_fail_clearly():
    s = make_setup({"own": {1}}, {"a": [["own"]], "b": [["own"]]})
    assert resolve_app(s, "App a") == "a"
    s.app_names["b"] = ("App a", "b")
    with pytest.raises(InputError, match="names 2 apps"):
        resolve_app(s, "App a")
    with pytest.raises(InputError, match="no app"):
        resolve_app(s, "nobody")
    assert resolve_mailboxes(s, ["ALIAS3", _mb(3)]) == (_mb(3),)
    with pytest.raises(InputError, match="no mailbox named 'x@y'"):
        resolve_mailboxes(s, ["x@y"])


def test_a_name_two_mailboxes_answer_to_is_refused_and_an_address_is_never_ambiguous():
    from types import SimpleNamespace as NS

    from migrator.audit.observed import Observed, _add_names

    def mailbox(address, alias, name):
        return NS(address=address, alias=alias, upn=address, name=name)

    inventory = NS(rbac=[], service_principals=[], mailboxes=[
        mailbox("sales@contoso.com", "sales", "Sales"),
        mailbox("sales.emea@contoso.com", "sales@contoso.com", "Sales"),  # an alias equal to the other's address
    ])
    obs = Observed()
    _add_names(obs, inventory)
    assert obs.ambiguous_mailbox_names == {"sales": ("sales.emea@contoso.com", "sales@contoso.com")}
    assert obs.mailbox_names["sales@contoso.com"] == "sales@contoso.com"
    s = make_setup({"own": {1}}, {"a": [["own"]]})
    s.mailbox_names.update(obs.mailbox_names)
    s.ambiguous_mailbox_names = dict(obs.ambiguous_mailbox_names)
    assert resolve_mailboxes(s, ["SALES@contoso.com"]) == ("sales@contoso.com",)
    with pytest.raises(InputError, match="'Sales' names 2 mailboxes") as err:
        resolve_mailboxes(s, ["Sales"])
    assert err.value.field == "MAILBOX"


def test_filters_are_understood_only_when_made_of_known_group_terms():
    dns = {f"cn=g{i}{SUFFIX}".lower(): f"g{i}" for i in range(3)}
    assert filter_groups(f"(MemberOfGroup -eq 'CN=g0{SUFFIX}') -or (MemberOfGroup -eq 'CN=g1{SUFFIX}')", dns) == (
        ("g0", "g1"), True)
    assert filter_groups(f"MemberOfGroup -eq 'CN=g2{SUFFIX}'", dns) == (("g2",), True)
    assert filter_groups(f"(MemberOfGroup -eq 'CN=g0{SUFFIX}') -or (Department -eq 'Sales')", dns)[1] is False
    assert filter_groups(f"(MemberOfGroup -eq 'CN=g0{SUFFIX}') -and (Department -eq 'x')", dns) == (("g0",), False)
    assert filter_groups(f"-not (MemberOfGroup -ne 'CN=g1{SUFFIX}')", dns) == (("g1",), False)  # depends on g1
    assert filter_groups("MemberOfGroup -eq 'CN=unknown'", dns) == ((), False)
    assert filter_groups("MemberOfGroup -eq 'CN=O''Neil,DC=x'", {"cn=o'neil,dc=x": "o"}) == (("o",), True)
    assert filter_groups("MemberOfGroup -eq 'CN=unterminated", dns) == ((), False)


def test_drift_allows_the_change_half_done_and_nothing_else(tmp_path):
    s = make_setup({"own": {1, 2}, "shared": {3, 4, 5}}, {"a": [["own", "shared"]], "b": [["shared"]]})
    change = plan_change(s, REVOKE, "a", (_mb(1), _mb(3)))
    plan = change_plan(s, change)
    section = plan.meta["change"]
    assert drift(section["before"], section, s) == []
    assert drift(section["before"], section, simulate(s, change)) == []
    edited = simulate(s, change)
    edited.groups["shared"] = GroupState("shared", s.groups["shared"].dn, s.groups["shared"].members | {_mb(9)})
    assert drift(section["before"], section, edited) == ["group 'shared': member added: m09@contoso.com"]
    edited.assignments["new"] = AssignmentState("new", "c", "scope-b-0")
    assert "role assignment 'new' (app c) is new since the change was planned" in drift(section["before"], section,
                                                                                          edited)


def test_the_change_plan_folder_is_exact_and_loads(tmp_path):
    s = make_setup({"own": {1, 2}, "shared": {3, 4, 5}}, {"a": [["own", "shared"]], "b": [["shared"]]})
    change = plan_change(s, REVOKE, "a", (_mb(1), _mb(3)))
    plan = change_plan(s, change, created="2026-01-01T00:00:00Z")
    assert check_exact(plan) == []
    loaded = load_plan(write_plan(plan, tmp_path / "c"))
    assert {g.mailbox for g in loaded.grants} == {_mb(2), _mb(4), _mb(5)}
    assert loaded.meta["change"]["removed_assignment_names"] == ["asg-a-0"]
    assert [g.status for g in loaded.groups] == ["reuse", "new"]


@st.composite
def setups(draw):
    n_groups = draw(st.integers(1, 5))
    groups = {f"g{i}": draw(st.sets(st.integers(0, 9), min_size=1, max_size=5)) for i in range(n_groups)}
    apps = {}
    for a in range(draw(st.integers(1, 4))):
        scopes = draw(st.lists(st.lists(st.sampled_from(sorted(groups)), min_size=1, max_size=3, unique=True),
                               min_size=0, max_size=2))
        apps[f"app{a}"] = scopes
    return make_setup(groups, apps)


@settings(max_examples=150, deadline=None)
@given(setups(), st.data())
def test_every_app_moves_by_exactly_the_request(setup, data):
    app = data.draw(st.sampled_from(sorted(setup.app_names)))
    kind = data.draw(st.sampled_from([GRANT, REVOKE]))
    wanted = tuple(_mb(i) for i in data.draw(st.sets(st.integers(0, 11), min_size=1, max_size=4)))
    change = plan_change(setup, kind, app, wanted)  # check_change inside: raises on any inexactness
    check_change(setup, change)
    after = simulate(setup, change)
    for other in setup.app_names:
        if other != app:
            assert after.rbac_reach(other) == setup.rbac_reach(other)
    expected = (setup.rbac_reach(app) | set(wanted)) if kind == GRANT else (setup.rbac_reach(app) - set(wanted))
    assert after.rbac_reach(app) == expected
    in_use = {a.scope for a in after.assignments.values()}
    assert not set(change.removed_scopes) & in_use  # never a scope an assignment still uses
    if kind == GRANT and change.strategy == OWN_GROUP:  # minimal: member adds and nothing else
        assert not (change.new_groups or change.new_scopes or change.new_assignments or change.removed_assignments)
    if change.effective:
        assert check_exact(change_plan(setup, change)) == []


def test_the_run_time_check_counts_every_role_assignment_naming_the_scope():
    """executor/change.py reads every role assignment just before removing an old scope: an app's names it in
    CustomResourceScope, an admin's in a write scope; a dry run counts the change's own removed ones as gone."""
    from types import SimpleNamespace as NS

    from migrator.executor.change import _scope_users

    rows = [{"Name": "app smtp", "Role": "Application SMTP.SendAsApp", "CustomResourceScope": "Old"},
            {"Name": "helpdesk", "Role": "Mail Recipients", "CustomRecipientWriteScope": "Old"},
            {"Name": "other", "Role": "Application Mail.Send", "CustomResourceScope": "Else"}]
    exo = NS(scan_role_assignments=lambda: rows)
    plan = NS(meta={"change": {"removed_assignment_names": ["App SMTP"]}})
    assert _scope_users(NS(exo=exo, plan=plan, dry_run=False)) == {"old": ["app smtp", "helpdesk"],
                                                                    "else": ["other"]}
    assert _scope_users(NS(exo=exo, plan=plan, dry_run=True)) == {"old": ["helpdesk"], "else": ["other"]}
