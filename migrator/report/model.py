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

from migrator.model import Right
from migrator.planner.plan import KIND_GRAPH_EWS, MIGRATE, NEW, REUSE, plan_counts
from migrator.report.diagram import Diagram, build_diagram
from migrator.report.mailaccess import MailSection, journal_states, mail_section


@dataclass(frozen=True)
class AppRow:
    app_id: str
    name: str
    batch: int | None
    sendas: int            # SendAs grants the plan migrates
    kept: int              # grants kept (FullAccess, ...)
    groups: tuple[str, ...]    # group names its scopes match
    attributes: tuple[str, ...]  # "Attribute = value" terms its scopes match
    flagged: str = ""      # unscoped Entra permissions that make scoping moot
    migrated: int = 0      # of `sendas`: legacy grant removed (served by RBAC), from the journal
    restored: int = 0      # put back by a rollback
    condition: str = "planned"  # the executor's condition of its batch (executor/status.py)


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
    state: str             # the executor's condition: "planned", "applied", "waiting until ...", ...
    migrated: int = 0      # SendAs grants whose legacy grant is removed (journal)


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
class HelpdeskRow:
    """What `migrator grant` would do for one app of the plan, judged from the plan (the command decides again from
    the tenant as it is when it runs)."""

    app_id: str
    name: str
    own_groups: tuple[str, ...]     # groups only this app's role assignments use
    shared_groups: tuple[str, ...]  # groups other apps' role assignments use too
    grant: str                      # what `migrator grant` does for it, in words


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
    tenant: str = ""                          # the tenant the plan is for (journal, else the live inventory)
    helpdesk: tuple[HelpdeskRow, ...] = ()   # the helpdesk section: how grant/revoke will treat each app
    totals: dict = field(default_factory=dict)  # SendAs grants: planned, migrated, on_legacy, restored (journal)
    mail: MailSection | None = None  # Graph/EWS access (Application Access Policies); None: the plan says nothing

    @property
    def shared_group_count(self) -> int:
        """Groups that more than one app's role assignments use (a member added by hand reaches every one)."""
        return len({g for row in self.helpdesk for g in row.shared_groups})

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


@dataclass(frozen=True)
class RunState:
    """What the journal says, read once: steps in time order, the executor's statuses, runs, the tenant."""

    timeline: tuple = ()
    statuses: tuple = ()  # executor.status.BatchStatus, one per batch of the plan
    runs: tuple[dict, ...] = ()
    note: str = ""
    tenant: str = ""
    mail_states: dict = field(default_factory=dict)  # app id (lower) -> its consent and policy removals, in words


def read_run_state(plan, *, now: float | None = None) -> RunState:
    """The journal's view of the run, opened read-only; without a journal every batch is planned. A batch's
    condition and its counts are the executor's own (executor/status.py), so the report says what `migrator
    status` says, and both add up to the journal's actions."""
    from migrator.executor.journal import JOURNAL_NAME, Journal
    from migrator.executor.status import batch_statuses

    plan_dir = Path(plan.path)
    try:
        with Journal(plan_dir, readonly=True) as journal:  # an empty in-memory journal when there is no file
            steps = journal.steps()
            statuses = tuple(batch_statuses(plan, journal, now=now))
            runs = tuple(journal.runs())
            tenant = journal.get_meta("tenant") or ""
            mail_states = journal_states(plan, journal) if plan.mail_access else {}
    except (sqlite3.Error, OSError) as exc:
        return RunState(note=f"The journal could not be read ({exc}); the run's state is missing from this report.")
    if not (plan_dir / JOURNAL_NAME).exists():
        return RunState(statuses=statuses, note="No run yet: the plan has no journal (no batch has been executed).")
    # Time order; steps recorded in the same instant keep the executor's own order of steps.
    from migrator.executor.rollback import ROLLBACK_STEPS
    from migrator.executor.steps import EXECUTE_STEPS

    rank = {("execute", name): i for i, (name, _fn) in enumerate(EXECUTE_STEPS)}
    rank.update({("rollback", name): len(rank) + i for i, (name, _fn) in enumerate(ROLLBACK_STEPS)})
    events = tuple(sorted(steps,
                          key=lambda e: (e.started_at if e.started_at is not None else float("inf"), e.batch,
                                         e.generation,
                                         rank.get((e.phase, e.step), len(rank)))))
    return RunState(events, statuses, runs,
                    f"Read from {JOURNAL_NAME}: {len(runs)} run(s), {len(events)} step record(s).", tenant,
                    mail_states)


def _condition_text(st, describe) -> str:
    text = describe(st, time_left=False)
    if st.failures:
        text += f" ({len(st.failures)} failure(s), e.g. {st.failures[0]})"
    for warning in st.warnings:  # a cut-over app whose registration still requests SMTP.SendAsApp, with the fix
        text += f"; warning: {warning}"
    return text


def _source_tenant(plan) -> str:
    """The tenant of the plan's live inventory (manifest.json), when it can be found; "" otherwise."""
    import json

    source = (plan.meta or {}).get("source") or {}
    recorded = source.get("path") if isinstance(source, dict) else None
    if not recorded or plan.path is None:
        return ""
    for base in (Path.cwd(), Path(plan.path).resolve().parent.parent, Path(plan.path).resolve().parent):
        manifest = base / recorded / "manifest.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return ""
            for src in data.get("sources") or []:
                if isinstance(src, dict) and src.get("tenant_id"):
                    return str(src["tenant_id"])
            return ""
    return ""


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


