"""The state of a plan's run, from its journal alone: the one source `migrator status`, `status --json`, `execute
--json` and the report all read (docs/design.md §6). No tenant call; the journal is opened read-only.

Per batch a condition:
  planned       never started
  running       a step is running and a process holds the plan's lock right now
  interrupted   started but stopped part-way (Ctrl-C, the PAUSE file, a crash, a "no"): run the command again
  waiting       a propagation or token wait runs until `waiting_until`
  ready         a wait has ended: run the command again to go on
  failed        a step failed; its failures are listed
  applied       every step done and verified
  rolled back   undone from the journal
Per app the same condition and the counts of its SendAs grants: `planned` (the plan migrates them), `migrated` (the
legacy grant was removed and not restored: the app is served by RBAC there), `on_legacy` (= planned - migrated:
still served by the legacy grant, restored ones included) and `restored` (put back by a rollback). Counts are read
from the journal's actions of the batch's current generation, so they add up by construction.

Exit codes (for scripts; documented in the command's help):
  0   every batch is applied or rolled back: nothing left to do
  10  a batch is waiting: run `execute`/`rollback` again after the time shown
  11  a step failed and needs attention: read the failures, fix, then run the same command again (or roll back)
  12  work remains: a batch planned, interrupted, ready to go on, or running now
  13  a batch is handed over: a privileged admin runs handover-batch-N-<step>.ps1, then run the command again
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from migrator.executor.claims import registration_warning
from migrator.executor.journal import Journal
from migrator.executor.plan_lock import lock_holder
from migrator.executor.rollback import ROLLBACK_STEPS
from migrator.executor.runner import fmt_duration, fmt_time
from migrator.executor.states import BatchState, StepStatus
from migrator.executor.steps import EXECUTE_STEPS
from migrator.exitcodes import ExitCode
from migrator.model import Right, norm_id
from migrator.planner.plan import MIGRATE

DONE_ACTIONS = ("applied", "verified")


@dataclass
class AppStatus:
    app_id: str
    name: str
    condition: str
    planned: int
    migrated: int = 0
    restored: int = 0
    unconfirmed: int = 0  # removal recorded but its answer never came (a crash mid-call): the next run checks

    @property
    def on_legacy(self) -> int:
        return self.planned - self.migrated - self.unconfirmed

    def as_json(self) -> dict:
        return {"app_id": self.app_id, "name": self.name, "condition": self.condition, "planned": self.planned,
                "migrated": self.migrated, "unconfirmed": self.unconfirmed, "on_legacy": self.on_legacy,
                "restored": self.restored}


@dataclass
class BatchStatus:
    batch: int
    apps: int
    grants: int
    state: str  # the journal's batch state: new | executing | done | rolling_back | rolled_back
    generation: int
    phase: str
    steps: list[dict] = field(default_factory=list)
    waiting_until: float | None = None
    failures: list[str] = field(default_factory=list)
    handover: str = ""  # what a privileged admin must do before the batch can go on
    running: bool = False  # a step is marked running (see `holder` for whether a process is on it)
    holder: str | None = None  # who holds the plan's lock now
    now: float = 0.0
    app_rows: list[AppStatus] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # cut-over apps whose registration still requests the claim

    @property
    def condition(self) -> str:
        if self.failures:
            return "failed"
        if self.handover:
            return "handed over"
        if self.state == BatchState.NEW:
            return "planned"
        if self.state == BatchState.DONE:
            return "applied"
        if self.state == BatchState.ROLLED_BACK:
            return "rolled back"
        if self.holder is not None and self.running:
            return "running"
        if self.waiting_until is not None:
            return "waiting" if self.now < self.waiting_until else "ready"
        return "running" if self.holder is not None else "interrupted"

    @property
    def counts(self) -> dict[str, int]:
        return {"planned": sum(a.planned for a in self.app_rows), "migrated": sum(a.migrated for a in self.app_rows),
                "unconfirmed": sum(a.unconfirmed for a in self.app_rows),
                "on_legacy": sum(a.on_legacy for a in self.app_rows),
                "restored": sum(a.restored for a in self.app_rows)}


def _app_counts(journal: Journal, batch: int, generation: int) -> tuple[Counter, Counter, Counter]:
    """Per app id: SendAs grants whose legacy grant is removed and not restored; grants a rollback restored;
    removals recorded whose answer never came (unconfirmed)."""
    actions = journal.actions(batch=batch, generation=generation, phase="execute", kind="sendas", op="remove")
    removed = {a.key for a in actions if a.status in DONE_ACTIONS}
    pending = {a.key for a in actions if a.status == "intent"}
    restored = {a.key for a in journal.actions(batch=batch, generation=generation, phase="rollback", kind="sendas",
                                               op="restore") if a.status in DONE_ACTIONS}

    def per_app(keys: set[str]) -> Counter:
        return Counter(norm_id(k.split("|", 1)[0]) for k in keys)

    return per_app(removed - restored), per_app(removed & restored), per_app(pending - restored)


def batch_statuses(plan, journal: Journal, *, now: float | None = None) -> list[BatchStatus]:
    now = time.time() if now is None else now
    states = journal.batch_states()
    holder = lock_holder(journal.plan_dir)
    names: dict[str, str] = {}
    planned: Counter = Counter()
    for g in plan.grants:
        names.setdefault(norm_id(g.app_id), g.app_name)
        if g.action == MIGRATE and g.right == Right.SEND_AS:
            planned[norm_id(g.app_id)] += 1
    for m in getattr(plan, "mail_access", ()):  # a Graph/EWS-only app has no grant row
        names.setdefault(norm_id(m.app_id), m.app_name)
    out = []
    for batch in plan.batches:
        n = int(batch.number)
        state, generation = states.get(n, (BatchState.NEW, 1))
        phase = "rollback" if state in (BatchState.ROLLING_BACK, BatchState.ROLLED_BACK) else "execute"
        order = [name for name, _ in (ROLLBACK_STEPS if phase == "rollback" else EXECUTE_STEPS)]
        if isinstance(plan.meta.get("change"), dict):  # a `migrator grant`/`revoke` change plan: its own steps
            from migrator.executor.change import CHANGE_STEPS, PHASE
            from migrator.executor.change_rollback import CHANGE_ROLLBACK_STEPS

            phase = "rollback" if phase == "rollback" else PHASE
            order = [name for name, _ in (CHANGE_ROLLBACK_STEPS if phase == "rollback" else CHANGE_STEPS)]
        rows = {r.step: r for r in journal.steps(n, generation) if r.phase == phase}
        status = BatchStatus(n, len(batch.apps), int(batch.grants), state, generation, phase, holder=holder, now=now)
        for name in order:
            row = rows.get(name)
            entry: dict = {"step": name, "status": row.status if row else StepStatus.PENDING}
            if row is not None:
                if row.status == StepStatus.RUNNING and holder is None:
                    entry["status"] = "interrupted"  # nobody is on it: the process stopped or died mid-step
                if row.status == StepStatus.RUNNING:
                    status.running = True
                if row.not_before is not None:
                    entry["not_before"] = row.not_before
                if row.finished_at is not None:
                    entry["finished_at"] = row.finished_at
                if row.status == StepStatus.FAILED:
                    entry["failures"] = list(row.detail.get("failures", []))
                    status.failures += entry["failures"]
                if row.status == StepStatus.HANDOVER:
                    status.handover = str(row.detail.get("handover", "handed over to a privileged admin"))
                if row.status == StepStatus.WAITING and row.not_before is not None:
                    status.waiting_until = row.not_before
                    entry["ready"] = now >= row.not_before
            status.steps.append(entry)
        none: Counter = Counter()
        migrated, restored, pending = (_app_counts(journal, n, generation) if state != BatchState.NEW
                                       else (none, none, none))
        if state == BatchState.ROLLED_BACK:  # the rollback read every recorded removal back from the tenant
            pending = none
        condition = status.condition
        for app_id in (norm_id(a) for a in batch.apps):
            status.app_rows.append(AppStatus(app_id, names.get(app_id, ""), condition, planned[app_id],
                                             migrated[app_id], restored[app_id], pending[app_id]))
        cut = rows.get("cutover") if phase == "execute" else None
        if cut is not None and cut.status == "done" and cut.detail.get("still_requested"):
            status.warnings += [registration_warning(a, names.get(a, ""), cut.detail.get("smtp_role_id", ""))
                                for a in cut.detail["still_requested"]]
        if cut is not None and cut.status == "done" and cut.detail.get("mail_still_requested"):
            from migrator.executor.aap import mail_registration_warning

            status.warnings += [mail_registration_warning(a, names.get(a, ""), perms)
                                for a, perms in sorted(cut.detail["mail_still_requested"].items())]
        out.append(status)
    return out


def undo_log_warnings(plan_dir, journal: Journal) -> list[str]:
    """Where journal.db and undo-log.jsonl disagree about what was removed (either alone must be able to undo)."""
    from pathlib import Path

    from migrator.executor.undolog import UNDO_LOG_NAME, disagreements, read_undo_log

    path = Path(plan_dir) / UNDO_LOG_NAME
    records = read_undo_log(path)
    out = disagreements(journal, records, log_present=path.exists())
    if not journal.path.exists() and not records.empty:
        out.append(f"journal.db is missing but {UNDO_LOG_NAME} records {len(records.removals)} removal(s) in "
                   f"{len(records.batches)} batch(es): roll back with `migrator rollback PLAN --batch N "
                   "--from-undo-log`, or put journal.db back")
    return out


def claims_back(plan, journal: Journal, graph) -> list[str]:
    """Warnings for cut-over apps (of batches not rolled back) whose Entra SMTP.SendAsApp assignment is back.
    Reads Graph: only `status --profile` calls it."""
    from migrator.executor.claims import claim_back_warning
    from migrator.executor.claims import claims_back as read_back

    names = {norm_id(g.app_id): g.app_name for g in plan.grants}
    sps: dict[str, str] = {}
    for batch, (state, generation) in journal.batch_states().items():
        if state not in ("executing", "done"):
            continue
        for action in journal.actions(batch=batch, generation=generation, phase="execute", kind="entra_assignment",
                                      op="delete"):
            if action.status in ("applied", "verified") and action.key not in sps:
                sp = graph.get_service_principal_by_app_id(action.key)
                if sp and sp.get("id"):
                    sps[action.key] = sp["id"]
    return [claim_back_warning(a, names.get(a, "")) for a in read_back(graph, sps)] + _consents_back(plan, journal,
                                                                                                   graph)


def _consents_back(plan, journal: Journal, graph) -> list[str]:
    """Mail apps (of batches not rolled back) whose Graph/EWS consent the cut-over deleted and is back (aap.py)."""
    from migrator.executor.aap import (
        CONSENT,
        POLICY,
        consent_back_after_warning,
        consent_back_warning,
        consents_back,
        split_key,
    )

    names = {norm_id(m.app_id): m.app_name for m in getattr(plan, "mail_access", ())}
    sps: dict[str, str] = {}
    policy_gone: set[str] = set()
    for batch, (state, generation) in journal.batch_states().items():
        if state not in ("executing", "done"):
            continue
        for action in journal.actions(batch=batch, generation=generation, phase="execute", kind=CONSENT, op="delete"):
            app_id = split_key(action.key)[0]
            if action.status in ("applied", "verified") and app_id not in sps:
                sp = graph.get_service_principal_by_app_id(app_id)
                if sp and sp.get("id"):
                    sps[app_id] = sp["id"]
        policy_gone |= {norm_id(str((a.prior or {}).get("AppId", ""))) for a in journal.actions(
            batch=batch, generation=generation, phase="execute", kind=POLICY, op="remove") if isinstance(a.prior, dict)}
    if not sps:
        return []
    return [(consent_back_after_warning if a in policy_gone else consent_back_warning)(a, names.get(a, ""), perms)
            for a, perms in consents_back(graph, sps).items()]


def exit_code(statuses: list[BatchStatus], *, now: float | None = None) -> int:
    conditions = {s.condition for s in statuses}
    if "failed" in conditions:
        return ExitCode.ITEMS_FAILED
    if "handed over" in conditions:
        return ExitCode.HANDOVER
    if "waiting" in conditions:
        return ExitCode.WAITING
    if conditions <= {"applied", "rolled back"}:
        return ExitCode.OK
    return ExitCode.INCOMPLETE


def totals(statuses: list[BatchStatus]) -> dict[str, int]:
    out: Counter = Counter()
    for s in statuses:
        out.update(s.counts)
    return {k: int(out[k]) for k in ("planned", "migrated", "unconfirmed", "on_legacy", "restored")}


def as_json(plan, statuses: list[BatchStatus]) -> dict:
    return {"plan": str(plan.path), "exit_code": exit_code(statuses), "totals": totals(statuses),
            "batches": [{"batch": s.batch, "apps": s.apps, "grants": s.grants, "state": s.state,
                         "condition": s.condition, "generation": s.generation, "phase": s.phase,
                         "waiting_until": s.waiting_until, "holder": s.holder, "handover": s.handover,
                         "failures": s.failures, "warnings": s.warnings,
                         "counts": s.counts, "app_status": [a.as_json() for a in s.app_rows], "steps": s.steps}
                        for s in statuses]}


def change_header(change: dict) -> str:
    """'Revoke 1 mailbox(es) from Billing [id] (copy-on-write)': what a change plan does, in one line."""
    grant = change.get("kind") == "grant"
    return (f"{'Grant' if grant else 'Revoke'} {len(change.get('effective', []))} mailbox(es) "
            f"{'to' if grant else 'from'} {change.get('app_name') or change.get('app_id')} [{change.get('app_id')}] "
            f"({change.get('strategy')})")


def describe(s: BatchStatus, *, now: float | None = None, time_left: bool = True) -> str:
    """The batch's condition in words, with its time: 'waiting until T (1h02m left)' (`time_left`: for a
    terminal; a report on paper says only until when)."""
    now = time.time() if now is None else now
    text = s.condition
    if s.condition == "waiting" and s.waiting_until is not None:
        text += f" until {fmt_time(s.waiting_until)}"
        if time_left:
            text += f" ({fmt_duration(s.waiting_until - now)} left)"
    elif s.condition == "ready" and s.waiting_until is not None:
        text += f": the wait ended at {fmt_time(s.waiting_until)}, run the command again"
    elif s.condition == "interrupted":
        text += ": stopped part-way, run the same command again to go on"
    elif s.condition == "running" and s.holder:
        text += f" ({s.holder})"
    return text


def render(statuses: list[BatchStatus], *, now: float | None = None, change: dict | None = None) -> str:
    """`change`: a change plan's `change` section (`migrator grant`/`revoke`): its one batch is described as the
    change it applies, not as SendAs grants moved off legacy grants (it removes none)."""
    now = time.time() if now is None else now
    lines = []
    for s in statuses:
        c = s.counts
        unconfirmed = f", {c['unconfirmed']} unconfirmed" if c["unconfirmed"] else ""
        if change is not None:
            lines.append(f"{change_header(change)}: {describe(s, now=now)}")
        else:
            lines.append(f"Batch {s.batch} ({s.apps} app(s), {s.grants} SendAs grant(s): {c['migrated']} migrated"
                         f"{unconfirmed}, {c['on_legacy']} on legacy grants): {describe(s, now=now)}")
        for app in s.app_rows if change is None else ():
            restored = f", {app.restored} restored" if app.restored else ""
            lines.append(f"    {app.name or app.app_id}  [{app.app_id}]  {app.migrated}/{app.planned} migrated"
                         f"{restored}")
        if s.handover:
            lines.append(f"    handed over: {s.handover.removeprefix('handed over: ')}")
        if s.state == BatchState.NEW:
            continue
        for step in s.steps:
            mark = {"done": "x", "failed": "!", "waiting": "~", "running": ">", "interrupted": "?"}.get(
                step["status"], " ")
            lines.append(f"  [{mark}] {s.phase} {step['step'].replace('_', ' ')}: {step['status']}")
            for failure in step.get("failures", [])[:20]:
                lines.append(f"        - {failure}")
        for warning in s.warnings:
            lines.append(f"  warning: {warning}")
    return "\n".join(lines)
