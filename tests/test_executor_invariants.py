"""docs/design.md §2 invariants under injected faults, against the in-memory tenant: crash between a write and its
journal record at every write, answers lost after the write, transient failures; resume converges to the same
end state with no gap, no over-grant, no duplicate object, no destructive call repeated, and no step marked done
before its actions were verified. Drift and a second executor stop the run before any write."""

from __future__ import annotations

from collections import Counter

import pytest

from exec_helpers import execute, run_until_done
from fakes import Crash, Fault, make_world
from migrator.errors import DriftError
from migrator.executor.journal import Journal, JournalLocked

APPS = {
    "22222222-0000-0000-0000-000000000001": {"a@contoso.com", "b@contoso.com"},
    "22222222-0000-0000-0000-000000000002": {"b@contoso.com", "c@contoso.com", "d@contoso.com"},
}
A1, A2 = sorted(APPS)
DESTRUCTIVE = {"remove_recipient_permission", "delete_app_role_assignment", "remove_mailbox_permission",
               "remove_distribution_group", "remove_management_scope", "remove_role_assignment"}


def reference_state(tmp_path):
    tenant, plan = make_world(tmp_path / "ref", APPS, [[A1, A2]])
    execute(tenant, plan, [1])
    return tenant.snapshot(), tenant.writes


def assert_clean(tenant, plan, expected_snapshot):
    assert tenant.gaps == [], tenant.gaps[:3]
    assert tenant.overgrants == [], tenant.overgrants[:3]
    assert tenant.snapshot() == expected_snapshot  # same end state, so no duplicate group/scope/assignment
    repeated = Counter((m, a) for m, a in tenant.log if m in DESTRUCTIVE)
    assert all(n == 1 for n in repeated.values()), [k for k, n in repeated.items() if n > 1]
    with Journal(plan, readonly=True) as j:
        for step in j.steps():
            if step.status == "done":
                pending = [a for a in j.actions(batch=step.batch, generation=step.generation, phase=step.phase)
                           if a.step == step.step and a.status != "verified"]
                assert not pending, (step.step, pending)
        assert all(o.state == "created" for o in j.objects())


def test_crash_after_every_write_converges(tmp_path):
    expected, total_writes = reference_state(tmp_path)
    assert total_writes > 10
    for k in range(1, total_writes + 1):
        tenant, plan = make_world(tmp_path / f"k{k}", APPS, [[A1, A2]])
        tenant.crash_after_writes = k
        runs, _ = run_until_done(tenant, plan, [1])
        assert runs == 2, k
        assert_clean(tenant, plan, expected)


@pytest.mark.parametrize("mode", ["drop", "fail"])
@pytest.mark.parametrize("method", ["new_distribution_group", "update_group_members", "new_management_scope",
                                    "new_role_assignment", "delete_app_role_assignment", "remove_recipient_permission",
                                    "set_distribution_group"])
def test_lost_answers_and_transient_failures_converge(tmp_path, method, mode):
    expected, _ = reference_state(tmp_path)
    tenant, plan = make_world(tmp_path / "w", APPS, [[A1, A2]])
    tenant.faults = [Fault(method, 1, mode)]
    first = execute(tenant, plan, [1])
    assert first.outcomes[0].status == "failed" and first.exit_code == 11
    assert method in first.outcomes[0].message or "injected" in first.outcomes[0].message
    _runs, _ = run_until_done(tenant, plan, [1])
    assert_clean(tenant, plan, expected)


def test_failed_items_do_not_stop_the_others(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2]])
    tenant.faults = [Fault("remove_recipient_permission", 1, "fail"), Fault("remove_recipient_permission", 3, "fail")]
    result = execute(tenant, plan, [1])
    outcome = result.outcomes[0]
    assert outcome.status == "failed" and len(outcome.failures) == 2
    assert len(tenant.sendas) == 2  # the other three were removed
    assert tenant.gaps == [] and tenant.overgrants == []


def test_drift_stops_before_any_write(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2]])
    tenant.grant("outsider0@contoso.com", tenant.oid_of(A1))  # someone added a grant after the plan
    tenant.allowed.add((tenant.oid_of(A1), "outsider0@contoso.com"))
    with pytest.raises(DriftError) as info:
        execute(tenant, plan, [1])
    assert "outsider0@contoso.com" in str(info.value) and "added" in str(info.value)
    assert tenant.writes == 0


def test_removed_grant_and_edited_reused_group_are_drift(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1], [A2]], reuse={A2: "Finance Senders"})
    tenant.sendas.discard(("a@contoso.com", tenant.oid_of(A1)))
    with pytest.raises(DriftError, match=r"missing.*a@contoso\.com"):
        execute(tenant, plan, [1])
    g = tenant.find_group("Finance Senders")
    g.members.add("outsider1@contoso.com")
    with pytest.raises(DriftError, match=r"member added: outsider1@contoso\.com"):
        execute(tenant, plan, [2])
    assert tenant.writes == 0


