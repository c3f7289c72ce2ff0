"""`migrator grant`/`revoke` on migrated sandbox tenants whose plans share groups between apps, through the real
clients (issue 14, Done when): after each request every app's reach is its previous reach plus/minus exactly the
requested mailboxes, on the configuration and on the data plane once propagated; the sandbox's timeline shows no
gap and no over-grant for any pair the requests did not name (and none for a named pair before its request); a
grant to an app with a group of its own only adds members. Random tenants and requests (hypothesis, a few examples:
each migrates a tenant), on the sandbox clock (waits fast-forwarded)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from change_world import migrated, rbac_reach, request, rollback

pytestmark = [pytest.mark.integration]

SETTLE = 4000.0  # s: past the sandbox's propagation delay (1800 s) and token lifetime (3600 s)


def _check_timeline(world, touched: dict[tuple[str, str], float]) -> None:
    report = world.sb.check()
    for kind, intervals in (("gap", report.gaps), ("over-grant", report.overgrants)):
        for i in intervals:
            since = touched.get((i.app_id, i.mailbox))
            assert since is not None, f"{kind} for a pair no request named: {i}"
            assert i.start >= since, f"{kind} for {i.app_id} / {i.mailbox} before its request: {i}"


def _check_data_plane(world, expected: dict[str, set[str]], universe: set[str]) -> None:
    now = world.clock.now()
    for app, want in expected.items():
        served = {m for m in universe if world.sb.state.can_send_as(app, m, token_claim=False, at=now)}
        assert served == want, (app, sorted(served - want), sorted(want - served))


@pytest.mark.slow
# no shrinking: each example migrates a tenant (seconds); a failure is reported as drawn
@settings(max_examples=3, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 30), steps=st.lists(
    st.tuples(st.sampled_from(["grant", "revoke"]), st.integers(0, 4), st.sets(st.integers(0, 13), min_size=1,
                                                                                 max_size=3)),
    min_size=2, max_size=3))
def test_every_app_moves_by_exactly_the_request(tmp_path_factory, seed, steps):
    world = migrated(tmp_path_factory.mktemp("change"), seed=seed)
    try:
        universe = {m for g in world.plan.groups for m in g.members} | {g.mailbox for g in world.plan.grants}
        mailboxes = sorted(universe)
        reach = {a: set(r) for a, r in rbac_reach(world).items()}
        apps = sorted(reach)
        touched: dict[tuple[str, str], float] = {}
        for kind, app_index, picks in steps:
            app = apps[app_index % len(apps)]
            wanted = sorted({mailboxes[i % len(mailboxes)] for i in picks})
            for m in wanted:
                touched.setdefault((app, m), world.clock.now())
            prepared, result = request(world, kind, app, wanted)
            if result is not None:
                assert result.exit_code == 0, result.outcomes
                change = prepared.change
                if change is not None and change.strategy == "own group" and kind == "grant":
                    writes = result.calls.get("write", 0)
                    assert writes == len(change.effective), f"own-group grant made {writes} writes"
            reach[app] = reach[app] | set(wanted) if kind == "grant" else reach[app] - set(wanted)
            world.clock.advance(SETTLE)
            now = {a: set(r) for a, r in rbac_reach(world).items()}
            assert now == reach
            _check_data_plane(world, reach, universe)
        _check_timeline(world, touched)
    finally:
        world.close()


def test_a_grant_to_an_app_sharing_every_group_then_a_revoke_through_a_shared_group(tmp_path):
    """The two shapes the property test may miss: a new group for an app whose groups are all shared, then a
    copy-on-write; the other apps' groups are never written."""
    world = migrated(tmp_path)
    try:
        plan = world.plan
        shared = next(g for g in plan.groups if g.apps >= 2)
        scope_keys = {s.key for s in plan.scopes if shared.key in s.groups}
        app = sorted(a.app_id for a in plan.assignments if a.scope in scope_keys)[0]
        reach = {a: set(r) for a, r in rbac_reach(world).items()}
        outside = sorted({g.mailbox for g in plan.grants} - reach[app])[:1]
        start = world.clock.now()
        prepared, result = request(world, "grant", app, outside)
        assert result is not None and result.exit_code == 0
        assert prepared.change.strategy in ("new group", "own group")
        world.clock.advance(SETTLE)
        reach[app] |= set(outside)
        victim = sorted(shared.members)[0]
        before_groups = {g.name: g.members for g in plan.groups}
        prepared, result = request(world, "revoke", app, [victim])
        assert result is not None and result.exit_code == 0
        assert prepared.change.strategy == "copy-on-write"
        assert prepared.change.removed_assignments
        world.clock.advance(SETTLE)
        reach[app] -= {victim}
        assert {a: set(r) for a, r in rbac_reach(world).items()} == reach
        groups = {g["name"]: {m.lower() for m in g["members"]} for g in world.sb.state.to_fixture()["groups"]}
        assert groups[shared.name] == set(before_groups[shared.name])  # the shared group is untouched
        _check_timeline(world, {(app, m): start for m in [*outside, victim]})
        # the same requests again: nothing to do, nothing written
        again, result = request(world, "revoke", app, [victim])
        assert result is None and again.folder is None and again.change.effective == ()
    finally:
        world.close()


