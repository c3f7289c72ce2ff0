"""Rollback from the journal: exact return to the prior state, no gap on the way back, resumable after crashes,
shared objects kept while another applied batch uses them."""

from __future__ import annotations

import random

import pytest

from exec_helpers import execute, rollback
from fakes import Crash, make_world

APPS = {
    "33333333-0000-0000-0000-000000000001": {"a@contoso.com", "b@contoso.com"},
    "33333333-0000-0000-0000-000000000002": {"b@contoso.com", "c@contoso.com"},
    "33333333-0000-0000-0000-000000000003": {"d@contoso.com"},
}
A1, A2, A3 = sorted(APPS)


def entra_shape(tenant):
    return {o: len(rows) for o, rows in tenant.entra.items()}


@pytest.mark.parametrize("claim_rule", ["documented", "union"])
def test_rollback_of_a_done_batch_restores_the_prior_state_without_gaps(tmp_path, claim_rule):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]], claim_rule=claim_rule)
    before = tenant.snapshot()
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    result = rollback(tenant, plan, 1)
    assert result.outcomes[0].status == "done", result.outcomes[0].message
    assert tenant.snapshot() == before
    assert tenant.gaps == [] and tenant.overgrants == []
    assert "new assignment id" in result.outcomes[0].message  # the fake issues new ids: said plainly


