"""Undo a change plan (`migrator grant`/`revoke`) from its journal, without a gap (docs/design.md §8):

restore → propagation_wait → remove_members → remove_assignments → remove_scopes → remove_groups → final_verify

1. restore: put back what the change removed, from the recorded prior state: the members it removed from the app's
   own groups, the old scopes it removed last (same name and filter), then the app's old role assignments (same
   name, role, scope).
2. propagation_wait: when an old assignment was restored, it must serve on the data plane before the change's new
   assignment goes (the copy-on-write's mirror image); otherwise no wait.
3. remove_members: the members the change added (only those that were not members before it).
4. the role assignments, scopes and groups the change created (objects claimed in its journal), in that order,
   through rollback.py's own steps.
5. final_verify: Test-ServicePrincipalAuthorization says InScope=True for the mailboxes the app reached before the
   change (a sample) and False for those a grant had added.
"""

from __future__ import annotations

from collections.abc import Callable

from migrator.change.setup import filter_groups
from migrator.errors import MigratorError
from migrator.exchange.errors import AlreadyExists
from migrator.exchange.interface import ScopeInfo
from migrator.executor.change import PHASE, _authorize, _member_ops, spec
from migrator.executor.context import Context, StepResult
from migrator.executor.readback import await_read, settle
from migrator.executor.rollback import (
    RollbackRunner,
    step_remove_assignments,
    step_remove_groups,
    step_remove_scopes,
)
from migrator.model import RBAC_ROLE_SMTP_SEND_AS


def _done(ctx: Context, kind: str, op: str) -> list:
    return [a for a in ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase=PHASE, kind=kind, op=op)
            if a.status in ("applied", "verified")]


def _member_keys(ctx: Context, op: str) -> list[list[str]]:
    """(group lower name, mailbox) of the member adds/removes the change made, as its `change` section names them."""
    lower_of = {key: lower for lower, key in spec(ctx)["group_keys"].items()}
    out = []
    for action in _done(ctx, "group_member", op):
        key, mailbox = action.key.split("|", 1)
        out.append([lower_of[key], mailbox])
    return out


def step_restore(ctx: Context) -> StepResult:
    failures = _member_ops(ctx, _member_keys(ctx, "remove"), "add")
    if failures:
        return StepResult(failures)
    failures = _restore_scopes(ctx)
    if failures:
        return StepResult(failures)
    app_id = spec(ctx)["app_id"]
    removed = _done(ctx, "assignment", "remove")
    existing = {a.name.lower() for a in ctx.exo.role_assignments(RBAC_ROLE_SMTP_SEND_AS)}

    def restore(action) -> None:
        if action.key.lower() in existing:
            return
        prior = action.prior or {}
        scope = str(prior.get("CustomResourceScope") or spec(ctx)["before"]["assignments"][action.key.lower()]["scope"])
        role = str(prior.get("Role") or RBAC_ROLE_SMTP_SEND_AS)
        act = ctx.intent("assignment", action.key, "restore", intent={"name": action.key, "role": role,
                                                                      "scope": scope}, prior=None)
        try:
            ctx.exo.new_role_assignment(action.key, role, ctx.sps[app_id]["object_id"], scope)
        except AlreadyExists:
            pass
        ctx.mark(act, "applied")

    failures = ctx.for_each(removed, restore, label="Restoring assignments", name=lambda a: f"assignment {a.key!r}")
    if not failures and not ctx.dry_run and removed:
        wanted = {a.key.lower() for a in removed}
        _seen, left = settle(ctx, lambda: {a.name.lower() for a in ctx.exo.role_assignments(RBAC_ROLE_SMTP_SEND_AS)},
                             lambda seen: wanted - seen)
        if left:
            raise MigratorError(f"restored assignment(s) {', '.join(sorted(left))} not found after restoring")
    return StepResult(failures)


def _restore_scopes(ctx: Context) -> list:
    """The old scopes the change removed, re-created with their name and filter (before the assignments on them)."""
    before = spec(ctx)["before"]["scopes"]

    def restore(action) -> None:
        name = action.key
        if ctx.exo.scope(name) is not None:
            return  # restored by an earlier, killed rollback
        prior = ScopeInfo.from_row(action.prior) if isinstance(action.prior, dict) else None
        text = (prior.filter if prior else "") or before.get(name.lower(), "")
        if not text:
            raise MigratorError(f"scope {name!r}: its filter is recorded nowhere; re-create it by hand")
        act = ctx.intent("scope", name, "restore", intent={"name": name, "filter": text}, prior=None)
        try:
            ctx.exo.new_management_scope(name, text)
        except AlreadyExists:
            pass
        ctx.mark(act, "applied")
        if not ctx.dry_run:
            await_read(ctx, lambda: ctx.exo.scope(name), lambda found: None if found else "not visible yet",
                       f"scope {name!r} after restoring it")

    return ctx.for_each(_done(ctx, "scope", "remove"), restore, label="Restoring scopes",
                        name=lambda a: f"scope {a.key!r}")


def step_remove_members(ctx: Context) -> StepResult:
    return StepResult(_member_ops(ctx, _member_keys(ctx, "add"), "remove"))


def step_rollback_verify(ctx: Context) -> StepResult:
    """InScope=True for (a sample of) the app's reach before the change; False for what a grant had added."""
    s = spec(ctx)
    sample = ctx.sample(sorted(_reach_before(ctx)), key="rollback")
    added = sorted(s["effective"]) if s["kind"] == "grant" else []
    return StepResult(_authorize(ctx, "Verifying the rollback", sample, added))


def _reach_before(ctx: Context) -> set[str]:
    s = spec(ctx)
    groups = s["before"]["groups"]
    app = s["app_id"]
    scopes = {a["scope"] for a in s["before"]["assignments"].values() if a["app_id"] == app}
    dns = {g["dn"].lower(): lower for lower, g in groups.items() if g["dn"]}
    out: set[str] = set()
    for scope in scopes:
        names, _ = filter_groups(s["before"]["scopes"].get(scope, ""), dns)
        for name in names:
            out |= set(groups[name]["members"])
    return out


CHANGE_ROLLBACK_STEPS = (
    ("restore", step_restore),
    ("propagation_wait", None),
    ("remove_members", step_remove_members),
    ("remove_assignments", step_remove_assignments),
    ("remove_scopes", step_remove_scopes),
    ("remove_groups", step_remove_groups),
    ("final_verify", step_rollback_verify),
)


class ChangeRollbackRunner(RollbackRunner):
    """Rolls a change plan back; the same loop, journal, waits and controls as every run."""

    steps: tuple[tuple[str, Callable[[Context], StepResult] | None], ...] = CHANGE_ROLLBACK_STEPS

    def wait_seconds(self, ctx: Context, name: str) -> float:
        restored = ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase="rollback",
                                       kind="assignment", op="restore")
        return float(self.settings.propagation_wait) if name == "propagation_wait" and restored else 0.0