def _source_text(source: object) -> str:
    """The plan's source inventory as the report names it: its path and the start of its SHA-256."""
    if isinstance(source, dict):
        digest = str(source.get("sha256", ""))[:12]
        return f"{source.get('path') or source.get('inventory') or ''} (SHA-256 {digest}…)"
    return str(source)


def helpdesk_rows(plan, names: dict[str, str]) -> tuple[HelpdeskRow, ...]:
    """Per app with SMTP role assignments in the plan: its own and shared groups, and what `migrator grant` does
    with a new mailbox (the same rule as change/incremental.py: the app's first own group by name, else a new
    group)."""
    scopes = {s.key: s for s in plan.scopes}
    group_name: dict[str, str] = {g.key: g.name for g in plan.groups}
    users: dict[str, set[str]] = defaultdict(set)
    groups_of: dict[str, set[str]] = defaultdict(set)
    filters_attributes: set[str] = set()
    for a in plan.assignments:
        scope = scopes.get(a.scope)
        if scope is None:
            continue
        if a.kind == KIND_GRAPH_EWS:
            # another Application role on the group (the same app's Mail.Read included): not an own group, since a
            # member added for SMTP would widen that role too (change/setup.py other_users)
            for key in scope.groups:
                users[key].add(f"{a.app_id} ({a.role})")
            continue
        for key in scope.groups:
            users[key].add(a.app_id)
            groups_of[a.app_id].add(key)
        if scope.attributes:
            filters_attributes.add(a.app_id)
    rows = []
    for app in sorted(groups_of.keys() | filters_attributes, key=lambda a: ((names.get(a) or a).lower(), a)):
        keys = sorted(groups_of[app], key=lambda k: (group_name.get(k) or k).lower())
        own = tuple(group_name.get(k, k) for k in keys if users[k] == {app})
        shared = tuple(group_name.get(k, k) for k in keys if users[k] != {app})
        if app in filters_attributes:
            grant = "refused: a scope of this app filters on attributes; change its access with a new plan"
        elif own:
            grant = f"adds the mailbox to {own[0]}; nothing else changes"
        else:
            grant = ("creates one group with the mailbox, a scope and a role assignment for this app "
                     "(its groups serve other apps too)")
        rows.append(HelpdeskRow(app, names.get(app, ""), own, shared, grant))
    return tuple(rows)


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
        if g.action == MIGRATE and g.right == Right.SEND_AS:
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

    run = RunState(note="Run state not read.")
    if with_journal and plan.path is not None:
        run = read_run_state(plan, now=now.timestamp() if now is not None else None)
    from migrator.executor.status import describe, totals

    by_batch = {st.batch: st for st in run.statuses}
    by_app = {a.app_id: a for st in run.statuses for a in st.app_rows}

    def app_row(app_id: str) -> AppRow:
        st = by_app.get(app_id.lower())
        return AppRow(app_id, names.get(app_id, ""), batch_of.get(app_id), sendas[app_id], kept[app_id],
                      tuple(dict.fromkeys(app_groups[app_id])), tuple(dict.fromkeys(app_attrs[app_id])),
                      flagged.get(app_id, ""), migrated=st.migrated if st else 0, restored=st.restored if st else 0,
                      condition=st.condition if st else "planned")

    batches = []
    for b in plan.batches:
        scope_keys = {a.scope for a in plan.assignments if a.batch == b.number}
        group_keys = sorted({k for sk in scope_keys if sk in scopes_by_key for k in scopes_by_key[sk].groups})
        batches.append(BatchRow(
            b.number, b.note, tuple(sorted((app_row(a) for a in b.apps), key=lambda r: (r.name.lower(), r.app_id))),
            b.grants, b.mailboxes,
            tuple(groups_by_key[k].name for k in group_keys if groups_by_key[k].status == NEW
                  and groups_by_key[k].batch == b.number),
            tuple(groups_by_key[k].name for k in group_keys if groups_by_key[k].status == REUSE),
            sum(1 for s in plan.scopes if s.batch == b.number), b.assignments or sum(
                1 for a in plan.assignments if a.batch == b.number),
            _condition_text(by_batch[b.number], describe) if b.number in by_batch else "planned",
            migrated=by_batch[b.number].counts["migrated"] if b.number in by_batch else 0))

    groups = tuple(GroupRow(g.key, g.name, g.status, len(g.members), g.apps, g.batch, g.address)
                   for g in sorted(plan.groups, key=lambda g: g.key))
    cover = meta.get("cover", {}) if isinstance(meta.get("cover"), dict) else {}
    source_text = _source_text(meta.get("source", {}))
    path = Path(plan.path) if plan.path is not None else Path(".")
    return ReportData(
        name=path.name, path=str(path), generated=(now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        created=str(meta.get("created", "")), source=source_text, role=str(meta.get("role", "")), counts=counts,
        cover_sets=int(counts.get("cover_elements") or 0), lower_bound=cover.get("lower_bound"),
        optimal=cover.get("optimal"), strategy=str(cover.get("strategy", "")), batches=tuple(batches),
        groups=groups, kept_reasons=tuple(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        flagged=tuple((names.get(a, "") or a, p) for a, p in sorted(flagged.items())), timeline=run.timeline,
        run_note=run.note, runs=run.runs, diagram=build_diagram(plan), smtp_sends=read_smtp_evidence(plan),
        tenant=run.tenant or _source_tenant(plan), helpdesk=helpdesk_rows(plan, names),
        mail=mail_section(plan, run.mail_states),
        totals=totals(list(run.statuses)) if run.statuses else {
            "planned": sum(sendas.values()), "migrated": 0, "unconfirmed": 0, "on_legacy": sum(sendas.values()),
            "restored": 0})
