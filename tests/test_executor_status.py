"""status: conditions and exit codes from the journal alone; large groups set in chunks."""

from __future__ import annotations

from exec_helpers import execute
from fakes import Fault, make_world
from migrator.executor.journal import Journal
from migrator.executor.status import batch_statuses, exit_code, render
from migrator.planner.plan import load_plan

APPS = {
    "44444444-0000-0000-0000-000000000001": {"a@contoso.com", "b@contoso.com", "c@contoso.com", "d@contoso.com",
                                             "e@contoso.com"},
    "44444444-0000-0000-0000-000000000002": {"f@contoso.com"},
}
A1, A2 = sorted(APPS)


def statuses(tenant, plan):
    with Journal(plan, readonly=True) as j:
        found = batch_statuses(load_plan(plan), j, now=tenant.clock.now())
    return found, exit_code(found), render(found, now=tenant.clock.now())


def test_status_follows_the_run(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1], [A2]])
    found, code, _ = statuses(tenant, plan)
    assert code == 12 and [s.condition for s in found] == ["planned", "planned"]
    execute(tenant, plan, [1], wait=False)
    found, code, text = statuses(tenant, plan)
    assert code == 10 and found[0].condition == "waiting" and "left" in text
    tenant.faults = [Fault("delete_app_role_assignment", 0, "fail")]
    tenant.clock.sleep(200)
    execute(tenant, plan, [1], wait=False)
    found, code, text = statuses(tenant, plan)
    assert code == 11 and found[0].condition == "failed" and "[!] execute cutover: failed" in text
    tenant.faults = []
    execute(tenant, plan, [1, 2])
    found, code, _ = statuses(tenant, plan)
    assert code == 0 and [s.condition for s in found] == ["applied", "applied"]


def test_members_beyond_one_update_are_added_one_by_one(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2]])
    result = execute(tenant, plan, [1], member_chunk=2)
    assert result.outcomes[0].status == "done"
    updates = [a for m, a in tenant.log if m == "update_group_members"]
    adds = [a for m, a in tenant.log if m == "add_group_member"]
    assert len(updates) == 2 and all(len(a[1]) <= 2 for a in updates)  # one per group, at most the chunk size
    assert len(adds) == 3  # the 5-member group: 2 in the update, 3 added
    assert tenant.gaps == [] and tenant.overgrants == []