def test_rollback_of_a_change_puts_every_app_back_without_a_gap(tmp_path):
    """A copy-on-write revoke and a grant, each rolled back from its journal: every app reaches what it reached
    before; the restored assignment served before the change's own went (no gap for the untouched mailboxes)."""
    world = migrated(tmp_path)
    try:
        plan = world.plan
        shared = next(g for g in plan.groups if g.apps >= 2)
        scope_keys = {s.key for s in plan.scopes if shared.key in s.groups}
        app = sorted(a.app_id for a in plan.assignments if a.scope in scope_keys)[0]
        original = {a: set(r) for a, r in rbac_reach(world).items()}
        victim = sorted(shared.members)[0]
        newcomer = sorted({g.mailbox for g in plan.grants} - original[app])[0]
        start = world.clock.now()
        for kind, mailbox in (("revoke", victim), ("grant", newcomer)):
            prepared, result = request(world, kind, app, [mailbox])
            assert result is not None and result.exit_code == 0
            world.clock.advance(SETTLE)
            assert (mailbox in rbac_reach(world)[app]) == (kind == "grant")
            undone = rollback(world, prepared.folder)
            assert undone.exit_code == 0, undone.outcomes
            world.clock.advance(SETTLE)
            assert {a: set(r) for a, r in rbac_reach(world).items()} == original
        names = {g["name"] for g in world.sb.state.to_fixture()["groups"]}
        assert names == {g.name for g in plan.groups}  # the changes' own groups are gone again
        # the same revoke again: planned afresh beside the rolled-back one, and applied
        again, result = request(world, "revoke", app, [victim])
        assert result is not None and result.exit_code == 0 and again.folder.name.endswith("-2")
        world.clock.advance(SETTLE)
        assert victim not in rbac_reach(world)[app]
        _check_timeline(world, {(app, victim): start, (app, newcomer): start})
    finally:
        world.close()


def test_a_tenant_edited_after_the_change_was_planned_stops_it_before_any_write(tmp_path):
    from change_world import exec_settings
    from migrator.change.request import observer, prepare
    from migrator.errors import DriftError
    from migrator.executor.change import apply_change
    from migrator.executor.context import Output
    from migrator.executor.session import RunOptions

    world = migrated(tmp_path)
    try:
        plan = world.plan
        shared = next(g for g in plan.groups if g.apps >= 2)
        scope_keys = {s.key for s in plan.scopes if shared.key in s.groups}
        app = sorted(a.app_id for a in plan.assignments if a.scope in scope_keys)[0]
        observe = observer(world.sb.profile_path)
        prepared = prepare("revoke", app, [sorted(shared.members)[0]], observe, root=world.root)
        newcomer = sorted({g.mailbox for g in plan.grants} - set(shared.members))[0]
        state = world.sb.state
        state.invoke("Add-DistributionGroupMember", {"Identity": shared.name, "Member": newcomer,
                                                     "BypassSecurityGroupManagerCheck": True},
                     caller=state.admin_caller())
        options = RunOptions(exec_settings(), output=Output(quiet=True), now=world.clock.now,
                             sleep=world.clock.advance)
        with pytest.raises(DriftError, match=f"member added: {newcomer}"):
            apply_change(prepared.folder, world.sb.profile_path, options, observe=observe)
        assert not (prepared.folder / "journal.db").exists()  # nothing was written
    finally:
        world.close()


