"""The run facade: open a plan, lock its journal, connect, preflight, run or roll back batches, say how it ended.

Every caller that runs the executor goes through here: `migrator execute` / `rollback` (cli/execute.py), the
rehearsal and the demo (rehearse.py, demo.py) and the benchmark (bench/execute_api.py). The order is fixed:

1. the plan is loaded (hashes and exactness: a PlanError before anything else);
2. the journal is opened and locked (a second executor on the same plan stops here, before connecting);
3. the tenant is connected and, unless the run is dry, the preflight checks the tokens' permissions
   (a TenantError before any write); on any failure the journal is closed again;
4. `execute(batches)` / `rollback(batch)` run the Runner / RollbackRunner (the drift check and the other
   per-batch preflight live there) with the stop control (Ctrl-C, the pause file);
5. `outcome_lines(result, phase)` says what the command prints at the end.

`RunSession.open(plan, tenant, options)` accepts a Plan or a plan folder, and a connection profile path or an
already connected `Connection` (`connect()`: a caller that runs several sessions on one tenant, as the rehearsal
does, connects and checks the permissions once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.executor import Connection, can_write_entra, check_permissions
from migrator.executor.context import Control, ExecSettings, Output
from migrator.executor.entra import EntraWrites
from migrator.executor.journal import Journal
from migrator.executor.review import PendingChange, tenant_label
from migrator.executor.runner import Runner, RunResult, fmt_time
from migrator.executor.states import Outcome


def connect(profile_path: Path, *, graph_write: bool = True, preflight: bool = True, limiter=None) -> Connection:
    """The tenant clients of a connection profile; with `preflight`, stop (TenantError) before any write when the
    tokens lack a permission the run needs (`graph_write`: the cut-over and rollback change Entra assignments)."""
    conn = Connection(Path(profile_path), limiter=limiter)
    if preflight:
        check_permissions(conn, graph_write=graph_write)
    return conn


@dataclass
class RunOptions:
    """How a session runs its batches (the same knobs as `migrator execute` / `rollback`)."""

    settings: ExecSettings = field(default_factory=ExecSettings)
    dry_run: bool = False
    wait: bool = False  # wait out the propagation and token waits here instead of returning "waiting"
    output: Output | None = None
    # asked (once per batch) before a run's first change to it, with what will change; None: no question (--yes)
    confirm: Callable[[PendingChange], bool] | None = None
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    signals: bool = False  # install the Ctrl-C handler (a command on a terminal), uninstalled after each run
    from_undo_log: bool = False  # rebuild a lost or damaged journal.db from undo-log.jsonl first (rollback)
    # A second connection profile that holds AppRoleAssignment.ReadWrite.All, for the Entra writes of the cut-over
    # and its rollback only (connected when that step first needs it). None: the run's own profile if its token
    # holds the permission, else the step is handed over to a privileged admin (entra.py).
    cutover_profile: Path | None = None
    doctor: bool = False  # run `migrator doctor`'s checks first (execute): refuse on a blocking finding, adapt


class RunSession:
    """One plan folder held under its journal lock, connected to its tenant. A context manager: leaving it closes
    the journal (the lock). Build it with `RunSession.open`."""

    def __init__(self, plan, journal: Journal, conn: Connection, options: RunOptions) -> None:
        self.plan, self.journal, self.conn, self.options = plan, journal, conn, options
        self.plan_dir = Path(plan.path)
        self.last_runner: Runner | None = None  # the runner of the latest run (its calls and idle wait time)

    @classmethod
    def open(cls, plan: Any, tenant: Path | Connection, options: RunOptions | None = None, *,
             graph_write: bool = True, journal_clock: Callable[[], float] | None = None) -> RunSession:
        """Load the plan (when given a folder), lock its journal, connect and preflight (when given a profile)."""
        from migrator.planner.plan import load_plan

        options = options or RunOptions()
        if not hasattr(plan, "batches"):
            plan = load_plan(Path(plan))  # hashes and exactness: PlanError before anything else
        # The lock: a second executor stops here. A dry run only reads the journal (and may run beside a real one).
        # A damaged journal stops here too (integrity check), unless it is to be rebuilt from the undo log.
        journal = Journal(Path(plan.path), readonly=options.dry_run, clock=journal_clock or time.time,
                          from_undo_log=options.from_undo_log)
        try:
            conn = tenant if isinstance(tenant, Connection) else connect(
                Path(tenant), graph_write=graph_write, preflight=not options.dry_run)
            if options.doctor:  # read-only checks of the tool's assumptions; a blocking finding stops here
                from migrator.doctor import preflight as doctor_preflight

                # reads a fresh doctor.json (`migrator doctor`), writes none: a run that changes nothing leaves
                # the plan folder as it was
                doctor_preflight(conn, plan, options.settings, write=False, output=options.output or Output())
        except BaseException:
            journal.close()
            raise
        return cls(plan, journal, conn, options)

    def all_batches(self) -> list[int]:
        return [int(b.number) for b in self.plan.batches]

    def execute(self, batches: Iterable[int] | None = None) -> RunResult:
        """Apply `batches` (every batch of the plan when None), in order; while one waits, the next goes on."""
        numbers = self.all_batches() if batches is None else [int(b) for b in batches]
        return self._run(Runner, numbers)

    def rollback(self, batch: int) -> RunResult:
        """Undo one batch from the journal."""
        from migrator.executor.rollback import RollbackRunner

        if isinstance(self.plan.meta.get("change"), dict):  # a `migrator grant`/`revoke` change plan
            from migrator.executor.change_rollback import ChangeRollbackRunner

            return self._run(ChangeRollbackRunner, [int(batch)])
        return self._run(RollbackRunner, [int(batch)])

    def _run(self, runner_class: type[Runner], batches: list[int]) -> RunResult:
        opts = self.options
        control = Control(self.plan_dir)
        if opts.signals:
            control.install()
        try:
            runner = runner_class(self.plan, self.journal, self.conn.exo, self.conn.graph, settings=opts.settings,
                                  dry_run=opts.dry_run, wait=opts.wait, control=control,
                                  output=opts.output or Output(), confirm=opts.confirm,
                                  tenant=tenant_label(getattr(self.conn, "profile", None)), now=opts.now,
                                  sleep=opts.sleep, entra=self.entra_writes())
            self.last_runner = runner
            return runner.run(batches)
        finally:
            if opts.signals:
                control.uninstall()

    def entra_writes(self) -> EntraWrites:
        """Who does the cut-over's (and its rollback's) Entra writes: a second profile, the run's own profile when
        its token may, or a privileged admin by hand (handover)."""
        tenant = self.conn.profile.tenant_id
        second = self.options.cutover_profile
        if second is not None:
            def open_graph():
                conn = Connection(Path(second))
                check_permissions(conn, graph_write=True, exchange=False)
                return conn.graph
            return EntraWrites("profile", open_graph, tenant)
        return EntraWrites("run" if can_write_entra(self.conn) is not False else "handover", tenant_id=tenant)

    def close(self) -> None:
        self.journal.close()

    def __enter__(self) -> RunSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Line:
    """One line of a run's closing summary: stdout, or stderr (`err`) in a colour."""

    text: str
    err: bool = False
    fg: str | None = None


