"""Run batches of a plan: preflight, then the steps of steps.EXECUTE_STEPS in order, resumably.

A batch moves `new → executing → done`; each step is skipped when the journal says it is done (it was verified
before being marked so). The two waits are journal rows with a `not_before` time: without `--wait` the command
stops there and says when to come back (exit 0); with `--wait` it counts down. Preflight runs on every invocation,
before this invocation's first write: the plan's hashes and exactness (load_plan, done by the caller), the
journal belongs to this plan, the service principals resolve, the tenant has not drifted.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.errors import MigratorError, PlanError
from migrator.exchange.exo import ExchangeClient
from migrator.exchange.graph import GraphClient
from migrator.executor.context import (
    Context,
    Control,
    ExecSettings,
    Guarded,
    ItemFailure,
    Output,
    StepResult,
    Stopped,
    batch_view,
)
from migrator.executor.entra import EntraWrites
from migrator.executor.journal import Journal
from migrator.executor.lifetimes import TokenLifetimes, token_wait
from migrator.executor.review import PendingChange
from migrator.executor.states import BatchState, Outcome
from migrator.executor.steps import (
    EXECUTE_STEPS,
    StepFailed,
    check_cutover_safe,
    drift_check,
    raise_drift,
    resolve_sps,
)
from migrator.executor.undolog import JournalWriteError
from migrator.exitcodes import ExitCode

WAIT_STEPS = {"propagation_wait": "propagation_wait", "grants_wait": "grant_apply_wait"}
WARNINGS_KEPT = 500  # Exchange warnings kept in the journal (the newest)
COUNTDOWN_EVERY = 1800.0  # s between countdown lines when the output is not a terminal


@dataclass
class BatchOutcome:
    batch: int
    status: str  # done | waiting | handover | failed | stopped | skipped
    until: float | None = None
    failures: list[ItemFailure] = field(default_factory=list)
    message: str = ""


@dataclass
class RunResult:
    outcomes: list[BatchOutcome]
    calls: Counter
    waited: float = 0.0  # seconds spent idle in waits (the benchmark's active time is wall time minus this)

    @property
    def exit_code(self) -> int:
        statuses = {o.status for o in self.outcomes}
        if Outcome.FAILED in statuses:
            return ExitCode.ITEMS_FAILED
        if Outcome.STOPPED in statuses:
            return ExitCode.INCOMPLETE
        if Outcome.HANDOVER in statuses:
            return ExitCode.HANDOVER
        if Outcome.WAITING in statuses:
            return ExitCode.WAITING  # as `migrator status`: come back at the time shown (the same command resumes)
        return ExitCode.OK


def plan_digest(plan) -> str:
    """The plan's identity for the journal: the SHA-256 of plan.json (which holds every CSV's hash)."""
    path = Path(plan.path) / "plan.json"
    if path.exists():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return hashlib.sha256(repr(plan.meta).encode()).hexdigest()


def bind_journal(journal: Journal, plan) -> None:
    digest = plan_digest(plan)
    recorded = journal.get_meta("plan_sha256")
    if recorded is None:
        if not journal.readonly:
            journal.set_meta("plan_sha256", digest, staged=True)  # both written with the first change, if any
            journal.note_plan(digest)
    elif recorded != digest:
        raise PlanError("the journal in this folder was written for another version of the plan (plan.json changed "
                        "after execution started); restore the original plan.json", path=str(journal.path))
    else:
        journal.note_plan(digest)  # a journal from before the undo log existed: the log starts now


def fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def fmt_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Runner:
    """Executes batches. One Runner per invocation; the journal must be held (locked) by the caller."""

    def __init__(self, plan, journal: Journal, exo, graph, *, settings: ExecSettings | None = None,
                 dry_run: bool = False, wait: bool = False, control: Control | None = None,
                 output: Output | None = None, confirm: Callable[[PendingChange], bool] | None = None,
                 tenant: str = "",
                 now: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 entra: EntraWrites | None = None) -> None:
        self.plan, self.journal = plan, journal
        self.entra = entra or EntraWrites()
        self._entra_client: Any = None
        self._entra_lock = threading.Lock()
        self.settings = settings or ExecSettings()
        self.dry_run, self.wait = dry_run, wait
        self.control = control or Control(Path(plan.path))
        self.output = output or Output()
        self.confirm = confirm
        self.tenant = tenant  # named in the question asked before the first change
        self._confirmed: set[int] = set()  # batches the person said yes to in this invocation (asked once each)
        self.now, self.sleep = now, sleep
        self.calls: Counter = Counter()
        self.waited = 0.0  # seconds spent idle in waits (for the benchmark's active time)
        self._sps: dict[int, dict] = {}  # per batch: service principals resolved in this run
        self._shared: dict = {}  # reads valid for the whole run (the mailbox map)
        self._drift_checked: dict[int, tuple] = {}  # batch -> (time, scan, scan time) of its last drift check
        from migrator.executor.runlog import RunLog

        self.run_log = None if dry_run else RunLog(Path(plan.path), clock=now)
        self._where: tuple[int | None, str] = (None, "")  # (batch, step) being run: named by the run log
        on_write = None if dry_run else self.log_write
        self.exo = Guarded(exo, spec=ExchangeClient, control=self.control, output=self.output, dry_run=dry_run,
                           counter=self.calls, label=self.label, on_write=on_write)
        self.graph = Guarded(graph, spec=GraphClient, control=self.control, output=self.output, dry_run=dry_run,
                             counter=self.calls, label=self.label, on_write=on_write)
        if hasattr(exo, "on_warning") and not dry_run:
            exo.on_warning = self._keep_warning  # Exchange's @adminapi.warnings go into the journal
        self._warning_lock = threading.Lock()

    def _keep_warning(self, cmdlet: str, text: str) -> None:
        """Journal meta `exchange_warnings`: a JSON list of {at, cmdlet, text}, the last WARNINGS_KEPT."""
        with self._warning_lock:
            kept = json.loads(self.journal.get_meta("exchange_warnings") or "[]")
            kept.append({"at": self.now(), "cmdlet": cmdlet, "text": text})
            self.journal.set_meta("exchange_warnings", json.dumps(kept[-WARNINGS_KEPT:]))

    def entra_writer(self) -> Any:
        """The client for Entra app-role writes (entra.py), or None: hand the change over to a privileged admin.
        A second profile is connected (and its roles checked) the first time a step asks, not before."""
        if self.entra.mode == "run" or (self.dry_run and self.entra.mode == "profile"):
            return self.graph  # (a dry run sends no write: the run's client describes it)
        if self.entra.mode == "handover":
            return None
        with self._entra_lock:
            if self._entra_client is None:
                assert self.entra.open_graph is not None
                self._entra_client = Guarded(self.entra.open_graph(), spec=GraphClient, control=self.control,
                                             output=self.output, dry_run=self.dry_run, counter=self.calls,
                                             label=self.label, on_write=None if self.dry_run else self.log_write)
            return self._entra_client

    # ---- public ---------------------------------------------------------------------------------------------

    def run(self, batches: list[int]) -> RunResult:
        bind_journal(self.journal, self.plan)
        outcomes: dict[int, BatchOutcome] = {}
        if not self.dry_run:
            if self.tenant:  # named by the report; written with the run's first change, if any
                self.journal.set_meta("tenant", self.tenant, staged=True)
            self.journal.start_run(self.phase, batches[0] if len(batches) == 1 else None,
                                   {"batches": batches, "wait": self.wait, "cutover": self.settings.cutover,
                                    "propagation_wait": self.settings.propagation_wait,
                                    "token_lifetime": self.settings.token_lifetime})
        pending = list(batches)
        try:
            # Round robin: each batch goes as far as it can; while one waits, the next one proceeds.
            while pending:
                for number in list(pending):
                    previous = outcomes.get(number)
                    if previous is not None and previous.until is not None and self.now() < previous.until:
                        continue  # still waiting: do not redo its preflight yet
                    outcome = self.run_batch(number)
                    outcomes[number] = outcome
                    if outcome.status != Outcome.WAITING:
                        pending.remove(number)
                    if outcome.status in (Outcome.FAILED, Outcome.STOPPED):
                        pending = []
                        break
                if not pending or not self.wait:
                    break
                # every pending batch is waiting, so has an until; a missing one counts as due now
                first = min((outcomes[n] for n in pending), key=lambda o: o.until or 0.0)
                self.countdown(first.until or 0.0, f"batch {first.batch}: {first.message.split(' until ')[0]}")
        finally:
            if not self.dry_run:
                statuses = sorted({o.status for o in outcomes.values()}) or ["nothing"]
                try:
                    self.journal.end_run(",".join(statuses))
                except JournalWriteError:
                    pass  # the disk that stopped the run cannot take its end either; the outcome says why
        return RunResult([outcomes[n] for n in batches if n in outcomes], self.calls, self.waited)

    phase = "execute"
    # (step name, function); None marks a wait the loop handles itself
    steps: tuple[tuple[str, Callable[[Context], StepResult] | None], ...] = EXECUTE_STEPS

    def batch_context(self, number: int) -> tuple[Context, str] | BatchOutcome:
        """The context to run batch `number` in, and its state; or an outcome when there is nothing to do."""
        view = batch_view(self.plan, number)
        state, generation = self.journal.batch_state(number)
        if state == BatchState.DONE:
            self.output.info(f"Batch {number}: already done.")
            warnings = [] if self.dry_run else self.claims_back(number, view, generation)
            return BatchOutcome(number, Outcome.SKIPPED, message="; ".join(["already done", *warnings]))
        if state == BatchState.ROLLING_BACK:
            raise MigratorError(f"batch {number}: a rollback is in progress; finish it with `migrator rollback` "
                                "before executing the batch again")
        if state == BatchState.ROLLED_BACK:
            generation += 1
            state = BatchState.NEW
        ctx = Context(plan=self.plan, view=view, journal=self.journal, exo=self.exo, graph=self.graph,
                      settings=self.settings, control=self.control, output=self.output, generation=generation,
                      phase=self.phase, dry_run=self.dry_run, now=self.now, sleep=self.sleep,
                      sps=self._sps.setdefault(number, {}), cache={"shared": self._shared},
                      entra_writer=self.entra_writer, entra_tenant=self.entra.tenant_id)
        self.output.info(f"Batch {number}: {len(view.apps)} app(s), {len(view.migrate_grants())} grant(s) to migrate"
                         f"{' (dry run: nothing is written)' if self.dry_run else ''}")
        return ctx, state

    def begin(self, ctx: Context, state: str) -> None:
        if not self.dry_run and state == BatchState.NEW:
            self.journal.set_batch_state(ctx.batch, BatchState.EXECUTING, ctx.generation)

    def finish(self, ctx: Context) -> None:
        if not self.dry_run:
            self.journal.set_batch_state(ctx.batch, BatchState.DONE, ctx.generation)
        self.output.info(f"Batch {ctx.batch}: done.")

    def run_batch(self, number: int) -> BatchOutcome:
        prepared = self.batch_context(number)
        if isinstance(prepared, BatchOutcome):
            return prepared
        ctx, state = prepared
        try:
            self.preflight(ctx)
            if not self.approved(ctx, state):
                return BatchOutcome(number, Outcome.STOPPED, message="not confirmed: nothing was changed")
            self.begin(ctx, state)
            for name, fn in self.steps:
                ctx.step = name
                self._where = (number, name)
                row = self.journal.step(number, ctx.generation, self.phase, name)
                if row is not None and row.status == "done":
                    if name == "groups":
                        ctx.dns.update(row.detail.get("dns", {}))
                    continue
                if fn is None:
                    until = self.wait_step(ctx, name, row)
                    if until is not None:
                        return BatchOutcome(number, Outcome.WAITING, until=until,
                                            message=f"{name.replace('_', ' ')} until {fmt_time(until)}")
                    continue
                self.output.info(f"  {name.replace('_', ' ')}...")
                if not self.dry_run:
                    self.journal.set_step(number, ctx.generation, self.phase, name, "running")
                notes = ctx.cache.setdefault("notes", [])
                mark = len(notes)
                result = fn(ctx)
                if notes[mark:]:  # kept with the step, so a later invocation can still report them
                    result.detail = {**result.detail, "notes": notes[mark:]}
                if result.handover and not result.failures:
                    if not self.dry_run:
                        self.journal.set_step(number, ctx.generation, self.phase, name, "handover",
                                              detail={**result.detail, "handover": result.handover})
                    return BatchOutcome(number, Outcome.HANDOVER, message=result.handover)
                if result.failures:
                    if not self.dry_run:
                        self.journal.set_step(number, ctx.generation, self.phase, name, "failed",
                                              detail={"failures": [str(f) for f in result.failures]})
                    raise StepFailed(name, result.failures)
                if not self.dry_run:
                    self.journal.set_step(number, ctx.generation, self.phase, name, "done", detail=result.detail)
            self.finish(ctx)
            notes = [n for row in self.journal.steps(number, ctx.generation) if row.phase == self.phase
                     for n in row.detail.get("notes", [])] if not self.dry_run else []
            notes += [n for n in ctx.cache.get("notes", []) if n not in notes]
            return BatchOutcome(number, Outcome.DONE, message="; ".join(notes))
        except StepFailed as exc:
            self.output.info(str(exc))
            return BatchOutcome(number, Outcome.FAILED, failures=exc.failures, message=str(exc))
        except (Stopped, JournalWriteError) as exc:
            # A journal or undo-log write that failed raised before its tenant write was sent: stop cleanly here.
            self.output.info(str(exc))
            return BatchOutcome(number, Outcome.STOPPED, message=str(exc))

    # ---- pieces ---------------------------------------------------------------------------------------------

    def log_write(self, spec: type, name: str, args: tuple, kwargs: dict, outcome: str) -> None:
        """Append a write that was sent, and how it ended, to the plan's run log (runlog.py)."""
        from migrator.powershell.commands import Call, capture

        if self.run_log is None:
            return
        try:
            calls = capture(spec, name, args, kwargs)
        except Exception:  # the call itself refused its arguments: log the method, not a guess
            calls = [Call("cmdlet", name, {})]
        batch, step = self._where
        self.run_log.write(run=self.journal.run_id, phase=self.phase, batch=batch, step=step, calls=calls,
                           outcome=outcome)

    def label(self, value: str) -> str | None:
        """What an id in a write stands for, in words (a dry run's PowerShell comments): an app (by its app id or
        service-principal object id) or a plan group (by name, address or DN)."""
        key = str(value).strip().lower()
        names = getattr(self, "_labels", None)
        if names is None:
            names = {}
            for batch in self.plan.batches:
                view = batch_view(self.plan, int(batch.number))
                for app_id, app_name in view.app_names.items():
                    names[app_id] = f"app {app_name}" if app_name else f"app {app_id}"
            self._labels = names
        for sps in self._sps.values():  # service principals resolved by this run: object id -> the app
            for app_id, sp in sps.items():
                object_id = str((sp or {}).get("object_id", "")).lower() if isinstance(sp, dict) else ""
                if object_id and object_id not in names:
                    names[object_id] = names.get(app_id, f"app {app_id}")
        return names.get(key)

    def approved(self, ctx: Context, state: str) -> bool:
        """Ask before this invocation's first change to the batch (once per batch): what will change, on which
        tenant. No question in a dry run, without a confirm callback (--yes), or when the run would only find a
        wait still running."""
        if self.confirm is None or self.dry_run or ctx.batch in self._confirmed:
            return True
        left = self.steps_left(ctx)
        if not self.writes_ahead(ctx, left):
            return True
        from migrator.executor.review import pending_change

        if not self.confirm(pending_change(ctx, tenant=self.tenant, state=state, steps=left)):
            self.output.info(f"Batch {ctx.batch}: not confirmed; nothing was changed.")
            return False
        self._confirmed.add(ctx.batch)
        return True

    def steps_left(self, ctx: Context) -> list[str]:
        done = {r.step for r in self.journal.steps(ctx.batch, ctx.generation)
                if r.phase == self.phase and r.status == "done"}
        return [name for name, _ in self.steps if name not in done]

    def writes_ahead(self, ctx: Context, left: list[str]) -> bool:
        """Whether running the batch now would change the tenant (not just find its wait still running)."""
        if not left or self.wait:
            return bool(left)
        first = left[0]
        if dict(self.steps)[first] is not None:
            return True
        row = self.journal.step(ctx.batch, ctx.generation, self.phase, first)
        if row is None or row.not_before is None:
            return self.wait_seconds(ctx, first) <= 0
        return self.now() >= row.not_before

    def claims_back(self, number: int, view, generation: int) -> list[str]:
        """A done batch whose apps got their SMTP.SendAsApp claim back (a later admin consent): one warning each."""
        from migrator.executor.claims import claim_back_warning, claims_back

        cut = self.journal.actions(batch=number, generation=generation, phase="execute", kind="entra_assignment",
                                   op="delete")
        sps = {}
        for action in cut:
            sp = self.graph.get_service_principal_by_app_id(action.key)
            if sp and sp.get("id"):
                sps[action.key] = sp["id"]
        warnings = [claim_back_warning(a, view.app_names.get(a, "")) for a in claims_back(self.graph, sps)]
        warnings += self.consents_back(number, view, generation)
        for warning in warnings:
            self.output.info(f"  warning: {warning}")
        return warnings

    def consents_back(self, number: int, view, generation: int) -> list[str]:
        """A done batch whose mail apps got a fenced Graph/EWS consent back after their policy went (aap.py)."""
        from migrator.executor.aap import CONSENT, consent_back_after_warning, consents_back, split_key

        apps = sorted({split_key(a.key)[0] for a in self.journal.actions(batch=number, generation=generation,
                                                                      phase="execute", kind=CONSENT, op="delete")})
        sps = {}
        for app_id in apps:
            sp = self.graph.get_service_principal_by_app_id(app_id)
            if sp and sp.get("id"):
                sps[app_id] = sp["id"]
        return [consent_back_after_warning(a, view.app_names.get(a, ""), perms)
                for a, perms in consents_back(self.graph, sps).items()] if sps else []

    def preflight(self, ctx: Context) -> None:
        """Read-only: service principals, drift, cut-over safety. Raises before any write of this invocation."""
        problems = resolve_sps(ctx)
        if problems:
            raise MigratorError(f"batch {ctx.batch}: " + "; ".join(problems))
        last = self._drift_checked.get(ctx.batch)
        if last is None or self.now() - last[0] > self.settings.rescan_after:
            raise_drift(drift_check(ctx), ctx.batch)  # on every invocation, and again after a long --wait
            self._drift_checked[ctx.batch] = (self.now(), ctx.cache.get("sendas"), ctx.cache.get("sendas_at"))
        else:  # re-entered after a short wait in this run: the check (and its scan) is still fresh
            ctx.cache["sendas"], ctx.cache["sendas_at"] = last[1], last[2]
        unsafe = check_cutover_safe(ctx)
        if unsafe:
            raise PlanError(f"batch {ctx.batch}: " + "; ".join(unsafe) + ". Re-plan so the app's whole SMTP reach "
                            "(SendAs, and FullAccess with the claim) moves to RBAC, or run with --no-cutover if the "
                            "tenant serves claim tokens through RBAC", path=str(self.plan.path))

    def wait_step(self, ctx: Context, name: str, row) -> float | None:
        """Start or check a wait. Returns the time to come back, or None when the wait is over."""
        seconds = self.wait_seconds(ctx, name)
        if self.dry_run:
            self.output.note(f"wait {fmt_duration(seconds)} ({name.replace('_', ' ')}) before the next step")
            return None
        if row is None or row.not_before is None:
            not_before = self.now() + seconds
            self.journal.set_step(ctx.batch, ctx.generation, self.phase, name, "waiting", not_before=not_before,
                                  detail={"seconds": seconds})
        else:
            not_before = row.not_before
        if self.now() < not_before:  # with --wait, run() counts down once no other batch can go on
            return not_before
        self.journal.set_step(ctx.batch, ctx.generation, self.phase, name, "done")
        return None

    def wait_seconds(self, ctx: Context, name: str) -> float:
        if name == "token_wait":
            cut = self.journal.step(ctx.batch, ctx.generation, "execute", "cutover")
            if cut is not None and cut.detail.get("skipped"):
                return 0.0  # no cut-over, no claim tokens to outlive
            if cut is not None and cut.detail.get("token_wait"):
                return float(cut.detail["token_wait"]["seconds"])  # from the policies read at the cut-over
            return token_wait(self.settings, TokenLifetimes())["seconds"]  # a dry run: no step row
        return float(getattr(self.settings, WAIT_STEPS[name]))

    def countdown(self, until: float, what: str) -> None:
        """Sleep until `until`, showing the time left; Ctrl-C and the pause file stop it cleanly.

        On a terminal one line is rewritten in place every second; otherwise (a log file, a CI job) a line at the
        start, one every COUNTDOWN_EVERY seconds and one at the end: about five lines for a two-hour wait."""
        last_line = None
        while True:
            self.control.check()
            left = until - self.now()
            if left <= 0:
                self.output.countdown(f"  waited for {what} (until {fmt_time(until)})", final=True)
                return
            bucket = int(left // COUNTDOWN_EVERY)
            if self.output.live:
                self.output.countdown(f"  waiting for {what}: {fmt_duration(left)} left (until {fmt_time(until)})")
            elif bucket != last_line:
                self.output.countdown(f"  waiting for {what}: {fmt_duration(left)} left (until {fmt_time(until)})")
                last_line = bucket
            step = min(1.0, left)
            self.sleep(step)
            self.waited += step
