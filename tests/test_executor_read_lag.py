"""The executor under read-after-write lag (sandbox/readlag.py), through the real clients against the sandbox: every
admin read of an object shows its state from before a write for LAG seconds after the write. The run is made to
crash right after the first write of each kind (the call answered, nothing after it recorded) and is resumed at
once, while that write is still hidden from reads: the resumed run must wait for its own writes to show, never
take the lag for drift or absence, never duplicate an object, and finish; the timeline must show no gap and no
over-grant. The same for a rollback. Deterministic: the sandbox clock is fast-forwarded by the executor's waits,
the lag has no jitter, and each crash point is a write the plan is sure to make."""

from __future__ import annotations

import pytest

from migrator.executor import Connection
from migrator.executor.context import ExecSettings, Output
from migrator.executor.journal import Journal
from migrator.executor.rollback import RollbackRunner
from migrator.executor.runner import Runner
from migrator.planner.plan import load_plan
from sandbox_world import make_fixture, make_plan, tenant_shape

pytestmark = pytest.mark.integration

LAG = 60.0  # s of the sandbox clock; the executor's replication_timeout (900 s) outlasts it
EXECUTE_WRITES = ("new_distribution_group", "update_group_members", "set_distribution_group", "new_management_scope",
                  "new_role_assignment", "delete_app_role_assignment", "remove_recipient_permission",
                  "remove_mailbox_permission")
ROLLBACK_WRITES = ("add_recipient_permission", "add_mailbox_permission", "grant_app_role", "remove_role_assignment",
                   "remove_management_scope", "remove_distribution_group")


class Crash(BaseException):
    """The process dies right after a write was answered (as a SIGKILL would, before anything is recorded)."""


class CrashAfter:
    """A client whose first call of each method named in `targets` is sent, answered, then the run 'dies'."""

    def __init__(self, client, targets: set[str]) -> None:
        self._client, self.targets, self.fired = client, targets, []

    def __getattr__(self, name: str):
        target = getattr(self._client, name)
        if name not in self.targets or not callable(target):
            return target

        def call(*args, **kwargs):
            target(*args, **kwargs)  # sent and answered
            self.targets.discard(name)
            self.fired.append(name)
            raise Crash(name)

        return call


@pytest.fixture
def world(tmp_path):
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.faults import FaultProfile
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, grants = make_fixture(seed=11, mailboxes=10, apps=4, per_app=(2, 4), clusters=2, shapes=True)
    plan = make_plan(fixture, tmp_path / "plan", pilot=0, batch_size=4, remove_fullaccess=True)
    clock = Clock()  # real time, fast-forwarded by the executor's waits (as a rehearsal does)
    settings = SandboxSettings(propagation_delay=30, token_lifetime=60, sendas_delay=30, graph_replication_delay=0)
    with start_sandbox(fixture, run_dir=tmp_path / "sb", settings=settings, clock=clock, smtp=False,
                       faults=FaultProfile(name="read-lag", read_lag_s=LAG)) as sb:
        yield sb, plan, grants, clock


def _run(runner_cls, plan, plan_path, exo, graph, clock, batches):
    settings = ExecSettings(propagation_wait=120, token_lifetime=60, token_margin=30, readback_spacing=10,
                            grant_apply_wait=60, replication_poll=5, verify_retry_delay=5)
    with Journal(plan_path, clock=clock.now) as journal:
        return runner_cls(plan, journal, exo, graph, settings=settings, wait=True, output=Output(quiet=True),
                          now=clock.now, sleep=clock.sleep).run(batches)


def _crash_at_each(sb, runner_cls, plan_path, clock, targets: tuple[str, ...], batches) -> list[str]:
    """Run, crashing after the first write of each target kind and resuming at once, until done."""
    plan = load_plan(plan_path)
    conn = Connection(sb.profile_path)
    exo, graph = CrashAfter(conn.exo, set(targets)), CrashAfter(conn.graph, set(targets))
    for _ in range(len(targets) + 2):
        try:
            result = _run(runner_cls, plan, plan_path, exo, graph, clock, batches)
        except Crash:
            # resumed at once: the write just made is still hidden from every read
            assert sb.state.read_lag.visible_by() > clock.now()
            continue
        assert [o.status for o in result.outcomes] == ["done"] * len(batches), [o.message for o in result.outcomes]
        return exo.fired + graph.fired
    raise AssertionError("did not finish")


