"""Helpers shared by the executor tests: run the executor against a FakeTenant with a manual clock."""

from __future__ import annotations

from fakes import FakeExchange, FakeGraph
from migrator.executor.context import Control, ExecSettings, Output
from migrator.executor.journal import Journal
from migrator.executor.runner import Runner
from migrator.planner.plan import load_plan


def settings(**kw) -> ExecSettings:
    base = dict(propagation_wait=120, token_lifetime=60, token_margin=30, grant_apply_wait=40, readback_spacing=5,
                replication_timeout=60, replication_poll=1, verify_retry_delay=1)
    base.update(kw)
    return ExecSettings(**base)


def execute(tenant, plan_path, batches, *, wait=True, dry_run=False, control=None, entra=None, **kw):
    plan = load_plan(plan_path)
    with Journal(plan_path, readonly=dry_run, clock=tenant.clock.now) as journal:
        runner = Runner(plan, journal, FakeExchange(tenant), FakeGraph(tenant), settings=settings(**kw),
                        dry_run=dry_run, wait=wait, control=control or Control(plan_path), output=Output(quiet=True),
                        now=tenant.clock.now, sleep=tenant.clock.sleep, entra=entra)
        result = runner.run(batches)
    result.output = runner.output
    return result


def run_until_done(tenant, plan_path, batches, *, max_runs=200, **kw):
    """Re-run after every crash (fakes.Crash) until every batch is done; returns the number of runs."""
    from fakes import Crash

    for attempt in range(1, max_runs + 1):
        try:
            result = execute(tenant, plan_path, batches, **kw)
        except Crash:
            continue
        if all(o.status in ("done", "skipped") for o in result.outcomes):
            return attempt, result
        if any(o.status == "failed" for o in result.outcomes):
            continue  # a transient fault failed an item: run again, as an admin would
    raise AssertionError("did not converge")


def rollback(tenant, plan_path, batch, *, wait=True, dry_run=False, control=None, entra=None, **kw):
    from migrator.executor.rollback import RollbackRunner

    plan = load_plan(plan_path)
    with Journal(plan_path, readonly=dry_run, clock=tenant.clock.now) as journal:
        runner = RollbackRunner(plan, journal, FakeExchange(tenant), FakeGraph(tenant), settings=settings(**kw),
                                dry_run=dry_run, wait=wait, control=control or Control(plan_path),
                                output=Output(quiet=True), now=tenant.clock.now, sleep=tenant.clock.sleep,
                                entra=entra)
        result = runner.run([batch])
    result.output = runner.output
    return result
