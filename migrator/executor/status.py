"""`migrator status PLAN`: per batch and step, what is done, what waits and until when, what failed.

Exit codes (for scripts; documented in the command's help):
  0   every batch is done (or rolled back): nothing left to do
  10  a batch is waiting (propagation or token lifetime): run `execute`/`rollback` again after the time shown
  11  a step failed and needs attention: read the failures, fix, then run the same command again (or roll back)
  12  work remains: a batch not started, or stopped part-way (Ctrl-C, pause file, crash): run the command again
  13  a batch is handed over: a privileged admin runs handover-batch-N-<step>.ps1, then run the command again
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from migrator.executor.journal import Journal
from migrator.executor.rollback import ROLLBACK_STEPS
from migrator.executor.runner import fmt_duration, fmt_time
from migrator.executor.steps import EXECUTE_STEPS

EXIT_DONE, EXIT_WAITING, EXIT_FAILED, EXIT_INCOMPLETE, EXIT_HANDOVER = 0, 10, 11, 12, 13


@dataclass
class BatchStatus:
    batch: int
    apps: int
    grants: int
    state: str  # new | executing | done | rolling_back | rolled_back
    generation: int
    phase: str
    steps: list[dict] = field(default_factory=list)
    waiting_until: float | None = None
    failures: list[str] = field(default_factory=list)
    handover: str = ""  # what a privileged admin must do before the batch can go on

    @property
    def condition(self) -> str:
        if self.failures:
            return "failed"
        if self.handover:
            return "handed over"
        if self.waiting_until is not None:
            return "waiting"
        if self.state in ("done", "rolled_back"):
            return self.state
        return "not started" if self.state == "new" else "in progress"


def batch_statuses(plan, journal: Journal, *, now: float | None = None) -> list[BatchStatus]:
    now = time.time() if now is None else now
    states = journal.batch_states()
    out = []
    for batch in plan.batches:
        n = int(batch.number)
        state, generation = states.get(n, ("new", 1))
        phase = "rollback" if state in ("rolling_back", "rolled_back") else "execute"
        order = [name for name, _ in (ROLLBACK_STEPS if phase == "rollback" else EXECUTE_STEPS)]
        rows = {r.step: r for r in journal.steps(n, generation) if r.phase == phase}
        status = BatchStatus(n, len(batch.apps), int(batch.grants), state, generation, phase)
        for name in order:
            row = rows.get(name)
            entry: dict[str, Any] = {"step": name, "status": row.status if row else "pending"}
            if row is not None:
                if row.not_before is not None:
                    entry["not_before"] = row.not_before
                if row.finished_at is not None:
                    entry["finished_at"] = row.finished_at
                if row.status == "failed":
                    entry["failures"] = list(row.detail.get("failures", []))
                    status.failures += entry["failures"]
                if row.status == "handover":
                    status.handover = str(row.detail.get("handover", "handed over to a privileged admin"))
                if row.status == "waiting" and row.not_before is not None:
                    status.waiting_until = row.not_before
                    entry["ready"] = now >= row.not_before
            status.steps.append(entry)
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


def exit_code(statuses: list[BatchStatus], *, now: float | None = None) -> int:
    conditions = {s.condition for s in statuses}
    if "failed" in conditions:
        return EXIT_FAILED
    if "handed over" in conditions:
        return EXIT_HANDOVER
    if "waiting" in conditions:
        return EXIT_WAITING
    if conditions <= {"done", "rolled_back"}:
        return EXIT_DONE
    return EXIT_INCOMPLETE


def as_json(plan, statuses: list[BatchStatus]) -> dict:
    return {"plan": str(plan.path), "exit_code": exit_code(statuses),
            "batches": [{"batch": s.batch, "apps": s.apps, "grants": s.grants, "state": s.state,
                         "condition": s.condition, "generation": s.generation, "phase": s.phase,
                         "waiting_until": s.waiting_until, "failures": s.failures, "steps": s.steps}
                        for s in statuses]}


def render(statuses: list[BatchStatus], *, now: float | None = None) -> str:
    now = time.time() if now is None else now
    lines = []
    for s in statuses:
        head = f"Batch {s.batch} ({s.apps} app(s), {s.grants} grant(s)): {s.condition}"
        if s.waiting_until is not None:
            left = s.waiting_until - now
            head += (f" until {fmt_time(s.waiting_until)} ({fmt_duration(left)} left)" if left > 0
                     else f" -- the wait ended at {fmt_time(s.waiting_until)}: run the command again")
        if s.handover:
            head += f" -- {s.handover}"
        lines.append(head)
        if s.state == "new":
            continue
        for step in s.steps:
            mark = {"done": "x", "failed": "!", "waiting": "~", "running": ">"}.get(step["status"], " ")
            lines.append(f"  [{mark}] {s.phase} {step['step'].replace('_', ' ')}: {step['status']}")
            for failure in step.get("failures", [])[:20]:
                lines.append(f"        - {failure}")
    return "\n".join(lines)
