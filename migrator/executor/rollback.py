"""Undo one batch from its journal, in reverse, without a gap (docs/design.md §6):

restore_grants → grants_wait → regrant → token_wait → assignments → scopes → groups → sp_pointers

1. Restore every legacy grant the batch removed (the recorded prior row says what it was), so the legacy path
   serves again before anything else changes.
2. Wait for the restored grants to apply (Exchange caches mailbox permissions): a token carrying the claim needs
   them on the data plane.
3. Re-grant each app's Entra SMTP.SendAsApp app-role assignment the cut-over deleted; read it back (twice, spaced).
4. Wait the token lifetime (policies read, plus a margin): tokens issued without the claim still depend on RBAC.
5. Remove the batch's role assignments, then its scopes, then the groups the tool created, each only when it was
   created by this tool and no other applied batch still uses it; then the service-principal pointers the tool
   created for the batch's apps.
Every step reads before it writes, records its intent first, and verifies; a killed rollback resumes. What cannot
be restored exactly is said plainly in the result (an app-role assignment comes back with a new id, for one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from migrator.errors import MigratorError
from migrator.exchange.errors import AlreadyExists, ApiError, Forbidden, NotFound
from migrator.executor.aap import (
    CONSENT,
    POLICY,
    confirm_consents,
    graph_resource_id,
    regrant_consents,
    restore_policies,
    split_key,
    verify_regrant,
)
from migrator.executor.context import Context, ItemFailure, StepResult
from migrator.executor.entra import Pending, PendingConsent, handover_subject, regrant_script
from migrator.executor.readback import await_read, settle
from migrator.executor.runner import BatchOutcome, Runner
from migrator.executor.states import BatchState, Outcome
from migrator.executor.steps import (
    _fullaccess_rows,
    _hand_over,
    _wait_gone,
    assignments_by_name,
    exchange_role,
    legacy_rows,
    resolve_sps,
    smtp_assignments,
)
from migrator.planner.plan import NEW

APPLIED = (BatchState.EXECUTING, BatchState.DONE, BatchState.ROLLING_BACK)
# The prior state of an object this tool claimed but could not read before removing it (rollback): it was never
# created (a run stopped between its claim and the create) or it is not visible yet (read-after-write lag).
NOT_READ = {"not_read": "never created, or created and not yet visible to reads"}


def _note(ctx: Context, text: str) -> None:
    ctx.cache.setdefault("notes", []).append(text)
    ctx.output.info(f"  note: {text}")


def _removed(ctx: Context, kind: str):
    return ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase="execute", kind=kind, op="remove")


def step_restore_grants(ctx: Context) -> StepResult:
    present = legacy_rows(ctx, fresh=True)
    removed = _removed(ctx, "sendas")

    def restore(action) -> None:
        app_id, mailbox = action.key.split("|", 1)
        if app_id not in ctx.sps:
            raise MigratorError(f"cannot restore: the service principal of app {app_id} is gone")
        if (app_id, mailbox) in present:
            return  # never removed (the run stopped before the call) or already restored
        act = ctx.intent("sendas", action.key, "restore", intent={"restore": action.prior}, prior=[])
        try:
            ctx.exo.add_recipient_permission(mailbox, ctx.sps[app_id]["object_id"])
        except AlreadyExists:
            pass
        ctx.mark(act, "applied")

    failures = ctx.for_each(removed, restore, label="Restoring SendAs", name=lambda a: f"SendAs {a.key}")
    if not ctx.dry_run:
        failed = {f.item for f in failures}
        wanted = [tuple(a.key.split("|", 1)) for a in removed if f"SendAs {a.key}" not in failed]
        # The check scan, again until every restored grant shows (read-after-write lag), bounded (readback.py).
        after, _ = settle(ctx, lambda: legacy_rows(ctx, fresh=True), lambda rows: [p for p in wanted if p not in rows])
        for action in removed:
            app_id, mailbox = action.key.split("|", 1)
            if (app_id, mailbox) not in after and f"SendAs {action.key}" not in failed:
                failures.append(ItemFailure(f"SendAs {action.key}", "not present "
                                            f"{ctx.settings.replication_timeout:g} s after restoring it"))
            act = ctx.recorded("sendas", action.key, "restore")
            if act is not None and (app_id, mailbox) in after and act.status != "verified":
                ctx.mark(act.id, "verified")

    def restore_full(action) -> None:
        app_id, mailbox = action.key.split("|", 1)
        if _fullaccess_rows(ctx, app_id, mailbox):
            return
        act = ctx.intent("fullaccess", action.key, "restore", intent={"restore": action.prior}, prior=[])
        ctx.exo.add_mailbox_permission(mailbox, ctx.sps[app_id]["object_id"])
        if not ctx.dry_run:  # read again until the restored grant shows (read-after-write lag)
            await_read(ctx, lambda: _fullaccess_rows(ctx, app_id, mailbox),
                       lambda rows: None if rows else "FullAccess not present after restoring it",
                       f"FullAccess {action.key}")
        ctx.mark(act, "verified")

    failures += ctx.for_each(_removed(ctx, "fullaccess"), restore_full, label="Restoring FullAccess",
                             name=lambda a: f"FullAccess {a.key}")
    failures += restore_policies(ctx)  # Graph/EWS: the access policies, before their consents come back (aap.py)
    return StepResult(failures)


def step_regrant(ctx: Context) -> StepResult:
    """Give each app back the Entra SMTP.SendAsApp assignment the cut-over removed, and each mail app its Graph/EWS
    consents (aap.py), only after the restored legacy grants and access policies have had time to apply (the
    grants_wait step), through the client that may write Entra assignments; without one, hand the grants over to a
    privileged admin and stop (entra.py). Then read their presence back before the token wait, whose length comes
    from the token lifetime policies read first (tokens issued without the claim or consent depend on RBAC)."""
    from migrator.executor.claims import confirm_claims
    from migrator.executor.lifetimes import read_token_lifetimes, token_wait

    cut = ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase="execute", kind="entra_assignment",
                              op="delete")
    mail_cut = ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase="execute", kind=CONSENT,
                                   op="delete")
    if not cut and not mail_cut:
        return StepResult()
    pending: list[Pending] = []
    consents: list[PendingConsent] = []
    lock = threading.Lock()

    def hand_over(app_id: str) -> None:
        with lock:
            pending.append(Pending(app_id, ctx.view.app_names.get(app_id, ""), ctx.sps[app_id]["object_id"]))

    resource_id, role_id = exchange_role(ctx)
    apps = [a.key for a in cut if a.key in ctx.sps]
    mail_apps = sorted({split_key(a.key)[0] for a in mail_cut} & set(ctx.sps))
    extra_sps = (resource_id, graph_resource_id(ctx)) if mail_cut else (resource_id,)
    lifetimes = read_token_lifetimes(ctx.graph, {a: ctx.sps[a]["object_id"] for a in sorted({*apps, *mail_apps})},
                                     extra_sp_ids=extra_sps)
    try:
        wait = token_wait(ctx.settings, lifetimes)
    except MigratorError as exc:
        return StepResult([ItemFailure("token lifetime", str(exc))], {"token_lifetime_policies": lifetimes.to_dict()})
    detail = {"token_wait": wait, "token_lifetime_policies": lifetimes.to_dict()}

    def regrant(action) -> None:
        app_id = action.key
        if app_id not in ctx.sps:
            raise MigratorError(f"cannot re-grant: the service principal of app {app_id} is gone")
        if smtp_assignments(ctx, app_id):
            act = ctx.recorded("entra_assignment", app_id, "grant")
            if act is not None and act.status != "verified":  # granted by a privileged admin (a handover)
                ctx.mark(act.id, "verified", verification={"present_at": ctx.now()})
            return
        act = ctx.intent("entra_assignment", app_id, "grant", intent={"resourceId": resource_id,
                                                                      "appRoleId": role_id}, prior=[])
        writer = ctx.entra_client()
        if writer is None:
            return hand_over(app_id)
        try:
            row = writer.grant_app_role(ctx.sps[app_id]["object_id"], resource_id, role_id)
        except Forbidden:  # a token the preflight could not read: the tenant said no, so nothing changed
            return hand_over(app_id)
        except ApiError as exc:  # granted by a run whose answer was lost, but read back before Graph replicated
            if exc.status != 400 or "already exists" not in str(exc).lower():
                raise
            row = None
        if ctx.dry_run:
            return
        old = {r.get("id") for r in action.prior or []}
        new = (row or {}).get("id")
        if new is not None and new not in old:
            _note(ctx, f"app {app_id}: Entra SMTP.SendAsApp re-granted under a new assignment id ({new}); the old "
                       f"id ({', '.join(sorted(filter(None, old)))}) cannot be restored")
        ctx.mark(act, "applied", result=row)

    failures = ctx.for_each(cut, regrant, label="Re-granting", name=lambda a: f"app {a.key}")
    mail_failures, keys = regrant_consents(ctx, consents)
    failures += mail_failures
    if (pending or consents) and not failures:
        script = regrant_script(ctx.batch, pending, resource_id, role_id, ctx.entra_tenant, consents=consents)
        count, what = handover_subject(pending, consents)
        return StepResult(handover=_hand_over(ctx, "regrant", script, count, "granted back", assignment=what),
                          detail=detail)
    if failures or ctx.dry_run:
        return StepResult(failures, detail)
    failures, present_at = confirm_claims(ctx, apps, present=True)
    mail_failures, mail_present_at = confirm_consents(ctx, keys, present=True)
    if failures or mail_failures:
        return StepResult(failures + mail_failures, detail)
    for app_id in apps:
        act = ctx.recorded("entra_assignment", app_id, "grant")
        if act is not None and act.status != "verified":
            ctx.mark(act.id, "verified", verification={"present_at": present_at, "reads": ctx.settings.readbacks})
    verify_regrant(ctx, keys, mail_present_at)
    return StepResult([], detail)


def _other_batches_using(ctx: Context, kind: str, key: str) -> list[int]:
    """Other batches, applied (executing/done/rolling back), whose plan objects use this scope or group."""
    states = ctx.journal.batch_states()
    users = []
    for batch in ctx.plan.batches:
        n = int(batch.number)
        if n == ctx.batch or states.get(n, (BatchState.NEW, 0))[0] not in APPLIED:
            continue
        scopes = {a.scope for a in ctx.plan.assignments if int(a.batch) == n}
        if kind == "scope" and key in scopes:
            users.append(n)
        if kind == "group" and any(key in s.groups for s in ctx.plan.scopes if s.key in scopes):
            users.append(n)
    return users


def _owned(ctx: Context, kind: str, key: str):
    obj = ctx.journal.object(kind, key)
    return obj if obj is not None and obj.state in ("intent", "created") else None


def step_remove_assignments(ctx: Context) -> StepResult:
    existing = assignments_by_name(ctx)

    def remove(a) -> None:
        obj = _owned(ctx, "assignment", a.key)
        if obj is None:
            return
        # Not read although this tool claimed it: never created (a run stopped between claim and create), or
        # created and not visible yet (read-after-write lag). The removal goes out either way; "not found" is done.
        prior = existing[a.name].raw if a.name in existing else NOT_READ
        act = ctx.intent("assignment", a.key, "remove", prior=prior)
        try:
            ctx.exo.remove_role_assignment(a.name)
        except NotFound:
            pass
        ctx.mark(act, "applied")
        if not ctx.dry_run:
            ctx.journal.set_object("assignment", a.key, "removed")

    failures = ctx.for_each(ctx.view.assignments, remove, label="Removing role assignments",
                            name=lambda a: f"assignment {a.key} {a.name!r}")
    if not ctx.dry_run:
        removed = [a for a in ctx.view.assignments
                   if (obj := ctx.journal.object("assignment", a.key)) is not None and obj.state == "removed"]
        # again until every removal shows (read-after-write lag), bounded (readback.py)
        back, _ = settle(ctx, lambda: assignments_by_name(ctx), lambda rows: [a for a in removed if a.name in rows])
        for a in removed:
            if a.name in back:
                failures.append(ItemFailure(f"assignment {a.key}", "still present "
                                            f"{ctx.settings.replication_timeout:g} s after removal"))
    return StepResult(failures)


def step_remove_scopes(ctx: Context) -> StepResult:
    def remove(scope) -> None:
        obj = _owned(ctx, "scope", scope.key)
        if obj is None:
            return
        users = _other_batches_using(ctx, "scope", scope.key)
        if users:
            _note(ctx, f"scope {scope.name!r} kept: batch(es) {', '.join(map(str, users))} still use it")
            return
        found = ctx.exo.scope(scope.name)  # None: never created, or not visible yet (as for assignments)
        act = ctx.intent("scope", scope.key, "remove", prior=found.raw if found is not None else NOT_READ)
        try:
            ctx.exo.remove_management_scope(scope.name)
        except NotFound:
            pass
        if not ctx.dry_run:
            _wait_gone(ctx, lambda: ctx.exo.scope(scope.name), f"scope {scope.name!r}")
        ctx.mark(act, "verified")
        if not ctx.dry_run:
            ctx.journal.set_object("scope", scope.key, "removed")

    return StepResult(ctx.for_each(ctx.view.scopes, remove, label="Removing scopes",
                                   name=lambda s: f"scope {s.key} {s.name!r}"))


def step_remove_groups(ctx: Context) -> StepResult:
    def remove(group) -> None:
        obj = _owned(ctx, "group", group.key)
        if obj is None:
            return
        users = _other_batches_using(ctx, "group", group.key)
        if users:
            _note(ctx, f"group {group.name!r} kept: batch(es) {', '.join(map(str, users))} still use it")
            return
        identity = obj.identity or group.address or group.name
        found = ctx.exo.group(identity)  # None: never created, or not visible yet (as for assignments)
        if found is not None and obj.name != found.name:
            raise MigratorError(f"group {identity!r} is now named {found.name!r}; left alone")
        members = [m.address for m in ctx.exo.group_members(identity)] if found is not None else []
        prior = {"group": found.raw, "members": members} if found is not None else NOT_READ
        act = ctx.intent("group", group.key, "remove", prior=prior)
        try:
            ctx.exo.remove_distribution_group(identity)
        except NotFound:
            pass
        if not ctx.dry_run:
            _wait_gone(ctx, lambda: ctx.exo.group(identity), f"group {group.name!r}")
        ctx.mark(act, "verified")
        if not ctx.dry_run:
            ctx.journal.set_object("group", group.key, "removed")

    return StepResult(ctx.for_each([g for g in ctx.view.groups if g.status == NEW], remove,
                                   label="Removing groups", name=lambda g: f"group {g.key} {g.name!r}"))


def step_remove_pointers(ctx: Context) -> StepResult:
    def remove(app_id: str) -> None:
        obj = _owned(ctx, "sp_pointer", app_id)
        if obj is None or app_id not in ctx.sps:
            return
        oid = ctx.sps[app_id]["object_id"]
        # Not read: never created, or not visible yet (as for assignments): the removal goes out either way.
        act = ctx.intent("sp_pointer", app_id, "remove", prior={"object_id": oid})
        try:
            ctx.exo.invoke("Remove-ServicePrincipal", {"Identity": oid, "Confirm": False})
        except NotFound:
            pass
        ctx.mark(act, "applied")
        if not ctx.dry_run:
            ctx.journal.set_object("sp_pointer", app_id, "removed")

    return StepResult(ctx.for_each(ctx.view.apps, remove, label="Removing SP pointers", name=lambda a: f"app {a}"))


ROLLBACK_STEPS = (
    ("restore_grants", step_restore_grants),
    ("grants_wait", None),
    ("regrant", step_regrant),
    ("token_wait", None),
    ("remove_assignments", step_remove_assignments),
    ("remove_scopes", step_remove_scopes),
    ("remove_groups", step_remove_groups),
    ("remove_pointers", step_remove_pointers),
)


class RollbackRunner(Runner):
    """Rolls one batch back; the same loop, journal, waits and controls as execution."""

    phase = "rollback"
    steps: tuple[tuple[str, Callable[[Context], StepResult] | None], ...] = ROLLBACK_STEPS

    def batch_context(self, number: int):
        from migrator.executor.context import batch_view

        view = batch_view(self.plan, number)
        state, generation = self.journal.batch_state(number)
        if state in (BatchState.NEW, BatchState.ROLLED_BACK):
            why = 'never executed' if state == 'new' else 'already rolled back'
            self.output.info(f"Batch {number}: nothing to roll back ({why}).")
            return BatchOutcome(number, Outcome.SKIPPED, message=f"nothing to roll back ({state})")
        ctx = Context(plan=self.plan, view=view, journal=self.journal, exo=self.exo, graph=self.graph,
                      settings=self.settings, control=self.control, output=self.output, generation=generation,
                      phase=self.phase, dry_run=self.dry_run, now=self.now, sleep=self.sleep,
                      sps=self._sps.setdefault(number, {}), cache={"shared": self._shared},
                      entra_writer=self.entra_writer, entra_tenant=self.entra.tenant_id)
        self.output.info(f"Batch {number}: rollback{' (dry run: nothing is written)' if self.dry_run else ''}")
        return ctx, state

    def preflight(self, ctx: Context) -> None:
        problems = resolve_sps(ctx)
        for problem in problems:
            _note(ctx, f"{problem}: its grants cannot be restored")

    def begin(self, ctx: Context, state: str) -> None:
        if not self.dry_run and state != BatchState.ROLLING_BACK:
            self.journal.set_batch_state(ctx.batch, BatchState.ROLLING_BACK, ctx.generation)

    def finish(self, ctx: Context) -> None:
        if not self.dry_run:
            self.journal.set_batch_state(ctx.batch, BatchState.ROLLED_BACK, ctx.generation)
            _note(ctx, "objects this tool did not create were left as they were")
        self.output.info(f"Batch {ctx.batch}: rolled back.")

    def wait_seconds(self, ctx: Context, name: str) -> float:
        if name == "grants_wait":
            # Restored legacy grants must apply (Exchange caches them) before new tokens carry the claim again.
            restored = [a for kind in ("sendas", "fullaccess")
                        for a in ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase="rollback",
                                                     kind=kind, op="restore")]
            # Restored access policies must reach Graph/EWS before the consents they fence come back.
            policies = ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase="rollback", kind=POLICY,
                                           op="restore")
            return max(float(self.settings.grant_apply_wait) if restored else 0.0,
                       float(self.settings.policy_apply_wait) if policies else 0.0)
        # Only tokens issued after a cut-over lack the claim; without any cut-over there is nothing to outlive.
        cut = [a for kind, op in (("entra_assignment", "delete"), (CONSENT, "delete"))
               for a in ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase="execute", kind=kind,
                                            op=op)]
        if not cut:
            return 0.0
        row = self.journal.step(ctx.batch, ctx.generation, "rollback", "regrant")
        if row is not None and row.detail.get("token_wait"):
            return float(row.detail["token_wait"]["seconds"])
        from migrator.executor.lifetimes import TokenLifetimes, token_wait

        return token_wait(self.settings, TokenLifetimes())["seconds"]  # a dry run: no step row