def outcome_lines(result: RunResult, *, phase: str) -> list[Line]:
    """What a command says at the end of a run: batches waiting (and until when), failures, the API calls."""
    lines = []
    for outcome in result.outcomes:
        if outcome.status == Outcome.WAITING:
            lines.append(Line(f"Batch {outcome.batch}: waiting ({outcome.message}). Nothing else to do now: run the "
                              f"same command again after {fmt_time(outcome.until or 0.0)}, or add --wait."))
        elif outcome.status == Outcome.HANDOVER:
            lines.append(Line(f"Batch {outcome.batch}: {outcome.message}.", err=True, fg="yellow"))
        elif outcome.status == Outcome.DONE and outcome.message:
            lines.append(Line(f"Batch {outcome.batch}: {outcome.message}"))
    failed = [o for o in result.outcomes if o.status == Outcome.FAILED]
    if failed:
        undo = " or `migrator rollback` undoes it" if phase == "execute" else ""
        lines.append(Line(f"{sum(len(o.failures) for o in failed)} item(s) failed; the batch is left where "
                          f"`migrator {phase}` resumes it{undo}.", err=True, fg="red"))
    calls = result.calls
    lines.append(Line(f"API calls: {calls.get('read', 0)} read(s), {calls.get('write', 0)} write(s).", err=True))
    return lines


__all__ = ["Line", "RunOptions", "RunSession", "connect", "outcome_lines"]
