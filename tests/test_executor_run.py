"""The executor against the in-memory tenant: the happy path, waits, resumption, dry run, status of the journal."""

from __future__ import annotations

import pytest

from exec_helpers import execute
from fakes import make_world

APPS = {
    "11111111-0000-0000-0000-000000000001": {"a@contoso.com", "b@contoso.com", "c@contoso.com"},
    "11111111-0000-0000-0000-000000000002": {"c@contoso.com", "d@contoso.com"},
    "11111111-0000-0000-0000-000000000003": {"e@contoso.com"},
}
A1, A2, A3 = sorted(APPS)


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path, APPS, [[A1], [A2, A3]])


def test_full_run_ends_in_the_planned_state_without_gaps_or_overgrants(world):
    tenant, plan = world
    result = execute(tenant, plan, [1, 2])
    assert [o.status for o in result.outcomes] == ["done", "done"], result.output.lines
    assert tenant.gaps == [] and tenant.overgrants == []
    assert tenant.sendas == set()  # every legacy SendAs grant removed
    assert all(not rows for rows in tenant.entra.values())  # cut over
    assert len(tenant.groups) == 3 and len(tenant.scopes) == 3 and len(tenant.assignments) == 3
    members = {g.name: g.members for g in tenant.groups.values()}
    assert members["RBAC SendAs App 1"] == APPS[A1]
    assert all(g.hidden for g in tenant.groups.values())


def test_without_wait_it_stops_at_the_propagation_wait_and_resumes_later(world):
    tenant, plan = world
    first = execute(tenant, plan, [1], wait=False)
    assert first.outcomes[0].status == "waiting" and first.exit_code == 10  # come back at the time shown
    assert first.outcomes[0].until == pytest.approx(tenant.clock.now() + 120, abs=5)
    assert tenant.sendas and tenant.assignments  # legacy kept while waiting
    again = execute(tenant, plan, [1], wait=False)  # too early: still waiting, nothing written
    writes = tenant.writes
    assert again.outcomes[0].status == "waiting" and tenant.writes == writes
    tenant.clock.sleep(121)
    third = execute(tenant, plan, [1], wait=False)
    assert third.outcomes[0].status == "waiting" and "token" in third.outcomes[0].message
    assert third.outcomes[0].until == pytest.approx(tenant.clock.now() + 60 + 30, abs=1)  # lifetime + margin
    tenant.clock.sleep(61)
    assert execute(tenant, plan, [1], wait=False).outcomes[0].status == "waiting"  # the margin is waited too
    tenant.clock.sleep(30)
    last = execute(tenant, plan, [1], wait=False)
    assert last.outcomes[0].status == "done"
    assert tenant.gaps == [] and tenant.overgrants == []


def test_second_run_writes_nothing(world):
    tenant, plan = world
    execute(tenant, plan, [1, 2])
    writes = tenant.writes
    result = execute(tenant, plan, [1, 2])
    assert [o.status for o in result.outcomes] == ["skipped", "skipped"]
    assert tenant.writes == writes


def test_dry_run_writes_nothing_and_lists_the_changes(world):
    tenant, plan = world
    before = tenant.snapshot()
    result = execute(tenant, plan, [1], dry_run=True)
    assert tenant.snapshot() == before and tenant.writes == 0
    changes = result.output.changes  # each withheld write as the cmdlet it stands for
    assert any(c.startswith("New-DistributionGroup -Name 'RBAC SendAs App 1'") for c in changes), changes
    assert any(c.startswith("New-ManagementRoleAssignment ") for c in changes)
    assert any(c.startswith("Remove-RecipientPermission ") for c in changes)
    assert not (plan / "journal.db").exists() and not (plan / "run-log.jsonl").exists()


def test_reused_group_is_not_recreated(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2, A3]], reuse={A3: "Existing Senders"})
    execute(tenant, plan, [1])
    names = sorted(g.name for g in tenant.groups.values())
    assert names.count("Existing Senders") == 1 and len(names) == 3
    assert tenant.gaps == [] and tenant.overgrants == []


def test_group_replication_delay_is_waited_out(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1], [A2, A3]], replication_delay=30)
    result = execute(tenant, plan, [1])
    assert result.outcomes[0].status == "done", result.outcomes[0].message
    assert tenant.gaps == [] and tenant.overgrants == []


def test_a_journal_of_another_plan_version_is_refused(world):
    from migrator.errors import PlanError
    from migrator.executor.journal import Journal

    tenant, plan = world
    with Journal(plan) as j:
        j.set_meta("plan_sha256", "0" * 64)  # as if plan.json had been replaced after execution started
    with pytest.raises(PlanError, match="another version of the plan"):
        execute(tenant, plan, [1])
    assert tenant.writes == 0
