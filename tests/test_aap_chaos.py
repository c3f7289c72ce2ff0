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
series, with up to 20 kills per loop).
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
        print(f"seed {seed} ({claim_rule}): execute {result.execute_runs} runs, {result.execute_kills} killed, "
              f"{result.execute_seconds} s; rollback {result.rollback_runs} runs, {result.rollback_kills} killed, "
              f"{result.rollback_seconds} s; Graph/EWS moved: {result.mail_access}")
