"""The facts a report shows, gathered once from a Plan (planner/plan.py) and, when a batch has run, its journal.

Renderers (markdown.py, html.py) only format a ReportData; they compute nothing, so both formats always agree.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from migrator.planner.plan import plan_counts
from migrator.report.diagram import Diagram, build_diagram


@dataclass(frozen=True)
class AppRow:
    app_id: str
    name: str
    batch: int | None
    sendas: int            # SendAs grants migrated
    kept: int              # grants kept (FullAccess, ...)
    groups: tuple[str, ...]    # group names its scopes match
    attributes: tuple[str, ...]  # "Attribute = value" terms its scopes match
    flagged: str = ""      # unscoped Entra permissions that make scoping moot


@dataclass(frozen=True)
class BatchRow:
    number: int
    note: str
    apps: tuple[AppRow, ...]
    grants: int
    mailboxes: int
    new_groups: tuple[str, ...]
    reused_groups: tuple[str, ...]
    scopes: int
    assignments: int
    state: str             # the executor's condition: "not started", "done", "waiting until ...", ...


@dataclass(frozen=True)
class GroupRow:
    key: str
    name: str
    status: str
    members: int
    apps: int
    batch: int
    address: str


@dataclass(frozen=True)
class ReportData:
    name: str
    path: str
    generated: str
    created: str
    source: str
    role: str
    counts: dict
    cover_sets: int
    lower_bound: int | None
    optimal: bool | None
    strategy: str
    batches: tuple[BatchRow, ...]
    groups: tuple[GroupRow, ...]
    kept_reasons: tuple[tuple[str, int], ...]
    flagged: tuple[tuple[str, str], ...]     # (app name or id, permissions)
    timeline: tuple  # journal StepRow records (migrator.executor.journal), in time order
    run_note: str                            # "no run yet" / how the journal was read
    runs: tuple[dict, ...] = ()
    diagram: Diagram = field(default_factory=lambda: Diagram((), (), ""))
    smtp_sends: tuple[dict, ...] = ()  # smtp-evidence.json: real sends per app before and after (demo, sandbox)

    @property
    def bound_text(self) -> str:
        """Groups used against the proven lower bound, in words."""
        if self.lower_bound is None:
            return f"{self.cover_sets} cover sets; no lower bound was recorded for this plan"
        gap = self.cover_sets - self.lower_bound
        if gap <= 0:
            return (f"{self.cover_sets} cover sets (groups and attribute terms), equal to the proven lower bound "
                    f"of {self.lower_bound}: minimal")
        if self.optimal:
            return (f"{self.cover_sets} cover sets, proven minimal by the exact solver "
                    f"(the quick lower bound was {self.lower_bound})")
        return (f"{self.cover_sets} cover sets against a proven lower bound of {self.lower_bound} "
                f"(at most {gap} more than the minimum)")


def _fmt_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


fmt_time = _fmt_time


def read_timeline(plan) -> tuple[tuple, dict[int, str], tuple[dict, ...], str]:
    """(steps in time order, batch -> condition, runs, note) from `<plan>/journal.db`, opened read-only.

    A batch's condition is the executor's own (executor/status.py: done, waiting until ..., failed, ...), so the
    report says what `migrator status` says."""
    from migrator.executor.journal import JOURNAL_NAME, Journal
    from migrator.executor.status import batch_statuses

    plan_dir = Path(plan.path)
    if not (plan_dir / JOURNAL_NAME).exists():
        return (), {}, (), "No run yet: the plan has no journal (no batch has been executed)."
    try:
        journal = Journal(plan_dir, readonly=True)
        try:
            steps = journal.steps()
            statuses = batch_statuses(plan, journal)
            runs = tuple(journal.runs())
        finally:
            journal.close()
    except (sqlite3.Error, OSError) as exc:
        return (), {}, (), f"The journal could not be read ({exc}); the timeline is missing from this report."
    states = {}
    for st in statuses:
        text = st.condition
        if st.waiting_until is not None:
            text += f" until {_fmt_time(st.waiting_until)}"
        if st.failures:
            text += f" ({len(st.failures)} failure(s), e.g. {st.failures[0]})"
        states[st.batch] = text
    # Time order; steps recorded in the same instant keep the executor's own order of steps.
    from migrator.executor.rollback import ROLLBACK_STEPS
    from migrator.executor.steps import EXECUTE_STEPS

    rank = {("execute", name): i for i, (name, _fn) in enumerate(EXECUTE_STEPS)}
    rank.update({("rollback", name): len(rank) + i for i, (name, _fn) in enumerate(ROLLBACK_STEPS)})
    events = tuple(sorted(steps,
                          key=lambda e: (e.started_at if e.started_at is not None else float("inf"), e.batch,
                                         e.generation,
                                         rank.get((e.phase, e.step), len(rank)))))
    return events, states, runs, f"Read from {JOURNAL_NAME}: {len(runs)} run(s), {len(events)} step record(s)."


def fmt_send(codes: list) -> str:
    """[235, 250] -> "AUTH 235, message 250" (a real send's two replies; 0: never got that far)."""
    auth, message = (list(codes) + [0, 0])[:2]
    return f"AUTH {auth}, message {message or '-'}"


def read_smtp_evidence(plan) -> tuple[dict, ...]:
    """The real SMTP sends recorded beside the plan (`migrator demo` writes smtp-evidence.json), if any. A file that
    cannot be read adds nothing: the report is about the plan, and this is an extra."""
    if plan.path is None:
        return ()
    path = Path(plan.path) / "smtp-evidence.json"
    try:
        rows = json.loads(path.read_text(encoding="utf-8")).get("smtp_sends", [])
    except (OSError, ValueError, AttributeError):
        return ()
    keys = ("app_id", "app_name", "mailbox", "before", "after")
    return tuple(r for r in rows if isinstance(r, dict) and all(k in r for k in keys))


def build_report(plan, *, now: datetime | None = None, with_journal: bool = True) -> ReportData:
    meta = plan.meta or {}
    counts = plan_counts(plan)
    groups_by_key = {g.key: g for g in plan.groups}
    scopes_by_key = {s.key: s for s in plan.scopes}
    flagged = {f.get("app_id", ""): ", ".join(f.get("permissions", []))
               for f in meta.get("flagged_apps", []) if isinstance(f, dict)}

    names: dict[str, str] = {}
    sendas: Counter = Counter()
    kept: Counter = Counter()
    reasons: Counter = Counter()
    batch_of: dict[str, int] = {}
    for g in plan.grants:
        names.setdefault(g.app_id, g.app_name)
        if g.action == "migrate":
            sendas[g.app_id] += 1
        else:
            kept[g.app_id] += 1
            reasons[g.reason or f"{g.right} kept"] += 1
    for b in plan.batches:
        for a in b.apps:
            batch_of[a] = b.number
    app_groups: dict[str, list[str]] = defaultdict(list)
    app_attrs: dict[str, list[str]] = defaultdict(list)
    for a in plan.assignments:
        names.setdefault(a.app_id, a.app_name)
        s = scopes_by_key.get(a.scope)
        if s is None:
            continue
        app_groups[a.app_id] += [groups_by_key[k].name for k in s.groups if k in groups_by_key]
        app_attrs[a.app_id] += [f"{attr} = {value}" for attr, value in s.attributes]

    def app_row(app_id: str) -> AppRow:
        return AppRow(app_id, names.get(app_id, ""), batch_of.get(app_id), sendas[app_id], kept[app_id],
                      tuple(dict.fromkeys(app_groups[app_id])), tuple(dict.fromkeys(app_attrs[app_id])),
                      flagged.get(app_id, ""))

    timeline: tuple = ()
    states: dict[int, str] = {}
    runs: tuple[dict, ...] = ()
    note = ""
    if with_journal and plan.path is not None:
        timeline, states, runs, note = read_timeline(plan)
    elif not with_journal:
        note = "Run state not read."

    batches = []
    for b in plan.batches:
        scope_keys = {a.scope for a in plan.assignments if a.batch == b.number}
        group_keys = sorted({k for sk in scope_keys if sk in scopes_by_key for k in scopes_by_key[sk].groups})
        batches.append(BatchRow(
            b.number, b.note, tuple(sorted((app_row(a) for a in b.apps), key=lambda r: (r.name.lower(), r.app_id))),
            b.grants, b.mailboxes,
            tuple(groups_by_key[k].name for k in group_keys if groups_by_key[k].status == "new"
                  and groups_by_key[k].batch == b.number),
            tuple(groups_by_key[k].name for k in group_keys if groups_by_key[k].status == "reuse"),
            sum(1 for s in plan.scopes if s.batch == b.number), b.assignments or sum(
                1 for a in plan.assignments if a.batch == b.number),
            states.get(b.number, "not started")))

    groups = tuple(GroupRow(g.key, g.name, g.status, len(g.members), g.apps, g.batch, g.address)
                   for g in sorted(plan.groups, key=lambda g: g.key))
    cover = meta.get("cover", {}) if isinstance(meta.get("cover"), dict) else {}
    source = meta.get("source", {})
    if isinstance(source, dict):
        digest = str(source.get("sha256", ""))[:12]
        source_text = f"{source.get('path') or source.get('inventory') or ''} (SHA-256 {digest}…)"
    else:
        source_text = str(source)
    path = Path(plan.path) if plan.path is not None else Path(".")
    return ReportData(
        name=path.name, path=str(path), generated=(now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        created=str(meta.get("created", "")), source=source_text, role=str(meta.get("role", "")), counts=counts,
        cover_sets=int(counts.get("cover_elements") or 0), lower_bound=cover.get("lower_bound"),
        optimal=cover.get("optimal"), strategy=str(cover.get("strategy", "")), batches=tuple(batches),
        groups=groups, kept_reasons=tuple(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        flagged=tuple((names.get(a, "") or a, p) for a, p in sorted(flagged.items())), timeline=timeline,
        run_note=note, runs=runs, diagram=build_diagram(plan), smtp_sends=read_smtp_evidence(plan))