def test_a_group_with_the_planned_name_made_by_someone_else_is_drift(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2]])
    tenant.add_group("RBAC SendAs App 1", set())
    with pytest.raises(DriftError, match="already exists and was not created by this plan"):
        execute(tenant, plan, [1])
    assert tenant.writes == 0


def test_drift_check_after_a_resume_accounts_for_what_the_tool_removed(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2]])
    tenant.faults = [Fault("remove_recipient_permission", 2, "fail")]
    assert execute(tenant, plan, [1]).outcomes[0].status == "failed"
    result = execute(tenant, plan, [1])  # grants this tool removed are not "missing"
    assert result.outcomes[0].status == "done"


def test_second_executor_is_refused(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2]])
    with Journal(plan), pytest.raises(JournalLocked, match="another executor is running this plan"):
        execute(tenant, plan, [1])
    assert tenant.writes == 0


def test_pause_file_stops_between_calls_and_resume_finishes(tmp_path):
    expected, _ = reference_state(tmp_path)
    tenant, plan = make_world(tmp_path / "w", APPS, [[A1, A2]])
    original = tenant.call

    def pausing_call(method, fn, *args):
        if method == "new_role_assignment":
            (plan / "PAUSE").write_text("")
        return original(method, fn, *args)

    tenant.call = pausing_call
    result = execute(tenant, plan, [1])
    assert result.outcomes[0].status == "stopped" and result.exit_code == 12
    assert "paused" in result.outcomes[0].message
    assert len(tenant.assignments) == 1  # stopped after the call in flight, before the next one
    (plan / "PAUSE").unlink()
    tenant.call = original
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    assert_clean(tenant, plan, expected)


@pytest.mark.parametrize("claim_rule", ["documented", "union"])
def test_random_crashes_with_faults_converge(tmp_path, claim_rule):
    import random

    expected, _total = reference_state(tmp_path)
    for seed in range(8):
        rng = random.Random(seed)
        tenant, plan = make_world(tmp_path / f"s{seed}", APPS, [[A1], [A2]], claim_rule=claim_rule,
                                  replication_delay=rng.choice([0, 5]))
        tenant.faults = [Fault(rng.choice(sorted(DESTRUCTIVE - {"remove_distribution_group"})), 1, "drop")]
        for _ in range(60):
            tenant.crash_after_writes = tenant.writes + rng.randint(1, 8)
            try:
                result = execute(tenant, plan, [1, 2], wait=rng.random() < 0.5)
            except Crash:
                continue
            if all(o.status in ("done", "skipped") for o in result.outcomes):
                break
            tenant.clock.sleep(rng.choice([0, 30, 200]))
        else:
            raise AssertionError(f"seed {seed} did not converge")
        tenant.crash_after_writes = None
        assert tenant.gaps == [] and tenant.overgrants == [], (seed, tenant.gaps[:2], tenant.overgrants[:2])
        assert tenant.snapshot() == expected


def test_ctrl_c_stops_after_the_current_call(tmp_path):
    from migrator.executor.context import Control

    tenant, plan = make_world(tmp_path, APPS, [[A1, A2]])
    control = Control(plan)
    original = tenant.call

    def interrupting_call(method, fn, *args):
        result = original(method, fn, *args)
        if method == "new_management_scope":
            control.interrupt()  # what the SIGINT handler does
        return result

    tenant.call = interrupting_call
    result = execute(tenant, plan, [1], control=control)
    assert result.outcomes[0].status == "stopped" and "interrupted" in result.outcomes[0].message
    assert len(tenant.scopes) == 1 and tenant.log[-1][0] == "new_management_scope"  # nothing after that call
    tenant.call = original
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    assert tenant.gaps == [] and tenant.overgrants == []


def test_verify_reports_a_group_changed_after_it_was_set_and_stops_before_the_cutover(tmp_path, monkeypatch):
    """The membership read-back runs in the verification pool (alongside the InScope tests): a difference is still
    an item failure of the verify step, and nothing after it (cut-over, removals) runs."""
    import fakes

    tenant, plan = make_world(tmp_path, APPS, [[A1, A2]])
    original = fakes.FakeExchange.new_role_assignment

    def and_tamper(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        next(iter(tenant.groups.values())).members.add("outsider1@contoso.com")  # after the groups step
        return out

    monkeypatch.setattr(fakes.FakeExchange, "new_role_assignment", and_tamper)
    result = execute(tenant, plan, [1])
    [outcome] = result.outcomes
    assert outcome.status == "failed"
    assert any(f.item.startswith("group ") and f.message == "members differ from the plan" for f in outcome.failures)
    assert not {"delete_app_role_assignment", "remove_recipient_permission"} & {m for m, _ in tenant.log}