def test_rollback_waits_the_token_lifetime_before_removing_rbac(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    execute(tenant, plan, [1])
    first = rollback(tenant, plan, 1, wait=False)
    assert first.outcomes[0].status == "waiting" and "grants wait" in first.outcomes[0].message
    restored = {(m, tenant.oid_of(a)) for a in (A1, A2) for m in APPS[a]}
    assert restored <= tenant.sendas and len(tenant.assignments) == 2  # grants back first, RBAC still in place
    assert all(tenant.claim_until.get(tenant.oid_of(a)) != float("inf") for a in (A1, A2))  # no claim yet
    tenant.clock.sleep(41)  # the restored grants have applied: the claim comes back, then the token wait
    second = rollback(tenant, plan, 1, wait=False)
    assert second.outcomes[0].status == "waiting" and "token" in second.outcomes[0].message
    tenant.clock.sleep(91)
    assert rollback(tenant, plan, 1, wait=False).outcomes[0].status == "done"
    assert tenant.gaps == [] and tenant.overgrants == []


def test_rollback_mid_batch_before_cutover_needs_no_wait(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    before = tenant.snapshot()
    assert execute(tenant, plan, [1], wait=False).outcomes[0].status == "waiting"  # in the propagation wait
    result = rollback(tenant, plan, 1, wait=False)
    assert result.outcomes[0].status == "done"
    assert tenant.snapshot() == before and tenant.gaps == [] and tenant.overgrants == []


def test_rollback_then_execute_again(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    execute(tenant, plan, [1])
    rollback(tenant, plan, 1)
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    assert len(tenant.groups) == 2 and tenant.gaps == [] and tenant.overgrants == []


def test_rollback_of_a_batch_never_run_does_nothing(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    result = rollback(tenant, plan, 2)
    assert result.outcomes[0].status == "skipped" and tenant.writes == 0


def test_killed_rollback_resumes_to_the_prior_state(tmp_path):
    for seed in range(6):
        rng = random.Random(seed)
        tenant, plan = make_world(tmp_path / f"s{seed}", APPS, [[A1, A2], [A3]])
        before = tenant.snapshot()
        tenant.crash_after_writes = rng.randint(3, 25)  # somewhere inside the execution
        try:
            execute(tenant, plan, [1])
        except Crash:
            pass
        for _ in range(40):
            tenant.crash_after_writes = tenant.writes + rng.randint(1, 4)
            try:
                result = rollback(tenant, plan, 1)
            except Crash:
                continue
            if result.outcomes[0].status in ("done", "skipped"):
                break
        else:
            raise AssertionError(f"seed {seed}: rollback did not converge")
        assert tenant.snapshot() == before, seed
        assert tenant.gaps == [] and tenant.overgrants == [], seed


def test_shared_group_is_kept_while_another_applied_batch_uses_it(tmp_path):
    from fakes import FakeTenant
    from migrator.model import RBAC_ROLE_SMTP_SEND_AS
    from migrator.planner import opath
    from migrator.planner.plan import Plan, PlanAssignment, PlanBatch, PlanGrant, PlanGroup, PlanScope, write_plan

    tenant = FakeTenant()
    for m in ("a@contoso.com", "b@contoso.com", "z@contoso.com"):
        tenant.add_mailbox(m)
    grants = []
    for i, app in enumerate((A1, A2), start=1):
        oid = tenant.add_app(app, f"App {i}")
        for m in ("a@contoso.com", "b@contoso.com"):
            tenant.grant(m, oid)
            grants.append(PlanGrant(app, f"App {i}", m, "SendAs", "migrate", "", i))
    group = PlanGroup("G0001", "Shared", "new", "", frozenset({"a@contoso.com", "b@contoso.com"}), "shared",
                      "shared@contoso.com", 1, 2)
    scope = PlanScope("S0001", "Shared scope", opath.member_of_new("G0001"), ("G0001",), "group", (), 1)
    assignments = (PlanAssignment("A00001", A1, "App 1", RBAC_ROLE_SMTP_SEND_AS, "S0001", 1, "App 1 send"),
                   PlanAssignment("A00002", A2, "App 2", RBAC_ROLE_SMTP_SEND_AS, "S0001", 2, "App 2 send"))
    plan = write_plan(Plan({"format": 1, "role": RBAC_ROLE_SMTP_SEND_AS}, tuple(grants), (group,), (scope,),
                           assignments, (PlanBatch(1, (A1,), 2), PlanBatch(2, (A2,), 2))), tmp_path / "plan")
    execute(tenant, plan, [1, 2])
    result = rollback(tenant, plan, 1)
    assert "kept: batch(es) 2 still use it" in result.outcomes[0].message
    assert len(tenant.groups) == 1 and list(tenant.scopes) == ["Shared scope"]
    assert list(tenant.assignments) == ["App 2 send"]
    rollback(tenant, plan, 2)
    assert not tenant.groups and not tenant.scopes and not tenant.assignments
    assert tenant.gaps == [] and tenant.overgrants == []


def test_missing_pointer_is_created_and_rollback_removes_it(tmp_path):
    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    oid = tenant.oid_of(A1)
    tenant.pointers.discard(oid)  # the Exchange service-principal pointer went missing after the inventory
    before = tenant.snapshot()
    assert execute(tenant, plan, [1]).outcomes[0].status == "done"
    assert oid in tenant.pointers
    assert rollback(tenant, plan, 1).outcomes[0].status == "done"
    assert oid not in tenant.pointers and tenant.snapshot() == before
    assert tenant.gaps == [] and tenant.overgrants == []


def test_without_an_entra_writer_cutover_and_regrant_are_handed_over_and_verified_on_the_next_run(tmp_path):
    """Least privilege on the fake tenant: each Entra write is left to a privileged admin (a script in the plan
    folder, exit 13); done by hand, the next run verifies it and goes on, with no gap on the way there and back."""
    import re

    from fakes import FakeGraph
    from migrator.executor.entra import EntraWrites

    tenant, plan = make_world(tmp_path, APPS, [[A1, A2], [A3]])
    before = tenant.snapshot()
    nobody = EntraWrites("handover", tenant_id="contoso.onmicrosoft.com")
    first = execute(tenant, plan, [1], entra=nobody)
    assert first.outcomes[0].status == "handover" and first.exit_code == 13
    script = (plan / "handover-batch-1-cutover.ps1").read_text(encoding="utf-8-sig")
    ids = re.findall(r"-ServicePrincipalId '([^']+)' -AppRoleAssignmentId '([^']+)'", script)
    assert sorted(sp for sp, _ in ids) == sorted(tenant.oid_of(a) for a in (A1, A2))
    assert "-TenantId 'contoso.onmicrosoft.com'" in script
    assert all(tenant.entra[tenant.oid_of(a)] for a in (A1, A2))  # the run itself removed nothing
    for sp, assignment in ids:  # the privileged admin
        FakeGraph(tenant).delete_app_role_assignment(sp, assignment)
    assert execute(tenant, plan, [1], entra=nobody).outcomes[0].status == "done"
    back = rollback(tenant, plan, 1, entra=nobody)
    assert back.outcomes[0].status == "handover"
    script = (plan / "handover-batch-1-regrant.ps1").read_text(encoding="utf-8-sig")
    grants = re.findall(r"New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId '([^']+)' -PrincipalId "
                        r"'[^']+' -ResourceId '([^']+)' -AppRoleId '([^']+)'", script)
    assert len(grants) == 2
    for sp, resource, role in grants:
        FakeGraph(tenant).grant_app_role(sp, resource, role)
    assert rollback(tenant, plan, 1, entra=nobody).outcomes[0].status == "done"
    assert tenant.snapshot() == before
    assert tenant.gaps == [] and tenant.overgrants == []