def test_crashed_right_after_each_write_and_resumed_while_reads_lag(world):
    sb, plan_path, grants, clock = world
    plan = load_plan(plan_path)
    assert any(g.right == "FullAccess" and g.action == "migrate" for g in plan.grants)  # every write kind occurs
    before = tenant_shape(sb.state)
    batches = [b.number for b in plan.batches]

    fired = _crash_at_each(sb, Runner, plan_path, clock, EXECUTE_WRITES, batches)
    assert sorted(fired) == sorted(EXECUTE_WRITES)
    shape = sb.state.to_fixture()
    assert sorted(g["name"] for g in shape["groups"] if g["name"].startswith("migrator-")) == sorted(
        g.name for g in plan.groups)  # none duplicated
    assert sorted(s["name"] for s in shape["management_scopes"]) == sorted(s.name for s in plan.scopes)
    assert sorted(a["name"] for a in shape["role_assignments"]) == sorted(a.name for a in plan.assignments)
    assert not [p for p in shape["recipient_permissions"] if "app" in p["trustee"]]
    report = sb.state.check(grants)
    assert report.ok, report.to_dict()

    for number in reversed(batches):
        fired = _crash_at_each(sb, RollbackRunner, plan_path, clock, ROLLBACK_WRITES, [number])
        assert sorted(fired) == sorted(ROLLBACK_WRITES)
    assert tenant_shape(sb.state) == before  # exactly as it was: nothing left behind, nothing lost
    report = sb.state.check(grants)
    assert report.ok, report.to_dict()


def test_someone_elses_change_still_stops_the_run_under_read_lag(world):
    """Drift is not waited out: a SendAs grant the plan migrates, removed by someone else, stops the run before
    any write (read-after-write lag on, the removal visible by then)."""
    from migrator.errors import DriftError

    sb, plan_path, _grants, clock = world
    plan = load_plan(plan_path)
    victim = next(g for g in plan.grants if g.right == "SendAs")
    admin = sb.state.admin_caller()
    sb.state.invoke("Remove-RecipientPermission", {"Identity": victim.mailbox, "Trustee": victim.app_id,
                                                   "AccessRights": ["SendAs"]}, caller=admin)
    clock.advance(LAG)
    writes = sb.requests.counts()["write"]
    with pytest.raises(DriftError, match="SendAs grant missing"):
        _run(Runner, plan, plan_path, *_clients(sb), clock, [b.number for b in plan.batches])
    assert sb.requests.counts()["write"] == writes  # nothing was written


def _clients(sb):
    conn = Connection(sb.profile_path)
    return conn.exo, conn.graph


class CrashBefore:
    """A client whose first call of `at` after a call of `armed_by` 'dies' before it is sent."""

    def __init__(self, client, armed_by: str, at: str) -> None:
        self._client, self._armed_by, self._at, self.armed, self.fired = client, armed_by, at, False, False

    def __getattr__(self, name: str):
        target = getattr(self._client, name)
        if name not in (self._armed_by, self._at) or not callable(target):
            return target

        def call(*args, **kwargs):
            if name == self._at and self.armed and not self.fired:
                self.fired = True
                raise Crash(name)
            if name == self._armed_by:
                self.armed = True
            return target(*args, **kwargs)

        return call


def test_rollback_resumed_after_recording_its_restores_waits_for_them(world):
    """The rollback restored the grants and recorded them as applied, then died before its check scan. Resumed at
    once, it reads the restored grants as still missing (the lag): it adds them again (answered "already there")
    and reads until they show, rather than failing or restoring anything twice; the tenant ends as it was."""
    sb, plan_path, grants, clock = world
    plan = load_plan(plan_path)
    before = tenant_shape(sb.state)
    batches = [b.number for b in plan.batches]
    result = _run(Runner, plan, plan_path, *_clients(sb), clock, batches)
    assert [o.status for o in result.outcomes] == ["done"] * len(batches)
    clock.advance(LAG)
    exo, graph = _clients(sb)
    crashing = CrashBefore(exo, armed_by="add_recipient_permission", at="sendas_entries")
    with pytest.raises(Crash):
        _run(RollbackRunner, plan, plan_path, crashing, graph, clock, [batches[-1]])
    assert crashing.fired and sb.state.read_lag.visible_by() > clock.now()  # the restores are still hidden
    for number in reversed(batches):
        out = _run(RollbackRunner, plan, plan_path, *_clients(sb), clock, [number])
        assert out.outcomes[0].status == "done", out.outcomes[0].message
    assert tenant_shape(sb.state) == before
    report = sb.state.check(grants)
    assert report.ok, report.to_dict()