def test_audit_given_the_change_folders_is_clean_after_grants_and_revokes(tmp_path):
    """The helpdesk's loop: changes made with grant/revoke, then `audit` on a schedule with the plan and the change
    folders is clean (without the change folders it reports them)."""
    import json

    from click.testing import CliRunner

    from migrator.cli import main

    world = migrated(tmp_path)
    try:
        plan = world.plan
        shared = next(g for g in plan.groups if g.apps >= 2)
        scope_keys = {s.key for s in plan.scopes if shared.key in s.groups}
        app = sorted(a.app_id for a in plan.assignments if a.scope in scope_keys)[0]
        reach = rbac_reach(world)[app]
        newcomer = sorted({g.mailbox for g in plan.grants} - reach)[0]
        folders = []
        for kind, mailbox in (("grant", newcomer), ("revoke", sorted(shared.members)[0])):
            prepared, result = request(world, kind, app, [mailbox])
            assert result is not None and result.exit_code == 0
            folders.append(str(prepared.folder))
            world.clock.advance(SETTLE)
        profile = ["--profile", str(world.sb.profile_path), "--json"]
        alone = CliRunner().invoke(main, ["audit", str(plan.path), *profile])
        assert alone.exit_code == 1, alone.output
        both = CliRunner().invoke(main, ["audit", *reversed(folders), str(plan.path), *profile])
        assert both.exit_code == 0, both.output
        assert json.loads(both.stdout)["clean"] is True
    finally:
        world.close()


def test_a_group_another_app_holds_mail_send_on_is_not_written_by_a_grant(tmp_path):
    """The tenant read (audit.observed) carries the apps' other Application role assignments: an app's group that a
    second app's `Application Mail.Send` is scoped on is shared, so a grant makes a new group instead."""
    world = migrated(tmp_path, clusters=0, need_shared=False)
    try:
        plan = world.plan
        group = next(g for g in plan.groups if g.apps == 1)
        scopes = {s.key for s in plan.scopes if group.key in s.groups}
        app = next(a.app_id for a in plan.assignments if a.scope in scopes)
        other = next(a.app_id for a in plan.assignments if a.app_id != app)
        state, admin = world.sb.state, world.sb.state.admin_caller()
        dn = state.invoke("Get-DistributionGroup", {"Identity": group.name}, caller=admin)[0]["DistinguishedName"]
        state.invoke("New-ManagementScope", {"Name": "hand-made mail send", "RecipientRestrictionFilter":
                                             f"MemberOfGroup -eq '{dn}'"}, caller=admin)
        state.invoke("New-ManagementRoleAssignment", {"Name": "hand-made mail send", "Role": "Application Mail.Send",
                                                      "App": state.apps[other].object_id,
                                                      "CustomResourceScope": "hand-made mail send"}, caller=admin)
        outside = sorted({g.mailbox for g in plan.grants} - rbac_reach(world)[app])[:1]
        prepared, result = request(world, "grant", app, outside)
        assert result is not None and result.exit_code == 0
        assert prepared.change.strategy == "new group" and not prepared.change.member_adds
    finally:
        world.close()


def _scopes(world) -> dict[str, str]:
    state = world.sb.state
    rows = state.invoke("Get-ManagementScope", {}, caller=state.admin_caller())
    return {r["Name"]: r.get("RecipientRestrictionFilter") or r.get("RecipientFilter") for r in rows}


