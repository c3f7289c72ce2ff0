"""A migrated sandbox tenant for `migrator grant`/`revoke` tests: a synthetic tenant whose plan shares groups
between apps, every batch executed through the real clients on a fast-forwarded clock; and a helper that runs one
request (plan + apply) on that clock the way the CLI does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from migrator.planner.plan import load_plan
from sandbox_world import make_fixture, make_plan

WAITS = {"propagation_wait": 2100.0, "token_lifetime": 3900.0}


@dataclass
class World:
    sb: object
    clock: object
    plan: object
    root: Path

    def close(self) -> None:
        self.sb.stop()


# Delays of about a second, for runs on the real clock (the CLI in a subprocess): as the chaos test's.
FAST = {"propagation_delay": 0.5, "token_lifetime": 1.0, "replication_delay": 0.3, "sendas_delay": 0.3,
        "graph_replication_delay": 0.2}


def migrated(tmp_path: Path, *, seed: int = 0, mailboxes: int = 14, apps: int = 5, clusters: int = 2,
             need_shared: bool = True, delays: dict | None = None, faults="none") -> World:
    """A migrated tenant on a sandbox clock that follows real time, fast-forwarded through the migration's waits
    (`delays`: SandboxSettings keywords, default the rehearsal's)."""
    from migrator.executor.context import Output
    from migrator.executor.session import connect
    from migrator.rehearse import REHEARSAL_DELAYS, run_batches
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    for s in range(seed, seed + 40):
        fixture, _ = make_fixture(seed=s, mailboxes=mailboxes, apps=apps, per_app=(2, 6), clusters=clusters)
        plan_path = make_plan(fixture, tmp_path / f"plan{s}", pilot=1, batch_size=3)
        plan = load_plan(plan_path)
        if not need_shared or any(g.apps >= 2 for g in plan.groups):
            break
    else:
        raise AssertionError("no seed gives a group two apps share")
    clock = Clock()
    sb = start_sandbox(fixture, clock=clock, settings=SandboxSettings(**(delays or REHEARSAL_DELAYS)),
                       run_dir=tmp_path / "sb", smtp=False, faults=faults)
    conn = connect(sb.profile_path, graph_write=True)
    run = run_batches(plan, plan_path, conn, [b.number for b in plan.batches], exec_settings(),
                      output=Output(quiet=True), now=clock.now, sleep=clock.advance)
    conn.session.close()
    assert run.ok, run.problems
    return World(sb, clock, plan, tmp_path / "changes")


def exec_settings(**kw):
    from migrator.executor.context import ExecSettings

    return ExecSettings(concurrency=1, verify_retry_delay=5.0, replication_poll=5.0, replication_timeout=900.0,
                        **{**WAITS, **kw})


def request(world: World, kind: str, app: str, mailboxes: list[str], *, wait: bool = True, control=None):
    """(Prepared, RunResult | None): one grant/revoke request, as the CLI runs it, on the sandbox clock."""
    from migrator.change.request import observer, prepare
    from migrator.executor.change import apply_change
    from migrator.executor.context import Output
    from migrator.executor.session import RunOptions

    observe = observer(world.sb.profile_path)
    prepared = prepare(kind, app, mailboxes, observe, root=world.root)
    if prepared.folder is None:
        return prepared, None
    options = RunOptions(exec_settings(), wait=wait, output=Output(quiet=True), now=world.clock.now,
                         sleep=world.clock.advance)
    return prepared, apply_change(prepared.folder, world.sb.profile_path, options, observe=observe)


def rbac_reach(world: World) -> dict[str, frozenset[str]]:
    """Every app's RBAC reach as the sandbox's data plane sees it now (propagated)."""
    return {app: access.rbac for app, access in world.sb.access().items()}


def rollback(world: World, folder: Path, *, wait: bool = True):
    """Roll a change plan back, as `migrator rollback FOLDER --batch 1` does, on the sandbox clock."""
    from migrator.executor.context import Output
    from migrator.executor.session import RunOptions, RunSession

    options = RunOptions(exec_settings(), wait=wait, output=Output(quiet=True), now=world.clock.now,
                         sleep=world.clock.advance)
    with RunSession.open(folder, world.sb.profile_path, options, graph_write=False) as session:
        return session.rollback(1)
