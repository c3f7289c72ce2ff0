"""A reused role assignment scoped straight to a group (RecipientGroupScope), through the real clients over HTTPS to
the sandbox: the plan records the group and its direct members; changed between plan and execute (a member added
or removed, the assignment switched to another group, even one with the same members, or to a management scope),
the batch stops at the drift check before any write, naming the assignment and what changed. Unchanged, the batch
runs and the assignment is reused as it is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.exchange.profile import load_profile
from migrator.inventory.tenant import Clients, live_inventory
from migrator.model import RBAC_ROLE_SMTP_SEND_AS
from migrator.planner.build import PlanOptions, build_plan
from migrator.planner.plan import ExistingAction, load_plan, write_plan
from migrator.planner.source import load_source
from sandbox_world import make_fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="thread")]

ROLE = RBAC_ROLE_SMTP_SEND_AS
ASSIGNMENT = "Hand Assignment Group"
GROUP, OTHER = "Hand Group Scope", "Hand Other Group"


def _legacy(fixture: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in fixture["recipient_permissions"]:
        out.setdefault(p["trustee"]["app"], []).append(p["mailbox"])
    return {a: sorted(ms) for a, ms in out.items()}


@pytest.fixture(scope="module")
def tenant(tmp_path_factory) -> tuple[dict, str, list[str], list[str]]:
    """(a sandbox fixture where one app's legacy mailboxes are exactly the members of a group its assignment is
    scoped to (RecipientGroupScope), with a second group of the same members; the app; its mailboxes; the others).

    Made through the API on a first sandbox, whose state becomes the fixture of the tenant under test."""
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox

    fixture, _ = make_fixture(seed=5, mailboxes=14, apps=3, per_app=(3, 6))
    legacy = _legacy(fixture)
    app = fixture["apps"][0]["app_id"]
    clock = Clock()
    with start_sandbox(fixture, clock=clock, run_dir=tmp_path_factory.mktemp("build"), smtp=False) as builder:
        clients = Clients(load_profile(builder.profile_path))
        try:
            exo = clients.exo
            sp = {row["AppId"].lower(): row["ObjectId"] for row in exo.get_service_principals()}
            for name, alias in ((GROUP, "hand-group-scope"), (OTHER, "hand-other-group")):
                exo.new_distribution_group(name, alias)
            clock.advance(60)  # directory replication: a new group is found by Get-* only after a while
            for name in (GROUP, OTHER):
                exo.update_group_members(name, legacy[app])
            exo.invoke("New-ManagementRoleAssignment", {"Name": ASSIGNMENT, "Role": ROLE, "App": sp[app.lower()],
                                                        "RecipientGroupScope": GROUP})
            exo.new_management_scope("Hand Other Scope", "CustomAttribute9 -eq 'nobody'")
        finally:
            clients.close()
        clock.advance(7200)
        made = builder.state.snapshot()
    for key in ("mailboxes", "groups", "management_scopes", "role_assignments"):
        for obj in made[key]:
            obj.pop("created", None)  # on the other sandbox's clock: the fixture's defaults say "there at load"
    others = sorted({m["primary_smtp"].lower() for m in fixture["mailboxes"]} - {m.lower() for m in legacy[app]})
    return made, app, legacy[app], others


def _run_all(sb, plan_path: Path, clock):
    from migrator.executor.context import ExecSettings, Output
    from migrator.executor.session import connect
    from migrator.rehearse import REHEARSAL_WAITS, run_batches

    plan = load_plan(plan_path)
    conn = connect(sb.profile_path, graph_write=True)
    settings = ExecSettings(concurrency=2, verify_retry_delay=5.0, replication_poll=5.0, replication_timeout=900.0,
                            **REHEARSAL_WAITS)
    try:
        return run_batches(plan, plan_path, conn, [b.number for b in plan.batches], settings,
                           output=Output(quiet=True), now=clock.now, sleep=clock.advance, max_resumes=1)
    finally:
        conn.session.close()


TAMPER = {  # what changes on the group-scoped assignment, and the drift it must stop on ("" none: the run passes)
    "none": "",
    "member_removed": "member removed from its group 'hand-group-scope@",
    "member_added": "member added to its group 'hand-group-scope@",
    "group_switched": f"now scoped to group '{OTHER}', the plan has group 'hand-group-scope@",
    "scope_replaced": "no longer scoped to group 'hand-group-scope@",
}


@pytest.mark.parametrize("tamper", sorted(TAMPER))
def test_a_reused_group_scoped_assignment_changed_after_the_plan_stops_the_batch(tmp_path, tenant, tamper):
    from migrator.errors import DriftError
    from migrator.rehearse import REHEARSAL_DELAYS
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    made, app, mine, others = tenant
    clock = Clock()
    with start_sandbox(made, clock=clock, settings=SandboxSettings(**REHEARSAL_DELAYS), run_dir=tmp_path / "sb",
                       smtp=False) as sb:
        live_inventory(sb.profile_path, tmp_path / "inv", progress=False)
        plan_path = write_plan(build_plan(load_source(tmp_path / "inv"),
                                          PlanOptions(pilot=0, batch_size=5, time_limit=10)), tmp_path / "plan")
        plan = load_plan(plan_path)
        reused = [e for e in plan.existing if e.assignment == ASSIGNMENT]
        assert [(e.action, e.filter, sorted(e.members)) for e in reused] == [
            (ExistingAction.REUSE, "", sorted(m.lower() for m in mine))]
        assert not [a for a in plan.assignments if a.app_id == app]  # covered by it: nothing new for the app
        clients = Clients(load_profile(sb.profile_path))
        try:
            exo = clients.exo
            if tamper == "member_removed":
                exo.remove_group_member(GROUP, mine[0])
            elif tamper == "member_added":
                exo.add_group_member(GROUP, others[0])
            elif tamper == "group_switched":  # the same members: only the group tells them apart
                exo.invoke("Set-ManagementRoleAssignment", {"Identity": ASSIGNMENT, "RecipientGroupScope": OTHER})
            elif tamper == "scope_replaced":
                exo.invoke("Set-ManagementRoleAssignment", {"Identity": ASSIGNMENT,
                                                            "CustomResourceScope": "Hand Other Scope"})
        finally:
            clients.close()
        sb.requests.clear()
        word = TAMPER[tamper]
        if not word:
            run = _run_all(sb, plan_path, clock)
            assert run.ok, run.problems
            clock.advance(7200)
            access = sb.access([app])[app]
            assert not access.sendas and sorted(access.rbac) == sorted(m.lower() for m in mine)
            return
        with pytest.raises(DriftError) as stopped:
            _run_all(sb, plan_path, clock)
        assert f"existing role assignment {ASSIGNMENT!r} of app {app}" in str(stopped.value)
        assert word in str(stopped.value)
        if tamper == "member_removed":
            assert mine[0].lower() in str(stopped.value)
        if tamper == "member_added":
            assert others[0] in str(stopped.value)
        assert not sb.requests.writes()  # stopped before its first write
        access = sb.access([app])[app]
        assert sorted(access.sendas) == sorted(mine) and access.claim  # nothing of the app's access removed
