"""`migrator grant`/`revoke` as an admin runs them: the question before the first change (refused without a terminal
and without --yes: nothing written), --dry-run (the PowerShell of each write, nothing changed), --yes, "nothing to
do" (exit 0, nothing written), unknown names (exit 2); and killed with SIGKILL at random moments, then run again
until done while reads lag behind writes, the change converges with no gap and no over-grant for any pair it does
not name (as the chaos test does for `execute`)."""

from __future__ import annotations

import json
import random
import time

import pytest
from click.testing import CliRunner

from change_world import FAST, migrated, rbac_reach
from killing import run_killed
from migrator.cli import main

pytestmark = [pytest.mark.integration]


def _own_group_case(world):
    """(app, a mailbox outside its reach) for an app with a group no other app uses."""
    plan = world.plan
    for g in plan.groups:
        if g.apps != 1:
            continue
        scopes = {s.key for s in plan.scopes if g.key in s.groups}
        app = next(a.app_id for a in plan.assignments if a.scope in scopes)
        reach = rbac_reach(world)[app]
        outside = sorted({x.mailbox for x in plan.grants} - reach)
        if outside:
            return app, outside[0]
    raise AssertionError("no app with a group of its own")


def test_grant_asks_dry_runs_applies_and_then_has_nothing_to_do(tmp_path):
    world = migrated(tmp_path, delays=FAST, clusters=0, need_shared=False)  # apps of their own sets
    try:
        app, mailbox = _own_group_case(world)
        out = tmp_path / "change"
        base = ["grant", app, mailbox, "--profile", str(world.sb.profile_path), "--out", str(out)]
        refused = CliRunner().invoke(main, base)
        assert refused.exit_code == 6, refused.output
        assert "add member(s) to group" in refused.output and "not changed: every other app" in refused.output
        assert not (out / "journal.db").exists() and mailbox not in rbac_reach(world)[app]

        dry = CliRunner().invoke(main, [*base, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "Add-DistributionGroupMember" in dry.output and mailbox in dry.output
        assert mailbox not in rbac_reach(world)[app]

        done = CliRunner().invoke(main, [*base, "--yes", "--json"])
        assert done.exit_code == 0, done.output
        result = json.loads(done.stdout)
        assert result["strategy"] == "own group" and result["effective"] == [mailbox]
        assert mailbox in rbac_reach(world)[app]
        shown = CliRunner().invoke(main, ["show", str(out)])
        assert shown.exit_code == 0 and "add member(s) to group" in shown.output and mailbox in shown.output
        status = CliRunner().invoke(main, ["status", str(out)])
        assert status.exit_code == 0 and "[x] change final verify: done" in status.output, status.output
        assert status.output.startswith("Grant 1 mailbox(es) to ") and f"[{app}] (own group): applied" in status.output
        assert "SendAs grant" not in status.output and "legacy" not in status.output  # no migration wording

        again = CliRunner().invoke(main, [*base, "--yes"])
        assert again.exit_code == 0 and "Nothing to do" in again.output, again.output
        assert not (tmp_path / "change-2").exists()

        unknown = CliRunner().invoke(main, ["grant", "no such app", mailbox, "--profile", str(world.sb.profile_path)])
        assert unknown.exit_code == 2 and "no app" in unknown.output
        nobody = CliRunner().invoke(main, ["revoke", app, "nobody@nowhere", "--profile", str(world.sb.profile_path)])
        assert nobody.exit_code == 2 and "no mailbox named 'nobody@nowhere'" in nobody.output
    finally:
        world.close()


def _run_killed(args: list[str], folder, nth: int, delay: float) -> int | None:
    """Run `migrator <args>`; SIGKILL it `delay` s after it has recorded its nth journal action (None if killed)."""
    code, err = run_killed(args, delay=delay, deadline=time.monotonic() + 120, after_actions=(folder, nth))
    assert code in (None, 0, 12), err[-3000:]
    return code


@pytest.mark.slow
def test_a_killed_revoke_and_grant_converge_without_gaps(tmp_path):
    from migrator.sandbox.faults import FaultProfile

    # reads lag behind writes (0.1-0.5 s of real time): a run killed right after a write resumes while they lag
    lag = FaultProfile(name="read-lag", read_lag_s=0.3, read_lag_jitter_s=0.2)
    world = migrated(tmp_path, delays=FAST, faults=lag)
    rng = random.Random("change-kill")
    try:
        plan = world.plan
        shared = next(g for g in plan.groups if g.apps >= 2)
        scopes = {s.key for s in plan.scopes if shared.key in s.groups}
        app = sorted(a.app_id for a in plan.assignments if a.scope in scopes)[0]
        reach = {a: set(r) for a, r in rbac_reach(world).items()}
        victim = sorted(shared.members)[0]
        newcomer = sorted({g.mailbox for g in plan.grants} - reach[app])[0]
        start = world.sb.now()
        kills = 0
        for kind, mailbox in (("revoke", victim), ("grant", newcomer)):
            folder = tmp_path / f"{kind}-change"
            args = [kind, app, mailbox, "--profile", str(world.sb.profile_path), "--out", str(folder), "--yes",
                    "--wait", "--propagation-wait", "1"]
            for attempt in range(12):
                window = attempt < 6
                code = _run_killed(args, folder, rng.randint(1, 4), rng.uniform(0.0, 0.6) if window else 1e9)
                if code is None:
                    kills += 1
                    continue
                if code == 0:
                    break
            else:
                raise AssertionError(f"{kind} did not converge")
            reach[app] = reach[app] - {victim} if kind == "revoke" else reach[app] | {newcomer}
        assert kills >= 2
        time.sleep(1.5)  # past the sandbox's propagation delay and token lifetime
        assert {a: set(r) for a, r in rbac_reach(world).items()} == reach
        names = [g["name"] for g in world.sb.state.to_fixture()["groups"]]
        assert len(names) == len(set(names))  # no group made twice
        report = world.sb.check()
        for i in report.gaps + report.overgrants:
            assert (i.app_id, i.mailbox) in {(app, victim), (app, newcomer)} and i.start >= start, i
        groups = {g["name"]: {m.lower() for m in g["members"]} for g in world.sb.state.to_fixture()["groups"]}
        assert groups[shared.name] == set(shared.members)
    finally:
        world.close()
