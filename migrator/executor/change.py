"""Apply a change plan (`migrator grant` / `revoke`, migrator/change/) with the executor's own machinery: the same
Runner loop, journal, guarded clients (dry run, pause, Ctrl-C), drift check before the first write, verification
with Test-ServicePrincipalAuthorization and the propagation wait (docs/design.md §8).

Steps (phase `change`, batch 1 of the change plan):
  groups            new groups created (hidden, closed, members set, DN read back); members added to the app's own
                    group, each add recorded before it is sent and read back after
  scopes            the new scopes (the change's existing scopes are left alone)
  assignments       the new role assignments (existing ones of the app are read and must match)
  verify            InScope=True for the app's reach after the change; InScope=False for probes outside it (and,
                    for a revoke, not yet for the revoked mailboxes: they go in `remove`)
  propagation_wait  only when an assignment of the app is to be removed (copy-on-write): the new one must serve on
                    the data plane before the old one goes, so no untouched mailbox has a gap
  remove            members removed from the app's own groups, then the app's old assignments, each recorded
                    (its full row) before it is removed and read back after
  final_verify      InScope=False for every revoked mailbox, InScope=True for a sample of the reach
  remove_scopes     last, only after a copy-on-write: the old assignments' scopes the plan lists, each removed only
                    when every role assignment read just before (any role, any assignee) leaves it unused; recorded
                    (its full row) before it is removed and read back after. A scope in use is kept, with a note
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from migrator.errors import MigratorError
from migrator.exchange.errors import MemberAlreadyExists, MemberNotFound, NotFound
from migrator.exchange.interface import RoleAssignmentInfo
from migrator.executor.context import Context, ItemFailure, StepResult
from migrator.executor.readback import await_read, settle
from migrator.executor.review import tenant_label
from migrator.executor.runner import BatchOutcome, Runner, RunResult
from migrator.executor.states import BatchState, Outcome
from migrator.executor.steps import (
    _in_scope,
    ensure_group,
    ensure_scope,
    raise_drift,
    resolve_sps,
    step_assignments,
)
from migrator.model import RBAC_ROLE_SMTP_SEND_AS, norm_id

PHASE = "change"


def spec(ctx: Context) -> dict:
    return ctx.plan.meta["change"]


def _plan_group(ctx: Context, lower_name: str):
    key = spec(ctx)["group_keys"].get(lower_name)
    group = next((g for g in ctx.plan.groups if g.key == key), None)
    if group is None:
        raise MigratorError(f"group {lower_name!r} is not in the change plan")
    return group


def _members(ctx: Context, group) -> set[str]:
    return {m.address for m in ctx.exo.group_members(group.dn or group.address or group.name)}


def _member_ops(ctx: Context, ops: list, op: str) -> list[ItemFailure]:
    """Add (op 'add') or remove ('remove') single members of existing groups: read, record, write, read back."""
    by_group: dict[str, list[str]] = {}
    for lower, mailbox in ops:
        by_group.setdefault(lower, []).append(mailbox)

    def apply(item) -> None:
        lower, mailboxes = item
        group = _plan_group(ctx, lower)
        identity = group.dn or group.address or group.name
        current = _members(ctx, group)
        todo = [m for m in mailboxes if (m not in current) == (op == "add")]
        for mailbox in todo:
            act = ctx.intent("group_member", f"{group.key}|{mailbox}", op,
                             intent={"group": group.name, "member": mailbox}, prior={"member": op != "add"})
            try:
                if op == "add":
                    ctx.exo.add_group_member(identity, mailbox)
                else:
                    ctx.exo.remove_group_member(identity, mailbox)
            except (MemberAlreadyExists, MemberNotFound):
                pass  # already as wanted (an earlier, killed run sent it); a missing group or mailbox still fails
            ctx.mark(act, "applied")
        if ctx.dry_run:
            return

        def problem(back: set[str]) -> str | None:  # reads may lag behind the write (readback.py)
            wrong = [m for m in mailboxes if (m in back) != (op == "add")]
            return f"{', '.join(wrong[:5])} still {'not ' if op == 'add' else ''}a member" if wrong else None

        await_read(ctx, lambda: _members(ctx, group), problem, f"group {group.name!r} after the {op}")
        for mailbox in mailboxes:
            act_row = ctx.recorded("group_member", f"{group.key}|{mailbox}", op)
            if act_row is not None and act_row.status != "verified":
                ctx.mark(act_row.id, "verified")

    return ctx.for_each(sorted(by_group.items()), apply, label=f"Members ({op})",
                        name=lambda item: f"group {item[0]}")


def step_change_groups(ctx: Context) -> StepResult:
    failures = ctx.for_each(ctx.view.groups, lambda g: ensure_group(ctx, g), label="Groups",
                            name=lambda g: f"group {g.key} {g.name!r}")
    if not failures:
        failures = _member_ops(ctx, spec(ctx)["member_adds"], "add")
    return StepResult(failures, {"dns": dict(ctx.dns)})


def step_change_scopes(ctx: Context) -> StepResult:
    new = set(spec(ctx)["new_scopes"])
    return StepResult(ctx.for_each([s for s in ctx.view.scopes if s.key in new], lambda s: ensure_scope(ctx, s),
                                   label="Scopes", name=lambda s: f"scope {s.key} {s.name!r}"))


def _authorize(ctx: Context, label: str, positives: list[str], negatives: list[str]) -> list[ItemFailure]:
    """Test-ServicePrincipalAuthorization: InScope=True for `positives`, False for `negatives`. A wrong answer is
    retried on the bounded schedule both ways (Exchange may answer from a replica that has not seen the write)."""
    app_id = spec(ctx)["app_id"]
    checks = [(m, True) for m in positives] + [(m, False) for m in negatives]
    if ctx.dry_run:
        ctx.output.note(f"then test {len(checks)} mailbox(es) with Test-ServicePrincipalAuthorization (reads)")
        return []
    oid = ctx.sps[app_id]["object_id"]

    def test(check) -> None:
        mailbox, expected = check
        for attempt in range(ctx.settings.verify_retries + 1):
            if _in_scope(ctx.exo.authorization(oid, mailbox), RBAC_ROLE_SMTP_SEND_AS) == expected:
                return
            ctx.sleep(ctx.settings.verify_retry_delay * (attempt + 1))
        raise MigratorError(f"app {app_id} {'not ' if expected else ''}in scope for {mailbox} "
                            f"(expected InScope={expected})")

    return ctx.for_each(checks, test, label=label, name=lambda c: f"app {app_id} / {c[0]}")


def _probes(ctx: Context, exclude: set[str]) -> list[str]:
    universe = {m for g in spec(ctx)["before"]["groups"].values() for m in g["members"]}
    universe |= {norm_id(m) for g in ctx.plan.groups for m in g.members} | set(spec(ctx)["requested"])
    return ctx.sample(sorted(universe - exclude), key="probe:change")[: ctx.settings.probes]


def step_change_verify(ctx: Context) -> StepResult:
    app_id = spec(ctx)["app_id"]
    reach = ctx.view.rbac_mailboxes(app_id)
    revoked = set(spec(ctx)["effective"]) if spec(ctx)["kind"] == "revoke" else set()
    sample = ctx.sample(sorted(reach), key=app_id)
    return StepResult(_authorize(ctx, "Verifying", sample, _probes(ctx, reach | revoked)))


def step_change_remove(ctx: Context) -> StepResult:
    """Members of the app's own groups, then the app's old assignments (copy-on-write), each recorded first."""
    failures = _member_ops(ctx, spec(ctx)["member_removes"], "remove")
    if failures:
        return StepResult(failures)
    names = spec(ctx)["removed_assignment_names"]
    if not names:
        return StepResult()
    existing = {a.name.lower(): a for a in ctx.exo.role_assignments(RBAC_ROLE_SMTP_SEND_AS)}

    def remove(name: str) -> None:
        row = existing.get(name.lower())
        if row is None:
            return  # removed by an earlier, killed run (its prior row is in the journal) or never there
        act = ctx.intent("assignment", name, "remove", prior=row.raw)
        try:
            ctx.exo.remove_role_assignment(name)
        except NotFound:
            pass
        ctx.mark(act, "applied")

    failures = ctx.for_each(names, remove, label="Removing old assignments", name=lambda n: f"assignment {n!r}")
    if not failures and not ctx.dry_run:
        gone = {n.lower() for n in names}
        _seen, left = settle(ctx, lambda: {a.name.lower() for a in ctx.exo.role_assignments(RBAC_ROLE_SMTP_SEND_AS)},
                             lambda seen: gone & seen)
        for name in names:
            if name.lower() in left:
                failures.append(ItemFailure(f"assignment {name!r}", "still present after removal"))
                continue
            act = ctx.recorded("assignment", name, "remove")
            if act is not None and act.status != "verified":
                ctx.mark(act.id, "verified")
    return StepResult(failures)


def step_change_final_verify(ctx: Context) -> StepResult:
    app_id = spec(ctx)["app_id"]
    reach = ctx.view.rbac_mailboxes(app_id)
    revoked = sorted(spec(ctx)["effective"]) if spec(ctx)["kind"] == "revoke" else []
    sample = ctx.sample(sorted(reach), key=app_id, size=ctx.settings.final_verify_sample)
    return StepResult(_authorize(ctx, "Final verification", sample, revoked + _probes(ctx, reach | set(revoked))))


_SCOPE_COLUMNS = ("CustomResourceScope", "CustomRecipientWriteScope", "CustomConfigWriteScope",
                  "ExclusiveRecipientWriteScope", "ExclusiveConfigWriteScope")


def _scope_users(ctx: Context) -> dict[str, list[str]]:
    """Scope (lower) -> names of the role assignments on it, of any role and assignee (one full listing). A dry run
    wrote no removal, so the assignments the change removes are left out as if removed."""
    leaving = {n.lower() for n in spec(ctx)["removed_assignment_names"]} if ctx.dry_run else set()
    users: dict[str, list[str]] = {}
    for row in ctx.exo.scan_role_assignments():
        a = RoleAssignmentInfo.from_row(row)
        if a.name.lower() in leaving:
            continue
        # an app's assignment names its scope in CustomResourceScope, an admin's in the write scopes
        for column in _SCOPE_COLUMNS:
            if scope := str(row.get(column) or "").strip():
                users.setdefault(scope.lower(), []).append(a.name)
    return users


def step_change_remove_scopes(ctx: Context) -> StepResult:
    """The old scopes a copy-on-write left without an assignment, each removed only when the tenant read now shows
    no role assignment on it (never a scope another assignment uses); recorded with its row first (rollback)."""
    names = spec(ctx).get("removed_scope_names", [])  # older change plans have no such key
    if not names:
        return StepResult()
    users = _scope_users(ctx)
    sent: list[str] = []

    def remove(name: str) -> None:
        using = users.get(name.lower())
        if using:
            ctx.output.info(f"  note: scope {name!r} kept: role assignment(s) {', '.join(sorted(using)[:5])} use it")
            return
        found = ctx.exo.scope(name)
        if found is None:
            return  # removed by an earlier, killed run (its prior row is in the journal) or never there
        act = ctx.intent("scope", name, "remove", prior=found.raw)
        try:
            ctx.exo.remove_management_scope(name)
        except NotFound:
            pass
        ctx.mark(act, "applied")
        sent.append(name)

    failures = ctx.for_each(names, remove, label="Removing old scopes", name=lambda n: f"scope {n!r}")
    if failures or ctx.dry_run:
        return StepResult(failures)
    for name in names:
        act_row = ctx.recorded("scope", name, "remove")
        if act_row is None or act_row.status == "verified":
            continue
        _seen, left = settle(ctx, partial(ctx.exo.scope, name), lambda found: [found] if found else [])
        if left:
            failures.append(ItemFailure(f"scope {name!r}", "still present after removal"))
        else:
            ctx.mark(act_row.id, "verified")
    return StepResult(failures)


CHANGE_STEPS = (
    ("groups", step_change_groups),
    ("scopes", step_change_scopes),
    ("assignments", step_assignments),
    ("verify", step_change_verify),
    ("propagation_wait", None),
    ("remove", step_change_remove),
    ("final_verify", step_change_final_verify),
    ("remove_scopes", step_change_remove_scopes),
)


class ChangeReview:
    """What the question before the first write shows (cli/change.py asks it)."""

    phase = PHASE

    def __init__(self, plan, tenant: str, resuming: bool) -> None:
        self.plan, self.tenant, self.resuming, self.batch = plan, tenant, resuming, 1

    def text(self) -> str:
        from migrator.change.render import change_text

        again = " (resuming where it stopped)" if self.resuming else ""
        return f"Tenant: {self.tenant}{again}\n" + change_text(self.plan)


class ChangeRunner(Runner):
    """Runs batch 1 of a change plan; `observe()` reads the tenant's RBAC setup (change.setup.Setup) for the drift
    check before this invocation's first write."""

    phase = PHASE
    steps = CHANGE_STEPS

    def __init__(self, *args, observe: Callable[[], Any] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.observe = observe

    def batch_context(self, number: int):
        from migrator.executor.context import batch_view

        view = batch_view(self.plan, number)
        state, generation = self.journal.batch_state(number)
        if state == BatchState.DONE:
            self.output.info("The change is already applied.")
            return BatchOutcome(number, Outcome.SKIPPED, message="already applied")
        if state in (BatchState.ROLLING_BACK, BatchState.ROLLED_BACK):
            raise MigratorError(f"this change is {state.replace('_', ' ')} (`migrator rollback`): finish the "
                                "rollback, then run the grant or revoke again to plan it afresh")
        ctx = Context(plan=self.plan, view=view, journal=self.journal, exo=self.exo, graph=self.graph,
                      settings=self.settings, control=self.control, output=self.output, generation=generation,
                      phase=self.phase, dry_run=self.dry_run, now=self.now, sleep=self.sleep,
                      sps=self._sps.setdefault(number, {}), cache={"shared": self._shared})
        s = self.plan.meta["change"]
        self.output.info(f"{s['kind'].capitalize()} {len(s['effective'])} mailbox(es) for {s['app_name']}"
                         f"{' (dry run: nothing is written)' if self.dry_run else ''}")
        return ctx, state

    def preflight(self, ctx: Context) -> None:
        from migrator.change.incremental import drift

        problems = resolve_sps(ctx)
        if problems:
            raise MigratorError("; ".join(problems))
        app_id = spec(ctx)["app_id"]
        if not ctx.sps[app_id].get("exchange"):
            raise MigratorError(f"app {app_id} has no Exchange service-principal pointer")
        if self.observe is not None:
            raise_drift(drift(spec(ctx)["before"], spec(ctx), self.observe()), ctx.batch)

    def approved(self, ctx: Context, state: str) -> bool:
        if self.confirm is None or self.dry_run or ctx.batch in self._confirmed:
            return True
        if not self.writes_ahead(ctx, self.steps_left(ctx)):
            return True
        if not self.confirm(ChangeReview(self.plan, self.tenant, state != BatchState.NEW)):  # type: ignore[arg-type]
            self.output.info("Not confirmed; nothing was changed.")
            return False
        self._confirmed.add(ctx.batch)
        return True

    def finish(self, ctx: Context) -> None:
        if not self.dry_run:
            self.journal.set_batch_state(ctx.batch, BatchState.DONE, ctx.generation)
        self.output.info("The change is applied.")

    def wait_seconds(self, ctx: Context, name: str) -> float:
        if name == "propagation_wait" and spec(ctx)["removed_assignment_names"]:
            return float(self.settings.propagation_wait)
        return 0.0


def apply_change(plan_dir, tenant, options, *, observe: Callable[[], Any] | None) -> RunResult:
    """Open the change plan under its journal lock (session.RunSession), connect, and run its batch."""
    from migrator.executor.context import Control, Output
    from migrator.executor.session import RunSession

    with RunSession.open(plan_dir, tenant, options, graph_write=False) as session:
        control = Control(session.plan_dir)
        if options.signals:
            control.install()
        try:
            runner = ChangeRunner(session.plan, session.journal, session.conn.exo, session.conn.graph,
                                  settings=options.settings, dry_run=options.dry_run, wait=options.wait,
                                  control=control, output=options.output or Output(), confirm=options.confirm,
                                  tenant=tenant_label(getattr(session.conn, "profile", None)), now=options.now,
                                  sleep=options.sleep, observe=observe)
            return runner.run([1])
        finally:
            if options.signals:
                control.uninstall()


__all__ = ["CHANGE_STEPS", "ChangeRunner", "apply_change"]