def _cow_app(world):
    """(shared group, app, scope): the app also holds, by hand, an SMTP assignment on a scope of its own naming a
    group it shares (the tool's plans give apps with the same groups one scope: a revoke's copy-on-write leaves the
    tool's scope to the other apps, and the hand-made one without any assignment)."""
    from migrator.model import RBAC_ROLE_SMTP_SEND_AS

    plan = world.plan
    shared = next(g for g in plan.groups if g.apps >= 2)
    scope_keys = {s.key for s in plan.scopes if shared.key in s.groups}
    app = sorted(a.app_id for a in plan.assignments if a.scope in scope_keys)[0]
    state, admin = world.sb.state, world.sb.state.admin_caller()
    dn = state.invoke("Get-DistributionGroup", {"Identity": shared.name}, caller=admin)[0]["DistinguishedName"]
    state.invoke("New-ManagementScope", {"Name": "hand-made smtp", "RecipientRestrictionFilter":
                                         f"MemberOfGroup -eq '{dn}'"}, caller=admin)
    state.invoke("New-ManagementRoleAssignment", {"Name": "hand-made smtp", "Role": RBAC_ROLE_SMTP_SEND_AS,
                                                  "App": state.apps[app].object_id,
                                                  "CustomResourceScope": "hand-made smtp"}, caller=admin)
    return shared, app, "hand-made smtp"


