"""One `migrator grant`/`revoke` request: read the tenant, plan the change, write its plan folder (the one module
of migrator/change/ that reaches a tenant, through audit.observed.read_observed).

The folder's name comes from the request (kind, app, mailboxes), so the same command finds the folder a killed run
left and resumes it from its journal instead of planning again: a SIGKILL at any point, then the same command,
converges. A folder whose change is applied or rolled back is kept (it is the record of what was done); the same
request later is planned afresh into `<name>-2`, `-3`, ... when there is something to do again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from migrator.change.folder import change_plan, is_change
from migrator.change.incremental import Change, plan_change
from migrator.change.setup import Setup, resolve_app, resolve_mailboxes, setup_from_observed
from migrator.errors import InputError
from migrator.planner.naming import DEFAULT_PREFIX, short_hash
from migrator.planner.plan import JOURNAL_FILE, UNDO_LOG_FILE, load_plan, write_plan

DEFAULT_ROOT = Path("changes")


@dataclass
class Prepared:
    folder: Path | None  # None: nothing to do
    change: Change | None  # None when an interrupted change is resumed as it was planned
    resumed: bool = False


def observer(profile: Path) -> Callable[[], Setup]:
    """Reads the tenant's RBAC setup (every call reads afresh: the drift check before each run's first write)."""
    def observe() -> Setup:
        from migrator.audit.observed import read_observed

        return setup_from_observed(read_observed(profile))
    return observe


def folder_name(kind: str, app_name: str, app_id: str, mailboxes: tuple[str, ...]) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in app_name.lower()).strip("-")[:40].strip("-") or "app"
    return f"{kind}-{slug}-{short_hash(kind, app_id, *mailboxes)}"


def _has_run(folder: Path) -> bool:
    return (folder / JOURNAL_FILE).exists() or (folder / UNDO_LOG_FILE).exists()


def _finished(folder: Path) -> bool:
    """Applied, or rolled back: either way a new request is planned afresh (the tenant may have moved since)."""
    from migrator.executor.journal import Journal
    from migrator.executor.states import BatchState

    if not (folder / JOURNAL_FILE).exists():
        return False
    with Journal(folder, readonly=True) as journal:
        return journal.batch_state(1)[0] in (BatchState.DONE, BatchState.ROLLED_BACK)


def prepare(kind: str, app: str, mailboxes: list[str], observe: Callable[[], Setup], *, out: Path | None = None,
            root: Path = DEFAULT_ROOT, prefix: str = DEFAULT_PREFIX, source: str = "") -> Prepared:
    setup = observe()
    app_id = resolve_app(setup, app)
    wanted = resolve_mailboxes(setup, mailboxes)
    folder = Path(out) if out else root / folder_name(kind, setup.display_name(app_id), app_id, wanted)
    base, n = folder, 1
    while _has_run(folder):
        plan = load_plan(folder)
        section = plan.meta.get("change") if is_change(plan) else None
        if not section or (section["kind"], section["app_id"], tuple(section["requested"])) != (kind, app_id, wanted):
            raise InputError("holds another change (or a plan) that has run; give another --out",
                             path=str(folder))
        if not _finished(folder):
            return Prepared(folder, None, resumed=True)
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    change = plan_change(setup, kind, app_id, wanted, prefix=prefix)
    if change.empty:
        return Prepared(None, change)
    write_plan(change_plan(setup, change, source=source), folder, overwrite=True)
    return Prepared(folder, change)
