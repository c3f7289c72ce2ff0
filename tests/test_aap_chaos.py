"""Chaos over Graph/EWS access (issue 16, first "Done when"): a tenant with RestrictAccess policies on nested groups,
a DenyAccess policy, a policy-less (tenant-wide) app, two apps of equal reach and apps mixing SMTP SendAs with Graph
and EWS permissions (tests/aap_world.py). Through the real CLI: live inventory, plan, doctor; `execute --all` under
the chaos fault profile (read-after-write lag included), SIGKILLed at random moments after its recorded changes and
re-run until done; then `rollback` of every batch, last first, killed the same way (tests/aap_chaos.py). Under
both claim rules, the sandbox's timeline must show zero gaps and zero over-grants for SMTP, IMAP/POP and each
Graph/EWS permission; after execute exactly the plan's consents and policies are gone and every other app's
(DenyAccess, policy-less) are as before; after the rollback the tenant equals its prior state.

Seeded: MIGRATOR_CHAOS_SEEDS (default 1) seeds per claim rule. To keep the suite fast it kills each execute at most
twice and each batch's rollback once, each time right after a recorded change (bench/aap_chaos.py runs the long
series, by default up to 10 kills per execute and 5 per batch rollback).
"""

from __future__ import annotations

import os

import pytest

from aap_chaos import run_case

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEEDS = int(os.environ.get("MIGRATOR_CHAOS_SEEDS", "1"))


@pytest.mark.parametrize("claim_rule", ["documented", "union"])
def test_killed_execute_then_rollback_keeps_every_permission_exact(tmp_path, claim_rule):
    for seed in range(SEEDS):
        result = run_case(tmp_path / f"s{seed}", seed, claim_rule, execute_kills=2, rollback_kills=1)
        assert result.problems() == [], (seed, result.problems())
        # the first run of each loop is killed right after its first recorded change (tests/killing.until_done)
        assert result.execute_kills >= 1 and result.rollback_kills >= result.batches, result.to_dict()
        # every Graph/EWS permission of the tenant was judged (none dropped out of the checker's view)
        judged = set(result.after_rollback.per_permission)
        assert judged == {"Mail.Read", "Mail.Send", "Calendars.Read", "Calendars.ReadWrite", "Contacts.Read",
                          "full_access_as_app"}, judged
        # the plan moves the three RestrictAccess apps' six permissions and removes their policies; it reports
        # the DenyAccess and the policy-less app only (plan_problems checks the rest)
        assert len(result.mail_access) == 6 and len(result.policies) == 3, result.to_dict()
        assert result.reported == {"denied": "deny", "open": "tenant_wide"}, result.reported
        print(f"seed {seed} ({claim_rule}): execute {result.execute_runs} runs, {result.execute_kills} killed, "
              f"{result.execute_seconds} s; rollback {result.rollback_runs} runs, {result.rollback_kills} killed, "
              f"{result.rollback_seconds} s; Graph/EWS moved: {result.mail_access}")


def test_the_case_checks_catch_a_reported_app_touched():
    """The checks the chaos case relies on fail when a reported app is touched: its DenyAccess policy removed (an
    over-grant on the mailboxes it kept out) or the policy-less app's consent removed (a gap on every mailbox)."""
    from aap_chaos import mail_problems, rollback_problems, timeline_check
    from aap_world import mail_state, make_aap_fixture
    from migrator.planner.plan import Plan
    from migrator.sandbox import Clock, SandboxSettings, TenantState
    from migrator.sandbox.graph_ops import delete_app_role_assignment
    from sandbox_world import tenant_shape

    fixture, ids = make_aap_fixture(seed=3)
    state = TenantState.from_fixture(fixture, clock=Clock.manual(), settings=SandboxSettings(
        sendas_delay=0.0, graph_replication_delay=0.0, propagation_delay=10.0, access_policy_delay=5.0,
        token_lifetime=3.0))
    shape, mail = tenant_shape(state), mail_state(state)
    empty = Plan(meta={}, grants=(), groups=(), scopes=(), assignments=(), batches=())
    state.clock.advance(20)
    clean = timeline_check(state)
    assert clean.ok and mail_problems(state, empty, mail) == [] and rollback_problems(state, shape, mail) == []

    denied_policy = next(r["Identity"] for r in state.invoke("Get-ApplicationAccessPolicy", {},
                                                             caller=state.admin_caller())
                         if r["AppId"] == ids["denied"])
    state.invoke("Remove-ApplicationAccessPolicy", {"Identity": denied_policy}, caller=state.admin_caller())
    app = state.apps[ids["open"]]
    resource = state.resources["Microsoft Graph"]
    role_id = next(r["id"] for r in resource["appRoles"] if r["value"] == "Contacts.Read")
    assignment = next(a["id"] for a in state.app_role_assignments[app.object_id].values()
                      if a["appRoleId"] == role_id)
    delete_app_role_assignment(state, app.object_id, assignment, caller=state.admin_caller("https://graph.microsoft.com"))
    state.clock.advance(20)

    check = timeline_check(state)
    excluded = next(g for g in fixture["groups"] if g["alias"] == "legacy-excluded")["members"]
    assert check.per_permission["Mail.Read"] == {"pairs": 3, "gaps": 0, "overgrants": len(excluded)}
    assert check.per_permission["Contacts.Read"] == {"pairs": 1, "gaps": len(fixture["mailboxes"]), "overgrants": 0}
    assert not check.ok
    problems = mail_problems(state, empty, mail)
    assert [p.split(" ")[0] for p in problems] == ["consents:", "policies"], problems
    assert ids["open"] in problems[0] and "lost" in problems[0]
    # the prior state: the apps' Entra roles (tenant_shape), the consents and the policies (mail_state) differ
    assert [p.split(" ")[0] for p in rollback_problems(state, shape, mail)] == ["apps", "app_roles", "policies"]