def test_a_copy_on_write_removes_the_old_scope_last_and_rollback_puts_it_back(tmp_path):
    """The old scope no role assignment uses any more is removed last (recorded first in the journal and the undo
    log); the same command again has nothing to do; `rollback` re-creates the scope (name, filter) and the old
    assignment on it, and every app reaches what it reached before."""
    import json

    from migrator.executor.journal import Journal

    world = migrated(tmp_path)
    try:
        shared, app, own_scope = _cow_app(world)
        original = {a: set(r) for a, r in rbac_reach(world).items()}
        scopes_before = _scopes(world)
        victim = sorted(shared.members)[0]
        from click.testing import CliRunner

        from migrator.cli import main

        dry = CliRunner().invoke(main, ["revoke", app, victim, "--profile", str(world.sb.profile_path), "--out",
                                        str(tmp_path / "dry"), "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "remove the old scope 'hand-made smtp'" in dry.output  # the plan shown before the run
        assert "Remove-ManagementScope -Identity 'hand-made smtp'" in dry.output, dry.output
        assert _scopes(world) == scopes_before
        prepared, result = request(world, "revoke", app, [victim])
        assert result is not None and result.exit_code == 0, result.outcomes
        assert prepared.change.strategy == "copy-on-write" and len(prepared.change.removed_assignments) == 2
        assert prepared.change.removed_scopes == (own_scope,)  # the tool's scope serves other apps: not planned
        old = [own_scope]
        now = _scopes(world)
        assert own_scope not in now  # the unused scope is gone, the one other apps use is kept
        assert set(now) == set(scopes_before) - {own_scope} | {s.name for s in prepared.change.new_scopes}
        world.clock.advance(SETTLE)
        want = {**original, app: original[app] - {victim}}
        assert {a: set(r) for a, r in rbac_reach(world).items()} == want
        with Journal(prepared.folder, readonly=True) as journal:
            acts = journal.actions(kind="scope", op="remove")
        assert [(a.key, a.status) for a in acts] == [(n, "verified") for n in old]
        removals = [json.loads(line) for line in (prepared.folder / "undo-log.jsonl").read_text().splitlines()]
        assert {r["key"] for r in removals if r.get("record") == "removal" and r.get("kind") == "scope"} == set(old)
        audit = CliRunner().invoke(main, ["audit", str(prepared.folder), str(world.plan.path), "--profile",
                                          str(world.sb.profile_path), "--json"])
        assert audit.exit_code == 0, audit.output  # the hand-made objects are gone, the change is what audit expects
        # idempotent: the same command again has nothing to do, and the folder's run is already done
        again, none = request(world, "revoke", app, [victim])
        assert none is None and again.change.effective == ()
        from change_world import exec_settings
        from migrator.executor.change import apply_change
        from migrator.executor.context import Output
        from migrator.executor.session import RunOptions

        rerun = apply_change(prepared.folder, world.sb.profile_path,
                             RunOptions(exec_settings(), output=Output(quiet=True), now=world.clock.now,
                                        sleep=world.clock.advance), observe=None)
        assert rerun.exit_code == 0 and rerun.calls.get("write", 0) == 0
        undone = rollback(world, prepared.folder)
        assert undone.exit_code == 0, undone.outcomes
        assert _scopes(world) == scopes_before  # same names, same filters; the change's own scope gone
        world.clock.advance(SETTLE)
        assert {a: set(r) for a, r in rbac_reach(world).items()} == original
        _check_timeline(world, {(app, victim): 0.0})
    finally:
        world.close()


def test_a_scope_another_role_assignment_uses_at_run_time_is_kept(tmp_path):
    """Planned for removal, but an `Application Mail.Send` assignment put on it after the change was planned: the
    run reads every role assignment just before and keeps the scope; the revoke itself is still exact."""
    from change_world import exec_settings
    from migrator.change.request import observer, prepare
    from migrator.executor.change import apply_change
    from migrator.executor.context import Output
    from migrator.executor.session import RunOptions

    world = migrated(tmp_path)
    try:
        shared, app, old = _cow_app(world)
        original = {a: set(r) for a, r in rbac_reach(world).items()}
        victim = sorted(shared.members)[0]
        observe = observer(world.sb.profile_path)
        prepared = prepare("revoke", app, [victim], observe, root=world.root)
        assert prepared.change.removed_scopes == (old,)
        other = next(a for a in sorted(original) if a != app)
        state = world.sb.state
        state.invoke("New-ManagementRoleAssignment", {"Name": "hand-made mail send", "Role": "Application Mail.Send",
                                                      "App": state.apps[other].object_id,
                                                      "CustomResourceScope": old}, caller=state.admin_caller())
        options = RunOptions(exec_settings(), wait=True, output=Output(quiet=True), now=world.clock.now,
                             sleep=world.clock.advance)
        result = apply_change(prepared.folder, world.sb.profile_path, options, observe=observe)
        assert result.exit_code == 0, result.outcomes
        assert old in _scopes(world)  # kept: another assignment uses it
        world.clock.advance(SETTLE)
        assert {a: set(r) for a, r in rbac_reach(world).items()} == {**original, app: original[app] - {victim}}
    finally:
        world.close()


def test_a_run_stopped_right_after_recording_the_scope_removal_resumes(tmp_path, monkeypatch):
    """Stopped (as by Ctrl-C: the control check before the next call) once the scope's removal is recorded and
    before it is sent: the scope is still there; the same command again removes it, reads it back and is done."""
    from change_world import exec_settings
    from migrator.change.request import observer, prepare
    from migrator.executor import context
    from migrator.executor.change import apply_change
    from migrator.executor.context import Output
    from migrator.executor.journal import Journal
    from migrator.executor.session import RunOptions

    world = migrated(tmp_path)
    try:
        shared, app, old = _cow_app(world)
        victim = sorted(shared.members)[0]
        observe = observer(world.sb.profile_path)
        prepared = prepare("revoke", app, [victim], observe, root=world.root)

        def scope_removals() -> list:
            if not (prepared.folder / "journal.db").exists():
                return []
            with Journal(prepared.folder, readonly=True) as journal:
                return [(a.key, a.status) for a in journal.actions(kind="scope", op="remove")]

        reason = context.Control.reason
        monkeypatch.setattr(context.Control, "reason",
                            lambda self: "interrupted (test)" if scope_removals() else reason(self))
        options = RunOptions(exec_settings(), wait=True, output=Output(quiet=True), now=world.clock.now,
                             sleep=world.clock.advance)
        stopped = apply_change(prepared.folder, world.sb.profile_path, options, observe=observe)
        assert stopped.exit_code == 12, stopped.outcomes
        assert scope_removals() == [(old, "intent")] and old in _scopes(world)  # recorded, not sent
        monkeypatch.setattr(context.Control, "reason", reason)
        done = apply_change(prepared.folder, world.sb.profile_path, options, observe=observe)
        assert done.exit_code == 0, done.outcomes
        assert scope_removals()[-1] == (old, "verified") and old not in _scopes(world)
        world.clock.advance(SETTLE)
        assert victim not in rbac_reach(world)[app]
    finally:
        world.close()
