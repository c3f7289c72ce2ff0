"""The executor's steps (docs/design.md §6). Each is an idempotent "ensure": it reads before it writes, records its
intent and the prior state in the journal before the write, and verifies after. Run twice, the second run reads,
finds everything in place, and writes nothing.

Order, per batch: sp_pointers → groups → scopes → assignments → verify → (propagation wait) → cutover →
(token wait) → remove_legacy → final_verify. The waits live in runner.py.

Reads of "absent": only NotFound (or a client's None for it) means absent; any other error propagates as a failure
of the item (invariant 6). Objects the tool creates are claimed in the journal (exact name) before the create call,
so an AlreadyExists answer can be told apart from someone else's object.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from migrator.errors import DriftError, MigratorError
from migrator.exchange.errors import (
    AlreadyExists,
    Forbidden,
    MemberAlreadyExists,
    MemberNotFound,
    NotFound,
)
from migrator.exchange.interface import (
    AppRoleAssignment,
    AuthorizationResult,
    GroupInfo,
    PermissionEntry,
    RoleAssignmentInfo,
)
from migrator.exchange.ratelimit import fan_out
from migrator.executor.aap import (
    CONSENT,
    POLICY,
    check_mail_registrations,
    confirm_consents,
    consent_key,
    cut_consents,
    final_checks,
    graph_resource_id,
    mail_checks,
    mail_drift,
    remove_policies,
    verify_cut,
)
from migrator.executor.context import Context, ItemFailure, StepResult
from migrator.executor.entra import (
    Pending,
    PendingConsent,
    cutover_script,
    handover_message,
    handover_subject,
    write_handover,
)
from migrator.executor.readback import await_read, first_pause, settle
from migrator.exitcodes import ExitCode
from migrator.model import EXCHANGE_ONLINE_APP_ID, SMTP_SEND_AS_APP, Right, norm_id
from migrator.planner.opath import fill_dns, member_of_dns
from migrator.planner.plan import MIGRATE, NEW, REUSE


class StepFailed(MigratorError):
    """A step finished with failed items; the batch stays where `execute` resumes it or `rollback` undoes it."""

    exit_code = ExitCode.ITEMS_FAILED

    def __init__(self, step: str, failures: list[ItemFailure]) -> None:
        self.step, self.failures = step, failures
        lines = "\n".join(f"  - {f}" for f in failures[:50])
        more = f"\n  ... and {len(failures) - 50} more" if len(failures) > 50 else ""
        super().__init__(f"step {step}: {len(failures)} item(s) failed:\n{lines}{more}")


# ---------------------------------------------------------------------------------------------------------------
# Small helpers on tenant rows
# ---------------------------------------------------------------------------------------------------------------

def normalise_filter(text: str) -> str:
    """Compare OPATH filters as Exchange may echo them: outer parentheses and spacing ignored."""
    out = re.sub(r"\s+", " ", (text or "").strip())
    while out.startswith("(") and out.endswith(")") and _balanced(out[1:-1]):
        out = out[1:-1].strip()
    return out.lower()


def _balanced(text: str) -> bool:
    depth, quoted = 0, False
    for ch in text:
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def group_identity(ctx: Context, group) -> str:
    """The identity to address a plan group with: the GUID read back when known, else its address or name."""
    obj = ctx.journal.object("group", group.key)
    if obj and obj.identity:
        return obj.identity
    return group.address or group.dn or group.name


def mailbox_map(ctx: Context) -> dict[str, str]:
    """Every way Get-RecipientPermission may name a mailbox (Identity, Name, Alias, GUID, DN, UPN) -> address."""
    shared = ctx.cache.setdefault("shared", {})  # the Runner shares this dict across the batches of one run
    if "mailbox_map" not in shared:
        out: dict[str, str] = {}
        for mb in ctx.exo.mailbox_refs():
            if not mb.address:
                continue
            for value in mb.names:
                out.setdefault(value, mb.address)
        shared["mailbox_map"] = out
    return shared["mailbox_map"]


SP_NAME_FIELDS = ("object_id", "display_name", "exchange_display_name", "exchange_identity", "exchange_name",
                  "exchange_sid")


def sp_keys(ctx: Context) -> dict[str, set[str]]:
    """Trustee text -> app ids of the batch's service principals: every name a permission row may show one by (its
    Exchange pointer's DisplayName, Name, Identity, Sid; the Entra ObjectId, AppId and display name). A name two of
    them share maps to both, and a row showing it is an error, never a guess."""
    keys: dict[str, set[str]] = defaultdict(set)
    for app_id, sp in ctx.sps.items():
        values = (app_id, *(sp.get(f) for f in SP_NAME_FIELDS))
        if ctx.settings.trustee_match == "object_id":  # doctor proved the rows show the ObjectId
            values = (sp.get("object_id"),)
        for value in values:
            if value:
                keys[norm_id(value)].add(app_id)
    return keys


def legacy_rows(ctx: Context, *, fresh: bool = False,
                max_age: float | None = None) -> dict[tuple[str, str], list[PermissionEntry]]:
    """(app_id, mailbox) -> explicit Allow SendAs rows held by the batch's SPs, from one full scan.

    The full scan filtered client-side is the safe default (a per-trustee query can miss rows, docs/exchange.md §3),
    and it costs a few paged calls where per-mailbox reads would cost one per grant.
    """
    stale = max_age is not None and ctx.now() - ctx.cache.get("sendas_at", -1e18) > max_age
    if fresh or stale or "sendas" not in ctx.cache:
        mboxes = mailbox_map(ctx)
        keys = sp_keys(ctx)
        found: dict[tuple[str, str], list[PermissionEntry]] = defaultdict(list)
        denied: set[tuple[str, str]] = set()
        ambiguous = []
        for row in ctx.exo.sendas_entries():
            if row.inherited or "sendas" not in row.rights:
                continue
            apps = keys.get(norm_id(row.trustee))
            if not apps:
                continue
            if len(apps) > 1:
                ambiguous.append(row.trustee)
                continue
            mailbox = mboxes.get(norm_id(row.mailbox))
            if not mailbox:
                continue
            if row.deny:
                denied.add((next(iter(apps)), mailbox))
            else:
                found[(next(iter(apps)), mailbox)].append(row)
        for pair in denied:  # an Allow cancelled by a Deny is no grant (the inventory skips it as denied_allow)
            found.pop(pair, None)
        if ambiguous:
            raise MigratorError(f"trustee {ambiguous[0]!r} matches several of the batch's service principals "
                                "(same display name?); rename one so grants can be told apart")
        ctx.cache["sendas"] = dict(found)
        ctx.cache["sendas_at"] = ctx.now()
    return ctx.cache["sendas"]


def _fullaccess_rows(ctx: Context, app_id: str, mailbox: str) -> list[PermissionEntry]:
    sp = ctx.sps[app_id]
    rows = ctx.exo.mailbox_permission_entries(mailbox, sp["object_id"])
    names = {k for k, apps in sp_keys(ctx).items() if app_id in apps}  # every way the trustee may be shown
    return [r for r in rows if norm_id(r.trustee) in names and "fullaccess" in r.rights and not r.inherited
            and not r.deny]


# ---------------------------------------------------------------------------------------------------------------
# Preflight: service principals, drift
# ---------------------------------------------------------------------------------------------------------------

def resolve_sps(ctx: Context) -> list[str]:
    """Fill ctx.sps from Graph (the enterprise app's object id) and Exchange (its pointer). Read-only."""
    def one(app_id: str) -> str | None:
        if app_id in ctx.sps:  # resolved earlier in this run (the Runner keeps them across a wait)
            return None
        sp = ctx.graph.service_principal(app_id)
        if sp is None or not sp.id:
            return f"app {app_id} ({ctx.view.app_names.get(app_id, '')}): no service principal in Entra"
        pointer = ctx.exo.sp_pointer(sp.id)
        ctx.sps[app_id] = {"object_id": norm_id(sp.id), "display_name": sp.display_name,
                           "exchange": pointer is not None,
                           "exchange_identity": pointer.identity if pointer else "",
                           "exchange_name": pointer.name if pointer else "",
                           "exchange_display_name": pointer.display_name if pointer else "",
                           "exchange_sid": pointer.sid if pointer else ""}
        return None

    workers = max(1, min(ctx.settings.concurrency, len(ctx.view.apps)))
    if workers == 1:
        answers = [one(a) for a in ctx.view.apps]
    else:  # reads only; any error propagates (a failed read is never "absent")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            answers = list(pool.map(one, ctx.view.apps))
    return [a for a in answers if a]


def drift_check(ctx: Context) -> list[str]:
    """What differs between the tenant and the plan (adjusted by what this tool already did). Read-only.

    A difference about something this tool wrote lately (a grant it restored or removed, a group it removed, within
    replication_timeout) may be a read that lags behind that write: while every difference is of that kind, the
    check reads again, bounded (readback.py). Any other difference (someone else's change) is returned at once and
    stops the run."""
    since = ctx.now() - ctx.settings.replication_timeout  # "lately": fixed for the whole check
    found, _ = settle(ctx, lambda: _drift(ctx, since), lambda d: d[1] if len(d[1]) == len(d[0]) else ())
    diffs, own = found
    if own and len(own) == len(diffs):
        late = f" (written by this tool; reads still do not show it {ctx.settings.replication_timeout:g} s later)"
        return [d + late for d in diffs]
    return diffs


def _drift(ctx: Context, since: float) -> tuple[list[str], list[str]]:
    """(differences, those about objects this tool wrote since `since`, in any run of this batch)."""
    diffs: list[str] = []
    own: list[str] = []
    view = ctx.view
    # Written by this tool recently enough for a read to lag behind it (within replication_timeout): older writes
    # have shown (or the read-back would have stopped the run), so a difference about them is someone else's.
    written = {(a.kind, a.key) for a in ctx.journal.actions(batch=view.number)
               if a.kind in ("sendas", "fullaccess", "group", POLICY, CONSENT) and (a.updated_at or 0) >= since}
    # 1. The batch's SendAs grants, as inventoried, minus those this tool removed.
    removed = {a.key for a in ctx.journal.actions(batch=view.number, generation=ctx.generation, phase="execute",
                                                 kind="sendas", op="remove")}
    restored = {a.key for a in ctx.journal.actions(batch=view.number, generation=ctx.generation, phase="rollback",
                                                  kind="sendas", op="restore") if a.status in ("applied", "verified")}
    expected = {(norm_id(g.app_id), norm_id(g.mailbox)) for g in view.grants if g.right == Right.SEND_AS}
    actual = set(legacy_rows(ctx, fresh=True))
    for app_id, mailbox in sorted(expected - actual):
        if f"{app_id}|{mailbox}" in removed and f"{app_id}|{mailbox}" not in restored:
            continue
        diffs.append(f"SendAs grant missing: app {app_id} ({view.app_names.get(app_id, '')}) on {mailbox}")
        if ("sendas", f"{app_id}|{mailbox}") in written:
            own.append(diffs[-1])
    for app_id, mailbox in sorted(actual - expected):
        diffs.append(f"SendAs grant added since the plan: app {app_id} ({view.app_names.get(app_id, '')}) on {mailbox}")
    # 1b. FullAccess grants that are SMTP reach (the app holds SMTP.SendAsApp; its scope covers them): one read per
    #     mailbox, as Get-MailboxPermission needs one. A grant gone since the plan would leave the new scope
    #     over-granting; one this tool removed (--remove-fullaccess) and did not restore is no difference.
    fa_removed = {a.key for a in ctx.journal.actions(batch=view.number, generation=ctx.generation, phase="execute",
                                                    kind="fullaccess", op="remove")}
    fa_restored = {a.key for a in ctx.journal.actions(batch=view.number, generation=ctx.generation,
                                                     phase="rollback", kind="fullaccess", op="restore")
                   if a.status in ("applied", "verified")}
    reach_fa = sorted({(norm_id(g.app_id), norm_id(g.mailbox)) for g in view.grants
                       if g.right == Right.FULL_ACCESS and g.batch is not None
                       and ctx.sps.get(norm_id(g.app_id), {}).get("exchange")})

    def fullaccess_diff(pair: tuple[str, str]) -> tuple[str, bool] | None:
        app_id, mailbox = pair
        if _fullaccess_rows(ctx, app_id, mailbox):
            return None
        key = f"{app_id}|{mailbox}"
        if key in fa_removed and key not in fa_restored:
            return None
        return (f"FullAccess grant missing: app {app_id} ({view.app_names.get(app_id, '')}) on {mailbox}",
                ("fullaccess", key) in written)

    for hit in fan_out(fullaccess_diff, reach_fa, workers=max(1, ctx.settings.concurrency)):
        if hit:
            diffs.append(hit[0])
            if hit[1]:
                own.append(hit[0])
    # 2. Reused groups: still the same object (DN) with the same direct members. New groups: no foreign object under
    #    their name. Reads only, one item per group, fanned out (serially they were seconds of idle budget); the
    #    differences keep the plan's group order, and a failed read stops the check (never taken as "absent").
    def group_diffs(group) -> list[tuple[str, bool]]:
        out: list[tuple[str, bool]] = []
        if group.status == REUSE:
            ident = group.dn or group.address or group.name
            found = ctx.exo.group(ident)
            if found is None:
                return [(f"group {group.key} {group.name!r}: not found", False)]
            if group.dn and found.dn != group.dn:
                out.append((f"group {group.key} {group.name!r}: DN is now {found.dn!r}", False))
            members = {m.address for m in ctx.exo.group_members(found.identity or ident)}
            plan_members = {norm_id(m) for m in group.members}
            for m in sorted(members - plan_members):
                out.append((f"group {group.key} {group.name!r}: member added: {m}", False))
            for m in sorted(plan_members - members):
                out.append((f"group {group.key} {group.name!r}: member removed: {m}", False))
        else:
            obj = ctx.journal.object("group", group.key)
            if obj is None or obj.state == "removed":
                for ident in dict.fromkeys(v for v in (group.name, group.alias, group.address) if v):
                    if ctx.exo.group(ident) is not None:
                        # one this tool removed (a rollback) may still be read (read-after-write lag)
                        out.append((f"group {group.key}: a group matching {ident!r} (the name, alias or address "
                                    f"of the new group {group.name!r}) already exists and was not created by "
                                    "this plan", ("group", group.key) in written))
                        break
        return out

    for found_diffs in fan_out(group_diffs, view.groups, workers=max(1, ctx.settings.concurrency)):
        for text, by_us in found_diffs:
            diffs.append(text)
            if by_us:
                own.append(text)
    # 3. Role assignments of the batch's apps that the plan does not know (someone else granted a scope), and the
    #    existing ones it builds on: still there, on the same scope, with the same filter.
    planned = {a.name for a in view.assignments} | {e.assignment for e in view.existing}
    sp_ids = {sp["object_id"]: app for app, sp in ctx.sps.items()}
    seen: dict[str, RoleAssignmentInfo] = {}
    for role in sorted({a.role for a in view.assignments} | {e.role for e in view.existing}):
        for row in ctx.exo.role_assignments(role):
            seen[row.name.lower()] = row
            if row.assignee in sp_ids and row.name not in planned:
                diffs.append(f"role assignment {row.name!r} ({role}) of app {sp_ids[row.assignee]} is not in "
                             "the plan")
    diffs += _existing_drift(ctx, seen)  # someone else's change: never waited out as a lagging read
    # 4. Graph/EWS: the mail apps' access policies and fenced Entra consents (aap.py)
    mail_diffs, mail_own = mail_drift(ctx, written)
    return diffs + mail_diffs, own + mail_own


def _existing_drift(ctx: Context, seen: dict[str, RoleAssignmentInfo]) -> list[str]:
    """The existing assignments the plan reuses (existing.csv): gone, moved to another scope, or their scope's
    filter edited since the inventory. Reads only (one Get-ManagementScope per scope)."""
    diffs: list[str] = []
    for e in ctx.view.existing:
        row = seen.get(e.assignment.lower())
        what = f"existing role assignment {e.assignment!r} of app {e.app_id} (reused by the plan)"
        if row is None:
            diffs.append(f"{what}: not found")
            continue
        if e.filter:  # a management scope: the same one, with the same filter
            if norm_id(row.scope) != norm_id(e.scope):
                diffs.append(f"{what}: now on scope {row.scope!r}, the plan has {e.scope!r}")
                continue
            scope = ctx.exo.scope(e.scope)
            if scope is None or normalise_filter(scope.filter) != normalise_filter(e.filter):
                diffs.append(f"{what}: scope {e.scope!r} is gone or its filter changed since the inventory")
                continue
            diffs += _existing_members_drift(ctx, e, what)
        elif e.scope:  # a scope but no filter: a RecipientGroupScope one (an empty filter is never reused)
            diffs += _existing_group_drift(ctx, e, row, what)
        elif row.scope or row.group_scope:  # it had no scope (the organisation): now it has one
            diffs.append(f"{what}: now on scope {row.scope or row.group_scope!r}")
    return diffs


def _existing_group_drift(ctx: Context, e, row: RoleAssignmentInfo, what: str) -> list[str]:
    """A reused assignment scoped to a group (RecipientGroupScope; the plan's `scope` is the group's address as
    inventoried, its members the group's direct members then): still scoped to that same group, whose direct members
    are still those. Switched to another group, or a member added or removed, the reach the plan counted on is not
    there any more. Reads only."""
    now_ref = row.group_scope
    if not now_ref:
        where = f"scope {row.scope!r}" if row.scope else "the whole organisation"
        return [f"{what}: no longer scoped to group {e.scope!r}, now on {where}"]
    now = ctx.exo.group(now_ref)
    if now is None:
        return [f"{what}: its group {now_ref!r} is gone"]
    planned = ctx.exo.group(e.scope)
    if planned is None or (planned.identity or planned.dn).lower() != (now.identity or now.dn).lower():
        return [f"{what}: now scoped to group {now.name or now_ref!r}, the plan has group {e.scope!r}"
                + (" (no longer found)" if planned is None else "")]
    members = {m.address for m in ctx.exo.group_members(now.identity or now_ref)}
    want = {norm_id(m) for m in e.members}
    return ([f"{what}: member added to its group {e.scope!r}: {m}" for m in sorted(members - want)]
            + [f"{what}: member removed from its group {e.scope!r}: {m}" for m in sorted(want - members)])


def _existing_members_drift(ctx: Context, e, what: str) -> list[str]:
    """A reused scope made of `MemberOfGroup` terms only: its groups' direct members now must be the mailboxes it
    reached at the inventory. Other shapes (attribute terms) are left to verify's Test-ServicePrincipalAuthorization
    of every mailbox (or a sample) and its out-of-set probes, before any legacy grant goes."""
    dns = member_of_dns(e.filter)
    if dns is None:
        return []
    now: set[str] = set()
    for dn in dns:
        found = ctx.exo.group(dn)
        if found is None:
            return [f"{what}: group {dn!r} of its scope is gone"]
        now |= {m.address for m in ctx.exo.group_members(found.identity or dn)}
    want = {norm_id(m) for m in e.members}
    return ([f"{what}: member added to its scope's group: {m}" for m in sorted(now - want)]
            + [f"{what}: member removed from its scope's group: {m}" for m in sorted(want - now)])


def check_cutover_safe(ctx: Context) -> list[str]:
    """The cut-over removes the app's SMTP.SendAsApp claim; from then on only RBAC serves its SMTP reach, which is
    every mailbox it holds SendAs *or FullAccess* on. So an app cannot be cut over while the plan leaves some of
    that reach out of its RBAC set: a SendAs grant kept, or a FullAccess grant outside the set (the plan took the
    app for one without the claim) while the app holds the claim now (read from Entra). Read-only."""
    problems: list[str] = []
    if not ctx.settings.cutover:
        return problems
    for app_id in ctx.view.smtp_apps:
        name = ctx.view.app_names.get(app_id, "")
        kept = [g for g in ctx.view.grants if norm_id(g.app_id) == app_id and g.right == Right.SEND_AS
                and g.action != MIGRATE]
        if kept:
            problems.append(f"app {app_id} ({name}) keeps {len(kept)} SendAs grant(s) "
                            f"(e.g. {kept[0].mailbox}); its cut-over would cut them off")
        in_set = ctx.view.rbac_mailboxes(app_id)
        outside = [g for g in ctx.view.grants if norm_id(g.app_id) == app_id and g.right == Right.FULL_ACCESS
                   and norm_id(g.mailbox) not in in_set]
        if outside:
            exchange_role(ctx)
            if smtp_assignments(ctx, app_id):
                problems.append(
                    f"app {app_id} ({name}) holds SMTP.SendAsApp and FullAccess on {len(outside)} mailbox(es) "
                    f"its plan does not move to RBAC (e.g. {outside[0].mailbox}): with the claim it sends as them, "
                    "and its cut-over would cut them off. Plan from an inventory with the apps' Entra "
                    "permissions (or --fullaccess-smtp yes)")
    return problems


def raise_drift(diffs: list[str], batch: int) -> None:
    if diffs:
        shown = "\n".join(f"  - {d}" for d in diffs[:100])
        more = f"\n  ... and {len(diffs) - 100} more" if len(diffs) > 100 else ""
        raise DriftError(f"batch {batch}: the tenant changed since the plan; nothing was written. Differences:\n"
                         f"{shown}{more}\nRe-run the inventory and the plan, or put the tenant back.")


# ---------------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------------

def step_sp_pointers(ctx: Context) -> StepResult:
    """Exchange service-principal pointers, created from the Entra object id when missing."""

    def ensure(app_id: str) -> None:
        sp = ctx.sps[app_id]
        if sp["exchange"]:
            _adopt(ctx, "sp_pointer", app_id, sp["object_id"])
            done = ctx.recorded("sp_pointer", app_id, "create")
            if done is not None and done.status != "verified":  # found in place: that is the verification
                ctx.mark(done.id, "verified")
            return
        key = app_id
        if not ctx.dry_run:
            ctx.journal.claim_object("sp_pointer", key, sp["object_id"], ctx.batch)
        act = ctx.intent("sp_pointer", key, "create", intent={"app_id": app_id, "object_id": sp["object_id"]})
        try:
            ctx.exo.new_service_principal(app_id, sp["object_id"], sp.get("display_name", ""))
        except AlreadyExists:
            pass
        if ctx.dry_run:
            return
        found = _wait_visible(ctx, lambda: ctx.exo.sp_pointer(sp["object_id"]),
                              f"service principal pointer for {app_id}")
        ctx.journal.set_object("sp_pointer", key, "created", identity=sp["object_id"])
        ctx.mark(act, "verified", result=found.raw)
        sp.update(exchange=True, exchange_identity=found.identity, exchange_name=found.name,
                  exchange_display_name=found.display_name, exchange_sid=found.sid)

    failures = ctx.for_each(ctx.view.apps, ensure, label="Service principals")
    return StepResult(failures)


def _adopt(ctx: Context, kind: str, key: str, identity: str) -> None:
    """An object found in place whose creation a crashed run had only recorded as an intent: finish the record."""
    if ctx.dry_run:
        return
    obj = ctx.journal.object(kind, key)
    if obj is not None and obj.state == "intent":
        ctx.journal.set_object(kind, key, "created", identity=identity)
    act = ctx.recorded(kind, key, "create")
    if act is not None and act.status == "intent":
        ctx.mark(act.id, "applied", result={"found_on_resume": True})


def _wait_visible(ctx: Context, read, what: str):
    """Read until the object shows up (directory replication, read-after-write lag), bounded (readback.py)."""
    return await_read(ctx, read, lambda found: None if found is not None else "still not visible", what)


def _wait_gone(ctx: Context, read, what: str) -> None:
    """Read until an object this tool removed no longer shows (read-after-write lag), bounded (readback.py)."""
    await_read(ctx, read, lambda found: None if found is None else "still present after removal", what)


def _retry_not_found(ctx: Context, fn, what: str):
    """Call fn; NotFound on an object this tool just created means replication lag: retry, bounded."""
    deadline = ctx.now() + ctx.settings.replication_timeout
    pause = _first_pause(ctx)
    while True:
        try:
            return fn()
        except NotFound:
            if ctx.now() >= deadline:
                raise
            ctx.control.check()
            ctx.sleep(pause)
            pause = min(pause * 2, ctx.settings.replication_poll)


def _first_pause(ctx: Context) -> float:
    return first_pause(ctx)


def _owned(ctx: Context, group, found: GroupInfo) -> bool:
    """Ours if the journal claimed this exact name before a create, and the alias matches the plan's."""
    obj = ctx.journal.object("group", group.key)
    if obj is None or obj.state == "removed" or obj.name != group.name:
        return False
    if obj.identity and norm_id(found.guid) and norm_id(obj.identity) != norm_id(found.guid):
        return False
    return not group.alias or norm_id(found.alias) == norm_id(group.alias)


def ensure_group(ctx: Context, group) -> None:
    if group.status == REUSE:
        found = ctx.exo.group(group.dn or group.address or group.name)
        if found is None:
            raise MigratorError(f"reused group {group.name!r} not found")
        ctx.dns[group.key] = found.dn
        return
    obj = ctx.journal.object("group", group.key)
    read = lambda: ctx.exo.group(  # noqa: E731
        (obj.identity if obj and obj.identity else None) or group.address or group.name)
    found = read()
    created_now = False
    if found is None and obj is not None and obj.state == "created":
        found = _wait_visible(ctx, read, f"group {group.name!r}")  # created before, not replicated yet
    if found is None:
        if not ctx.dry_run:
            ctx.journal.claim_object("group", group.key, group.name, ctx.batch,
                                     detail={"alias": group.alias, "address": group.address})
        act = ctx.intent("group", group.key, "create", intent={"name": group.name, "alias": group.alias,
                                                              "address": group.address})
        try:
            found = GroupInfo.from_row(ctx.exo.new_distribution_group(group.name, group.alias, group.address or None))
            created_now = True
        except AlreadyExists:
            found = _wait_visible(ctx, read, f"group {group.name!r}")
        if ctx.dry_run:  # the group was not made: show the writes that follow, addressed by its name
            ctx.dns[group.key] = found.dn
            ctx.exo.set_distribution_group(group.name, HiddenFromAddressListsEnabled=True)
            ensure_members(ctx, group, group.name, fresh=True)
            return
        if not _owned(ctx, group, found):
            raise MigratorError(f"group {group.name!r} already exists and is not this plan's; rename it or re-plan")
        ctx.journal.set_object("group", group.key, "created", identity=found.identity,
                               detail={"alias": group.alias, "dn": found.dn})
        ctx.mark(act, "applied", result={k: found.raw.get(k) for k in ("Name", "Alias", "DistinguishedName", "Guid")})
    elif not _owned(ctx, group, found):
        raise MigratorError(f"group {group.name!r} already exists and is not this plan's; rename it or re-plan")
    else:
        _adopt(ctx, "group", group.key, found.identity)
    identity = found.identity or group.name
    if not found.hidden:
        act = ctx.intent("group", group.key, "hide", prior={"HiddenFromAddressListsEnabled": False})
        _retry_not_found(ctx, lambda: ctx.exo.set_distribution_group(identity, HiddenFromAddressListsEnabled=True),
                         f"group {group.name!r}")
        ctx.mark(act, "applied")
    ensure_members(ctx, group, identity, fresh=created_now)

    def not_yet(back: GroupInfo | None) -> str | None:  # the create and the hiding, as reads show them
        if back is None:
            return "cannot read it back"
        if not back.hidden:
            return "still shown in address lists after hiding it"
        return None if back.dn else "no DistinguishedName read back"

    back = await_read(ctx, lambda: _retry_not_found(ctx, lambda: ctx.exo.group(identity), group.name) or read(),
                      not_yet, f"group {group.name!r}")
    dn = back.dn
    ctx.dns[group.key] = dn
    for op in ("create", "hide", "members"):  # writes a crashed run made but did not get to record as verified
        act = ctx.recorded("group", group.key, op)
        if act is not None and act.status in ("intent", "applied"):
            ctx.mark(act.id, "verified", verification={"dn": dn, "hidden": True, "members": len(group.members)})


def ensure_members(ctx: Context, group, identity: str, *, fresh: bool = False) -> None:
    """Make the direct members exactly the plan's: Update- in chunks of ≤ member_chunk, Add-/Remove- for the rest."""
    want = {norm_id(m) for m in group.members}
    current: set[str] = set() if fresh and ctx.dry_run else {
        m.address for m in _retry_not_found(ctx, lambda: ctx.exo.group_members(identity), group.name)}
    if current == want:
        return
    act = ctx.intent("group", group.key, "members", intent={"count": len(want)}, prior=sorted(current))
    ordered = sorted(want)
    chunk = ctx.settings.member_chunk
    if len(want) <= chunk or not current:
        first = ordered[:chunk]
        _retry_not_found(ctx, lambda: ctx.exo.update_group_members(identity, first), group.name)
        current = set(first) if not ctx.dry_run else current
        rest = [m for m in ordered[chunk:]]
    else:  # `current` may lag behind an earlier run's changes: a member already gone or already there is done
        for extra in sorted(current - want):
            try:
                ctx.exo.remove_group_member(identity, extra)
            except MemberNotFound:
                pass
        rest = sorted(want - current)
    for member in rest:
        try:
            ctx.exo.add_group_member(identity, member)
        except MemberAlreadyExists:
            pass
    if ctx.dry_run:
        return

    def differs(back: set[str]) -> str | None:
        if back == want:
            return None
        lacking, surplus = sorted(want - back), sorted(back - want)
        return f"members differ after the update (missing {lacking[:5]}, extra {surplus[:5]})"

    back = await_read(ctx, lambda: {m.address for m in ctx.exo.group_members(identity)}, differs,
                      f"group {group.name!r}")
    ctx.mark(act, "verified", verification={"members": len(back)})


def step_groups(ctx: Context) -> StepResult:
    failures = ctx.for_each(ctx.view.groups, lambda g: ensure_group(ctx, g), label="Groups",
                            name=lambda g: f"group {g.key} {g.name!r}")
    return StepResult(failures, {"dns": dict(ctx.dns)})


def scope_filter(ctx: Context, scope) -> str:
    try:
        return fill_dns(scope.filter, ctx.dns)
    except KeyError as exc:
        raise MigratorError(f"scope {scope.name!r}: {exc.args[0]}") from None


def ensure_scope(ctx: Context, scope) -> None:
    text = scope_filter(ctx, scope)
    found = ctx.exo.scope(scope.name)
    if found is None:
        if not ctx.dry_run:
            ctx.journal.claim_object("scope", scope.key, scope.name, ctx.batch, detail={"filter": text})
        act = ctx.intent("scope", scope.key, "create", intent={"name": scope.name, "filter": text})
        try:
            ctx.exo.new_management_scope(scope.name, text)
        except AlreadyExists:
            pass
        if ctx.dry_run:
            return
        found = _wait_visible(ctx, lambda: ctx.exo.scope(scope.name), f"scope {scope.name!r}")
        ctx.journal.set_object("scope", scope.key, "created", identity=scope.name)
        ctx.mark(act, "applied", result=found.raw)
    else:
        _adopt(ctx, "scope", scope.key, scope.name)
    got = found.filter
    if normalise_filter(got) != normalise_filter(text):
        raise MigratorError(f"scope {scope.name!r} exists with filter {got!r}, the plan needs {text!r}")
    if found.exclusive:
        raise MigratorError(f"scope {scope.name!r} is Exclusive; exclusive scopes do not restrict apps")
    act = ctx.recorded("scope", scope.key, "create") if not ctx.dry_run else None
    if act is not None and act.status != "verified":
        ctx.mark(act.id, "verified", verification={"filter": got})


def step_scopes(ctx: Context) -> StepResult:
    failures = ctx.for_each(ctx.view.scopes, lambda s: ensure_scope(ctx, s), label="Scopes",
                            name=lambda s: f"scope {s.key} {s.name!r}")
    return StepResult(failures)


def _scope_name(ctx: Context, key: str) -> str:
    return next(s.name for s in ctx.view.scopes if s.key == key)


def _assignment_matches(ctx: Context, a, row: RoleAssignmentInfo) -> bool:
    sp = ctx.sps[norm_id(a.app_id)]
    return (row.assignee in {sp["object_id"], norm_id(a.app_id), norm_id(sp.get("display_name", ""))}
            and norm_id(row.scope) == norm_id(_scope_name(ctx, a.scope))
            and norm_id(row.role) in ("", norm_id(a.role)))


def assignments_by_name(ctx: Context) -> dict[str, RoleAssignmentInfo]:
    """The tenant's assignments of the batch's roles, by name: one read per role (no -App filter exists)."""
    return {row.name: row for role in sorted({a.role for a in ctx.view.assignments})
            for row in ctx.exo.role_assignments(role)}


def step_assignments(ctx: Context) -> StepResult:
    existing = assignments_by_name(ctx)

    def ensure(a) -> None:
        row = existing.get(a.name)
        if row is not None:
            if not _assignment_matches(ctx, a, row):
                raise MigratorError(f"role assignment {a.name!r} exists but differs from the plan: {dict(row.raw)}")
            _adopt(ctx, "assignment", a.key, a.name)
            return
        if not ctx.dry_run:
            ctx.journal.claim_object("assignment", a.key, a.name, ctx.batch)
        act = ctx.intent("assignment", a.key, "create", intent={"name": a.name, "role": a.role, "app": a.app_id,
                                                                "scope": _scope_name(ctx, a.scope)})
        try:
            ctx.exo.new_role_assignment(a.name, a.role, ctx.sps[norm_id(a.app_id)]["object_id"],
                                        _scope_name(ctx, a.scope))
        except AlreadyExists:
            pass
        if not ctx.dry_run:
            ctx.journal.set_object("assignment", a.key, "created", identity=a.name)
            ctx.mark(act, "applied")

    failures = ctx.for_each(ctx.view.assignments, ensure, label="Role assignments",
                            name=lambda a: f"assignment {a.key} {a.name!r}")
    if not failures and not ctx.dry_run:  # verify: one read per role, again until they all show (readback.py)
        def unseen(back: dict[str, RoleAssignmentInfo]) -> list:
            return [a for a in ctx.view.assignments
                    if a.name not in back or not _assignment_matches(ctx, a, back[a.name])]

        back, missing = settle(ctx, lambda: assignments_by_name(ctx), unseen)
        for a in ctx.view.assignments:
            if a in missing:
                failures.append(ItemFailure(f"assignment {a.key} {a.name!r}", "not found as planned "
                                            f"{ctx.settings.replication_timeout:g} s after creation"))
                continue
            act = ctx.recorded("assignment", a.key, "create")
            if act is not None and act.status != "verified":
                ctx.mark(act.id, "verified", verification=back[a.name].raw)
    return StepResult(failures)


def _in_scope(rows: list[AuthorizationResult], role: str) -> bool:
    return any(r.in_scope and norm_id(r.role) == norm_id(role) for r in rows)


def verify_rbac(ctx: Context, label: str, *, size: int | None = None,
                extra: Sequence[tuple[str, Any]] = ()) -> list[ItemFailure]:
    """Test-ServicePrincipalAuthorization: InScope=True for the app's mailboxes (all up to verify_all_up_to, else a
    seeded sample) and InScope=False for out-of-set probes. A negative answer is retried on a bounded schedule.

    `extra`: the step's other read-backs, (item name, check) pairs; a check raises MigratorError when it finds a
    difference. They are independent reads of things set before the step, so they go through the same pool, first,
    instead of a serial tail after the tests."""
    checks: list[tuple[str, str, bool, tuple[str, ...]]] = []  # (app, mailbox, expected, roles)
    universe = sorted({norm_id(g.mailbox) for g in ctx.plan.grants} | {
        norm_id(m) for g in ctx.plan.groups for m in g.members})
    for app_id in ctx.view.apps:
        roles = ctx.view.roles(app_id)  # new assignments and the existing ones the plan reuses
        if not roles:
            continue
        role = sorted(roles)[0]
        want = ctx.view.rbac_mailboxes(app_id)  # its whole SMTP reach: SendAs and FullAccess that carries SMTP
        original = want | ctx.view.app_mailboxes(app_id, migrate_only=False)
        sample = ctx.sample(sorted(want), key=app_id, size=size)
        if len(sample) < len(want):
            ctx.output.info(f"  app {app_id}: testing a random sample of {len(sample)} of {len(want)} mailboxes "
                            f"(seed {ctx.settings.seed})")
        checks += [(app_id, m, True, (role,)) for m in sample]
        outside = [m for m in universe if m not in original]
        probes = ctx.sample(outside, key=f"probe:{app_id}")[: ctx.settings.probes]
        checks += [(app_id, m, False, (role,)) for m in probes]
    if ctx.view.mail_apps:  # Graph/EWS roles: the mail reach in scope, out-of-set probes (any tenant mailbox) not
        mail_universe = sorted(set(universe) | set(mailbox_map(ctx).values()))
        checks += mail_checks(ctx, mail_universe, size)

    def test(check) -> None:
        app_id, mailbox, expected, roles = check
        oid = ctx.sps[app_id]["object_id"]
        for attempt in range(ctx.settings.verify_retries + 1):
            rows = ctx.exo.authorization(oid, mailbox)
            inside = [r for r in roles if _in_scope(rows, r)]
            if (len(inside) == len(roles)) if expected else not inside:
                return
            if not expected:  # an over-grant is never waited out
                break
            ctx.sleep(ctx.settings.verify_retry_delay * (attempt + 1))
        which = inside if not expected else [r for r in roles if r not in inside]
        raise MigratorError(f"app {app_id} {'not ' if expected else ''}in scope for {mailbox} ({', '.join(which)}) "
                            f"(expected InScope={expected})")

    if ctx.dry_run:
        ctx.output.note(f"then test {len(checks)} (app, mailbox) pairs with Test-ServicePrincipalAuthorization "
                        "(reads)")
        return []
    items = [(name, fn) for name, fn in extra] + [(f"app {c[0]} / {c[1]}", c) for c in checks]
    return ctx.for_each(items, lambda item: item[1]() if callable(item[1]) else test(item[1]), label=label,
                        name=lambda item: item[0])


def step_verify(ctx: Context) -> StepResult:
    extra: list[tuple[str, Any]] = []
    if not ctx.dry_run:  # membership and filters read back, alongside the tests

        # A group or scope this tool wrote may still read as it was (read-after-write lag): read again, bounded;
        # a reused group is someone else's, so a difference there fails at once.
        def members_check(group):
            def check() -> None:
                ident = group_identity(ctx, group) if group.status == NEW else (group.dn or group.address)
                want = {norm_id(m) for m in group.members}

                def read() -> set[str]:
                    return {m.address for m in ctx.exo.group_members(ident)}

                if group.status == NEW:
                    differs = bool(settle(ctx, read, lambda got: () if got == want else ("differ",))[1])
                else:
                    differs = read() != want
                if differs:
                    raise MigratorError("members differ from the plan")
            return check

        def filter_check(scope):
            def check() -> None:
                want = normalise_filter(scope_filter(ctx, scope))
                _, differs = settle(ctx, lambda: ctx.exo.scope(scope.name),
                                    lambda found: () if found is not None and normalise_filter(found.filter) == want
                                    else ("differs",))
                if differs:
                    raise MigratorError("missing or filter differs")
            return check

        extra += [(f"group {g.key}", members_check(g)) for g in ctx.view.groups]
        extra += [(f"scope {s.key}", filter_check(s)) for s in ctx.view.scopes]
    return StepResult(verify_rbac(ctx, "Verifying", extra=extra))


def exchange_role(ctx: Context) -> tuple[str, str]:
    """(resource SP id, app role id) of Office 365 Exchange Online's SMTP.SendAsApp."""
    if "smtp_role" not in ctx.cache:
        resource = ctx.graph.resource_service_principal(EXCHANGE_ONLINE_APP_ID)
        role_id = resource.role_id(SMTP_SEND_AS_APP)
        if not role_id:
            raise MigratorError("Office 365 Exchange Online has no SMTP.SendAsApp app role in this tenant")
        ctx.cache["smtp_role"] = (resource.id, role_id)
    return ctx.cache["smtp_role"]


def smtp_assignments(ctx: Context, app_id: str) -> list[AppRoleAssignment]:
    resource_id, role_id = exchange_role(ctx)
    return [r for r in ctx.graph.app_role_assignments(ctx.sps[app_id]["object_id"])
            if r.resource_id == norm_id(resource_id) and r.app_role_id == norm_id(role_id)]


def step_cutover(ctx: Context) -> StepResult:
    """Record, then delete, each app's Entra SMTP.SendAsApp app-role assignment, and each mail app's Entra consents
    of the Graph/EWS permissions its RBAC roles now serve (aap.py); read their absence back (claims.py) before the
    token wait starts, whose length comes from the token lifetime policies read here, before any delete
    (lifetimes.py: the apps', Exchange Online's and, with mail apps, Microsoft Graph's). Then warn about app
    registrations that still request SMTP.SendAsApp.

    The delete goes through the client that may write Entra assignments (entra.py): the run's own, a second
    profile's, or none: then the step hands the deletes over to a privileged admin (a script in the plan folder)
    and the batch stops; the next run finds them gone, reads that back, and goes on."""
    from migrator.executor.claims import check_registrations, confirm_claims
    from migrator.executor.lifetimes import read_token_lifetimes, token_wait

    if not ctx.settings.cutover:
        ctx.output.info("  cut-over disabled (--no-cutover): Entra SMTP.SendAsApp assignments (and Graph/EWS "
                        "consents) left in place")
        return StepResult(detail={"skipped": True})
    pending: list[Pending] = []
    consents: list[PendingConsent] = []
    lock = threading.Lock()
    smtp_apps = list(ctx.view.smtp_apps)

    def hand_over(app_id: str, rows) -> None:
        with lock:
            pending.append(Pending(app_id, ctx.view.app_names.get(app_id, ""), ctx.sps[app_id]["object_id"],
                                   tuple(r.id for r in rows)))

    resource_id, role_id = exchange_role(ctx)  # once, before the pool (each worker would otherwise read it)
    extra_sps = (resource_id, graph_resource_id(ctx)) if ctx.view.mail_apps else (resource_id,)
    lifetimes = read_token_lifetimes(ctx.graph, {a: ctx.sps[a]["object_id"] for a in ctx.view.apps},
                                     extra_sp_ids=extra_sps)
    try:
        wait = token_wait(ctx.settings, lifetimes)  # before any delete: a policy that could not be read stops here
    except MigratorError as exc:
        return StepResult([ItemFailure("token lifetime", str(exc))], {"token_lifetime_policies": lifetimes.to_dict()})
    ctx.output.info(f"  token wait after the cut-over: {wait['seconds']:g} s ({wait['why']}; "
                    f"+{wait['margin']:g} s margin)")

    def cut(app_id: str) -> None:
        rows = smtp_assignments(ctx, app_id)
        if not rows:
            return  # never there, or deleted by an earlier (crashed) run or an admin: the read-back confirms it
        act = ctx.intent("entra_assignment", app_id, "delete", prior=[r.raw for r in rows])
        writer = ctx.entra_client()
        if writer is None:
            return hand_over(app_id, rows)
        for row in rows:
            try:
                writer.delete_app_role_assignment(ctx.sps[app_id]["object_id"], row.id)
            except NotFound:
                pass
            except Forbidden:  # a token the preflight could not read: the tenant said no, so nothing changed
                return hand_over(app_id, rows)
        ctx.mark(act, "applied")

    failures = ctx.for_each(smtp_apps, cut, label="Cut-over", name=lambda a: f"app {a}")
    failures += cut_consents(ctx, consents)
    detail = {"token_wait": wait, "token_lifetime_policies": lifetimes.to_dict()}
    if (pending or consents) and not failures:
        script = cutover_script(ctx.batch, pending, resource_id, role_id, ctx.entra_tenant, consents=consents)
        count, what = handover_subject(pending, consents)
        return StepResult(handover=_hand_over(ctx, "cutover", script, count, "removed", assignment=what),
                          detail=detail)
    if failures or ctx.dry_run:
        return StepResult(failures, detail)
    failures, absent_at = confirm_claims(ctx, smtp_apps, present=False)
    keys = [consent_key(m.app_id, m.permission) for m in ctx.view.mail_access]
    mail_failures, mail_absent_at = confirm_consents(ctx, keys, present=False)
    if failures or mail_failures:
        return StepResult(failures + mail_failures, detail)
    for app_id in smtp_apps:
        done = ctx.recorded("entra_assignment", app_id, "delete")
        if done is not None and done.status != "verified":
            ctx.mark(done.id, "verified", verification={"absent_at": absent_at, "reads": ctx.settings.readbacks})
    verify_cut(ctx, mail_absent_at)
    detail.update(check_registrations(ctx, smtp_apps))
    detail.update(check_mail_registrations(ctx))
    return StepResult([], detail)


def _hand_over(ctx: Context, step: str, script: str, count: int, what: str, *,
               assignment: str = "Entra SMTP.SendAsApp assignment") -> str:
    ctx.output.info(script.rstrip("\n"))
    if ctx.dry_run:
        return handover_message(Path(f"handover-batch-{ctx.batch}-{step}.ps1"), count, what, assignment=assignment)
    path = write_handover(Path(ctx.plan.path), ctx.batch, step, script)
    return handover_message(path, count, what, assignment=assignment)


def step_remove_legacy(ctx: Context) -> StepResult:
    """Remove the batch's migrated legacy grants, each recorded (its full row) before removal; verify by a scan.
    Then the mail apps' access policies (aap.py: only once their fenced consents are read back gone)."""
    policy_failures = remove_policies(ctx)
    if ctx.settings.cutover and not ctx.dry_run:
        # A claim that came back during the token wait (a re-consent) needs the legacy grants: keep them.
        exchange_role(ctx)
        back = [a for a in ctx.view.smtp_apps if smtp_assignments(ctx, a)]
        if back:
            from migrator.executor.claims import claim_back_warning

            return StepResult(policy_failures + [
                ItemFailure(f"app {a}", claim_back_warning(a, ctx.view.app_names.get(a, ""))) for a in back])
    # The prior rows: the preflight's scan of this same invocation when it is recent (nothing in between writes
    # SendAs grants), else a new scan. Either way they are read before the first removal.
    rows = legacy_rows(ctx, max_age=ctx.settings.rescan_after)
    send_as = ctx.view.migrate_grants(Right.SEND_AS)
    full = ctx.view.migrate_grants("FullAccess")

    failures: list[ItemFailure] = []
    chunk = max(100, ctx.settings.concurrency * 50)
    for start in range(0, len(send_as), chunk):
        # One journal transaction records the prior rows of a whole chunk before any of its removals is sent
        # (a transaction per grant costs an fsync each, which would cap the run at ~100 grants/s).
        todo, intents = [], []
        for g in send_as[start:start + chunk]:
            app_id, mailbox = norm_id(g.app_id), norm_id(g.mailbox)
            key = f"{app_id}|{mailbox}"
            present = rows.get((app_id, mailbox), [])
            if present:
                todo.append(g)
                intents.append({"kind": "sendas", "key": key, "op": "remove", "prior": [r.raw for r in present]})
            elif ctx.recorded("sendas", key, "remove") is None:
                failures.append(ItemFailure(f"SendAs {g.app_id} on {g.mailbox}",
                                            "SendAs grant absent but not removed by this tool (drift)"))
            # else: removed by an earlier (crashed) run; its prior state is in the journal
        ids = dict(zip((id(g) for g in todo), ctx.intents(intents)))
        applied: list = []
        lock = threading.Lock()

        # The chunk's ids/applied/lock are bound as defaults: the closure must not see a later chunk's.
        def remove_sendas(g, ids=ids, applied=applied, lock=lock) -> None:
            ctx.exo.remove_recipient_permission(norm_id(g.mailbox), ctx.sps[norm_id(g.app_id)]["object_id"])
            with lock:
                applied.append(ids[id(g)])

        try:
            failures += ctx.for_each(todo, remove_sendas, label="Removing SendAs",
                                     name=lambda g: f"SendAs {g.app_id} on {g.mailbox}")
        finally:  # a stop (Ctrl-C, PAUSE) mid-chunk still records the removals that were answered
            ctx.mark_many(applied, "applied")

    def remove_full(g) -> None:
        app_id, mailbox = norm_id(g.app_id), norm_id(g.mailbox)
        key = f"{app_id}|{mailbox}"
        present = _fullaccess_rows(ctx, app_id, mailbox)
        if not present:
            done = ctx.recorded("fullaccess", key, "remove")
            if done is not None:
                if done.status != "verified":
                    ctx.mark(done.id, "verified")
                return
            raise MigratorError("FullAccess grant absent but not removed by this tool (drift)")
        act = ctx.intent("fullaccess", key, "remove", prior=[r.raw for r in present])
        ctx.exo.remove_mailbox_permission(mailbox, ctx.sps[app_id]["object_id"])
        if not ctx.dry_run:  # read again until the removal shows (read-after-write lag)
            await_read(ctx, lambda: _fullaccess_rows(ctx, app_id, mailbox),
                       lambda rows: "FullAccess grant still present after removal" if rows else None,
                       f"FullAccess {app_id} on {mailbox}")
        ctx.mark(act, "verified")

    failures += ctx.for_each(full, remove_full, label="Removing FullAccess",
                             name=lambda g: f"FullAccess {g.app_id} on {g.mailbox}")
    if not ctx.dry_run:
        already = {f.item for f in failures}
        removed = [g for g in send_as if f"SendAs {g.app_id} on {g.mailbox}" not in already]
        # The check scan, again until every removal shows (read-after-write lag), bounded (readback.py).
        after, _ = settle(ctx, lambda: legacy_rows(ctx, fresh=True),
                          lambda rows: [g for g in removed if (norm_id(g.app_id), norm_id(g.mailbox)) in rows])
        recorded = {a.key: a for a in ctx.journal.actions(batch=ctx.batch, generation=ctx.generation,
                                                          phase=ctx.phase, kind="sendas", op="remove")}
        verified = []
        for g in send_as:
            pair = (norm_id(g.app_id), norm_id(g.mailbox))
            if f"SendAs {g.app_id} on {g.mailbox}" in already:
                continue
            if pair in after:
                failures.append(ItemFailure(f"SendAs {g.app_id} on {g.mailbox}", "still present "
                                            f"{ctx.settings.replication_timeout:g} s after removal"))
            else:
                act = recorded.get(f"{pair[0]}|{pair[1]}")
                if act is not None and act.status != "verified":
                    verified.append(act.id)
        ctx.mark_many(verified, "verified")
    return StepResult(policy_failures + failures)


def step_final_verify(ctx: Context) -> StepResult:
    extra: list[tuple[str, Any]] = []
    if not ctx.dry_run and ctx.settings.cutover:  # the Entra read-backs (Graph) run alongside the tests (Exchange)
        exchange_role(ctx)  # once, before the pool

        def claim_check(app_id):
            def check() -> None:
                if smtp_assignments(ctx, app_id):
                    raise MigratorError("Entra SMTP.SendAsApp assignment is back")
            return check

        extra += [(f"app {app_id}", claim_check(app_id)) for app_id in ctx.view.smtp_apps]
    extra += final_checks(ctx)  # Graph/EWS: no fenced consent back, no removed policy back
    failures = verify_rbac(ctx, "Final verification", size=ctx.settings.final_verify_sample, extra=extra)
    if not ctx.dry_run:
        after = legacy_rows(ctx, max_age=ctx.settings.rescan_after)  # the removal's own check scan, if recent
        for g in ctx.view.migrate_grants(Right.SEND_AS):
            if (norm_id(g.app_id), norm_id(g.mailbox)) in after:
                failures.append(ItemFailure(f"SendAs {g.app_id} on {g.mailbox}", "legacy grant is back"))
    return StepResult(failures)


EXECUTE_STEPS = (
    ("sp_pointers", step_sp_pointers),
    ("groups", step_groups),
    ("scopes", step_scopes),
    ("assignments", step_assignments),
    ("verify", step_verify),
    ("propagation_wait", None),
    ("cutover", step_cutover),
    ("token_wait", None),
    ("remove_legacy", step_remove_legacy),
    ("final_verify", step_final_verify),
)
