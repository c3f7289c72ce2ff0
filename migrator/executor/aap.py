"""Graph/EWS access fenced by Application Access Policies, moved to RBAC for Applications (issue 16; docs/exchange.md
§8): the parts of the executor's steps that read and change the apps' Entra consents and their access policies.

An app the plan moves (mail_access.csv) holds Entra application permissions (Graph Mail.Read, EWS
full_access_as_app, ...) fenced by RestrictAccess policies; the batch gives it `Application <permission>` role
assignments on a scope holding exactly the mailboxes its policies reach today (mail_reach.csv). Then, like SMTP:
- cut-over (after the propagation wait): record, then delete the Entra consent of each permission the plan lists
  (journal kind `mail_consent`, key `<app id>|<permission>`, op `delete`, prior the appRoleAssignment rows); read
  its absence back;
- after the token wait: re-read the consents (one that came back keeps the policy), record each policy (kind
  `access_policy`, key its Identity in lower case, op `remove`, prior its Get-ApplicationAccessPolicy row), remove
  it, read its absence back.
A policy never goes while the app holds a fenced consent: Entra consent and RBAC are a union, so the consent
without its policy reaches every mailbox of the tenant (the over-grant this order exists to avoid).
Rollback reverses it: the policies come back first (op `restore`, New-ApplicationAccessPolicy from the recorded
row), the policy-apply wait, then the consents (op `grant`), the token wait, then the RBAC objects go.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from functools import partial

from migrator.errors import MigratorError
from migrator.exchange.errors import AlreadyExists, ApiError, Forbidden, NotFound
from migrator.exchange.interface import AccessPolicyInfo, AppRoleAssignment, text
from migrator.executor.context import Context, ItemFailure
from migrator.executor.entra import PendingConsent
from migrator.executor.readback import await_read
from migrator.model import (
    AAP_PERMISSIONS,
    EXCHANGE_ONLINE_APP_ID,
    EXCHANGE_ONLINE_NAME,
    GRAPH_APP_ID,
    GRAPH_NAME,
    norm_id,
)

CONSENT = "mail_consent"  # journal kind: key `<app id>|<permission>`; op delete (execute), grant (rollback)
POLICY = "access_policy"  # journal kind: key the policy's Identity, lower case; op remove (execute), restore (rollback)
RESOURCE_APP_IDS = {GRAPH_NAME: GRAPH_APP_ID, EXCHANGE_ONLINE_NAME: EXCHANGE_ONLINE_APP_ID}


def consent_key(app_id: str, permission: str) -> str:
    return f"{norm_id(app_id)}|{permission}"


def split_key(key: str) -> tuple[str, str]:
    app_id, permission = key.split("|", 1)
    return app_id, permission


# ---------------------------------------------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------------------------------------------

def resources(ctx: Context) -> dict[str, tuple[str, dict[str, str]]]:
    """Resource name -> (its service principal id, {permission: app role id}) for Microsoft Graph and Office 365
    Exchange Online, read once per run (call it before a thread pool)."""
    shared = ctx.cache.setdefault("shared", {})
    if "mail_resources" not in shared:
        out: dict[str, tuple[str, dict[str, str]]] = {}
        for name, app_id in RESOURCE_APP_IDS.items():
            sp = ctx.graph.resource_service_principal(app_id)
            roles = {value: norm_id(rid) for rid, value in sp.app_roles
                     if value in AAP_PERMISSIONS and AAP_PERMISSIONS[value][0] == name}
            out[name] = (norm_id(sp.id), roles)
        shared["mail_resources"] = out
    return shared["mail_resources"]


def consent_role(ctx: Context, resource: str, permission: str) -> tuple[str, str]:
    """(resource SP id, app role id) of a fenced permission; MigratorError when the tenant has no such role."""
    found = resources(ctx).get(resource)
    if found is None or permission not in found[1]:
        raise MigratorError(f"{resource} has no {permission!r} app role in this tenant")
    return found[0], found[1][permission]


def fenced_consents(ctx: Context, app_id: str) -> dict[str, list[AppRoleAssignment]]:
    """The app's Entra consents of permissions an access policy fences: permission -> its assignment rows. One read;
    a failed read raises (never "none")."""
    by_role = {(sp_id, rid): perm for sp_id, roles in resources(ctx).values() for perm, rid in roles.items()}
    out: dict[str, list[AppRoleAssignment]] = defaultdict(list)
    for row in ctx.graph.app_role_assignments(ctx.sps[app_id]["object_id"]):
        perm = by_role.get((row.resource_id, row.app_role_id))
        if perm is not None:
            out[perm].append(row)
    return dict(out)


def policies_now(ctx: Context) -> dict[str, AccessPolicyInfo]:
    """The tenant's access policies of the batch's mail apps, by journal key (Identity, lower case)."""
    apps = set(ctx.view.mail_apps)
    return {p.key: p for p in ctx.exo.access_policies() if p.app_id in apps}


def _recorded_keys(ctx: Context, kind: str, phase: str, op: str, *, done_only: bool = False) -> set[str]:
    return {a.key for a in ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase=phase, kind=kind,
                                              op=op) if not done_only or a.status in ("applied", "verified")}


# ---------------------------------------------------------------------------------------------------------------
# Preflight: drift
# ---------------------------------------------------------------------------------------------------------------

def mail_drift(ctx: Context, written: set[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """(differences, those about this tool's recent writes) between the tenant and the plan for the batch's mail
    apps: their access policies (one gone, or one added: a DenyAccess, another scope) and their fenced consents
    (one gone, or one added: it would be tenant-wide once the policy goes), minus what this tool changed."""
    view = ctx.view
    if not view.mail_apps:
        return [], []
    diffs: list[str] = []
    own: list[str] = []
    resources(ctx)
    # 1. Access policies
    removed = _recorded_keys(ctx, POLICY, "execute", "remove")
    restored = _recorded_keys(ctx, POLICY, "rollback", "restore", done_only=True)
    expected = {norm_id(p.identity): p for p in view.policies}
    actual = policies_now(ctx)
    for key in sorted(set(expected) - set(actual)):
        if key in removed and key not in restored:
            continue
        p = expected[key]
        diffs.append(f"access policy {p.identity!r} of app {p.app_id} ({view.app_names.get(p.app_id, '')}) "
                     f"({p.access_right} on {p.scope}): not found")
        if (POLICY, key) in written:
            own.append(diffs[-1])
    for key in sorted(set(actual) - set(expected)):
        p2 = actual[key]
        diffs.append(f"access policy {p2.identity!r} of app {p2.app_id} ({view.app_names.get(p2.app_id, '')}) "
                     f"({p2.access_right} on {p2.scope}) added since the plan")
    for key in sorted(set(actual) & set(expected)):
        if actual[key].access_right.lower() != expected[key].access_right.lower():
            diffs.append(f"access policy {expected[key].identity!r}: AccessRight is now {actual[key].access_right}, "
                         f"the plan has {expected[key].access_right}")
    # 2. What the policies reach now (nested groups followed), while they still fence a consent: a member added to
    #    a scope group (or to a group nested in it) since the plan would lose access at the cut-over, a member removed
    #    would gain it through RBAC.
    deleted = _recorded_keys(ctx, CONSENT, "execute", "delete")
    read_groups: dict[str, list[dict] | None] = {}  # a group two apps' policies share is read once
    for app_id in view.mail_apps:
        if any(split_key(k)[0] == app_id for k in deleted) or not view.app_policies(app_id):
            continue  # its consents are going or gone: the policy no longer serves anything
        if any(norm_id(p.identity) not in actual for p in view.app_policies(app_id)):
            continue  # reported above
        now, problem = policy_reach_now(ctx, app_id, read_groups)
        name = view.app_names.get(app_id, "")
        if now is None:
            diffs.append(f"access policies of app {app_id} ({name}): {problem}")
            continue
        planned = view.mail_reach.get(app_id, frozenset())
        for m in sorted(now - planned):
            diffs.append(f"app {app_id} ({name}) now reaches {m} through its access policy (a member added to its "
                         "scope group, or to a group nested in it, since the plan)")
        for m in sorted(planned - now):
            diffs.append(f"app {app_id} ({name}) no longer reaches {m} through its access policy (a member removed "
                         "from its scope group, or from a group nested in it, since the plan)")
    # 3. Fenced consents
    regranted = _recorded_keys(ctx, CONSENT, "rollback", "grant", done_only=True)
    for app_id in view.mail_apps:
        name = view.app_names.get(app_id, "")
        held = set(fenced_consents(ctx, app_id))
        want = {m.permission for m in view.mail_permissions(app_id)}
        for perm in sorted(want - held):
            key = consent_key(app_id, perm)
            if key in deleted and key not in regranted:
                continue
            diffs.append(f"Entra consent {perm} of app {app_id} ({name}): not found (removed since the plan)")
            if (CONSENT, key) in written:
                own.append(diffs[-1])
        for perm in sorted(held - want):
            diffs.append(f"Entra consent {perm} of app {app_id} ({name}) added since the plan: its access policy "
                         "fences it, and once the policy goes it would reach every mailbox")
    return diffs, own


def policy_reach_now(ctx: Context, app_id: str, groups: dict[str, list[dict] | None] | None = None,
                     ) -> tuple[frozenset[str] | None, str]:
    """The mailboxes the app's planned policies reach now, nested groups followed (as Exchange evaluates them; RBAC
    sees direct members only), or (None, why) when a scope cannot be read as a group or a mailbox. Reads only.
    `groups`: member rows read so far in this check (identity -> rows, None: no such group), shared between apps."""
    from migrator.executor.steps import mailbox_map

    groups = {} if groups is None else groups
    mailboxes = set(mailbox_map(ctx).values())
    out: set[str] = set()
    seen: set[str] = set()
    stack = [norm_id(p.scope) for p in ctx.view.app_policies(app_id)]
    while stack:
        ident = stack.pop()
        if not ident or ident in seen:
            continue
        seen.add(ident)
        if ident in mailboxes:  # a policy scoped to a mailbox, or a mailbox member
            out.add(ident)
            continue
        if ident not in groups:
            group = ctx.exo.group(ident)
            groups[ident] = None if group is None else ctx.exo.get_group_members(group.identity or ident)
        rows = groups[ident]
        if rows is None:
            return None, f"scope {ident!r} is neither a group nor a mailbox now"
        for row in rows:
            address = norm_id(text(row, "PrimarySmtpAddress", "WindowsEmailAddress"))
            if "group" in text(row, "RecipientTypeDetails", "RecipientType").lower():
                stack.append(address or norm_id(text(row, "Guid", "DistinguishedName", "Name")))
            elif address in mailboxes:
                out.add(address)
    return frozenset(out), ""


# ---------------------------------------------------------------------------------------------------------------
# Verify
# ---------------------------------------------------------------------------------------------------------------

def mail_checks(ctx: Context, universe: list[str], size: int | None) -> list[tuple[str, str, bool, tuple[str, ...]]]:
    """Test-ServicePrincipalAuthorization checks of the batch's mail apps: every graph-ews role InScope for the
    app's mail reach (all, or a seeded sample), none for out-of-set probes (mailboxes its policies do not reach)."""
    checks: list[tuple[str, str, bool, tuple[str, ...]]] = []
    for app_id in ctx.view.mail_apps:
        roles = tuple(sorted(ctx.view.mail_roles(app_id)))
        if not roles:
            continue
        want = ctx.view.mail_reach.get(app_id, frozenset())
        sample = ctx.sample(sorted(want), key=f"mail:{app_id}", size=size)
        if len(sample) < len(want):
            ctx.output.info(f"  app {app_id}: testing a random sample of {len(sample)} of {len(want)} mailboxes "
                            f"of its mail reach (seed {ctx.settings.seed})")
        checks += [(app_id, m, True, roles) for m in sample]
        outside = [m for m in universe if m not in want]
        checks += [(app_id, m, False, roles) for m in ctx.sample(outside, key=f"mailprobe:{app_id}")
                   [: ctx.settings.probes]]
    return checks


# ---------------------------------------------------------------------------------------------------------------
# Cut-over: delete the consents
# ---------------------------------------------------------------------------------------------------------------

def cut_consents(ctx: Context, pending: list[PendingConsent]) -> list[ItemFailure]:
    """Record, then delete, each mail app's consents of the permissions the plan lists. A consent no writer may
    delete (entra.py) is added to `pending` (a handover); the caller writes the script."""
    if not ctx.view.mail_apps:
        return []
    resources(ctx)  # once, before the pool
    lock = threading.Lock()

    def cut(app_id: str) -> None:
        held = fenced_consents(ctx, app_id)
        name = ctx.view.app_names.get(app_id, "")
        sp_id = ctx.sps[app_id]["object_id"]
        for m in ctx.view.mail_permissions(app_id):
            rows = held.get(m.permission, [])
            if not rows:
                continue  # never there, or deleted by an earlier (crashed) run or an admin: the read-back confirms
            resource_id, role_id = consent_role(ctx, m.resource, m.permission)
            act = ctx.intent(CONSENT, consent_key(app_id, m.permission), "delete", prior=[r.raw for r in rows])
            change = PendingConsent(app_id, name, sp_id, m.permission, resource_id, role_id, tuple(r.id for r in rows))
            writer = ctx.entra_client()
            if writer is None:
                with lock:
                    pending.append(change)
                continue
            try:
                for row in rows:
                    try:
                        writer.delete_app_role_assignment(sp_id, row.id)
                    except NotFound:
                        pass
            except Forbidden:  # a token the preflight could not read: the tenant said no, so nothing changed
                with lock:
                    pending.append(change)
                continue
            ctx.mark(act, "applied")

    return ctx.for_each(ctx.view.mail_apps, cut, label="Cut-over (Graph/EWS consents)", name=lambda a: f"app {a}")


def confirm_consents(ctx: Context, keys: list[str], *, present: bool) -> tuple[list[ItemFailure], float]:
    """Read each `<app>|<permission>` consent back until `readbacks` reads in a row, `readback_spacing` apart, show
    it present (or absent); bounded by replication_timeout (claims.confirm_reads)."""
    from migrator.executor.claims import confirm_reads

    def there(key: str) -> bool:
        app_id, perm = split_key(key)
        return bool(fenced_consents(ctx, app_id).get(perm))

    return confirm_reads(ctx, keys, there, present=present, what=lambda k: f"Entra consent {split_key(k)[1]}",
                         item=lambda k: f"app {split_key(k)[0]}")


def verify_cut(ctx: Context, absent_at: float) -> None:
    for m in ctx.view.mail_access:
        done = ctx.recorded(CONSENT, consent_key(m.app_id, m.permission), "delete")
        if done is not None and done.status != "verified":
            ctx.mark(done.id, "verified", verification={"absent_at": absent_at, "reads": ctx.settings.readbacks})


def check_mail_registrations(ctx: Context) -> dict:
    """After the cut-over: which mail apps' registrations still request a fenced permission the batch removed
    (requiredResourceAccess). A later "Grant admin consent" re-adds the consent, and once the policy is gone the app
    reaches every mailbox: each is noted with the fix; a registration that cannot be read is noted as such."""
    from migrator.executor.claims import _note, app_registration

    requested: dict[str, list[str]] = {}
    unread: list[str] = []
    for app_id in ctx.view.mail_apps:
        name = ctx.view.app_names.get(app_id, "")
        try:
            registration = app_registration(ctx, app_id)
        except ApiError as exc:
            unread.append(app_id)
            _note(ctx, f"app {app_id} ({name}): could not read its app registration ({exc}); check that it no "
                       f"longer requests {', '.join(m.permission for m in ctx.view.mail_permissions(app_id))}")
            continue
        wanted = {(norm_id(RESOURCE_APP_IDS[m.resource]), consent_role(ctx, m.resource, m.permission)[1]): m.permission
                  for m in ctx.view.mail_permissions(app_id)}
        perms = sorted({wanted[(norm_id(entry.get("resourceAppId")), norm_id(access.get("id")))]
                        for entry in (registration or {}).get("requiredResourceAccess") or ()
                        for access in entry.get("resourceAccess") or ()
                        if str(access.get("type", "")).lower() == "role"
                        and (norm_id(entry.get("resourceAppId")), norm_id(access.get("id"))) in wanted})
        if perms:
            requested[app_id] = perms
            _note(ctx, mail_registration_warning(app_id, name, perms))
    return {"mail_still_requested": requested, "mail_registration_unread": unread}


def mail_registration_warning(app_id: str, app_name: str, permissions: list[str]) -> str:
    return (f"app {app_id} ({app_name}): its app registration still requests {', '.join(permissions)} "
            "(requiredResourceAccess); a later \"Grant admin consent\" re-adds the consent, and once its access "
            "policy is gone the app reaches EVERY mailbox with it. Remove them from the registration's API "
            "permissions (Entra admin center: App registrations > the app > API permissions > Remove permission; or "
            "Update-MgApplication -RequiredResourceAccess without them)")


def consent_back_warning(app_id: str, app_name: str, permissions: list[str]) -> str:
    return (f"app {app_id} ({app_name}): Entra consent of {', '.join(permissions)} is present again (someone granted "
            "admin consent again?); its access policy stays, since without it the consent reaches every mailbox. "
            "Delete the consent again (Remove-MgServicePrincipalAppRoleAssignment) and remove the permission from "
            "the app registration, then run the same command again, or roll the batch back")


# ---------------------------------------------------------------------------------------------------------------
# Legacy removal: the access policies
# ---------------------------------------------------------------------------------------------------------------

def remove_policies(ctx: Context) -> list[ItemFailure]:
    """After the token wait: per mail app, re-read its fenced consents (any present: the policy stays, the item
    fails), then record and remove each of its policies, reading each one's absence back."""
    view = ctx.view
    if not view.mail_apps:
        return []
    if not ctx.settings.cutover:
        ctx.output.info("  access policies left in place: the Graph/EWS consents were not removed (--no-cutover)")
        return []
    resources(ctx)
    now = policies_now(ctx)

    def read(key: str) -> AccessPolicyInfo | None:
        return next((p for p in ctx.exo.access_policies() if p.key == key), None)

    def one(app_id: str) -> None:
        name = view.app_names.get(app_id, "")
        if not ctx.dry_run:  # a dry run deleted no consent: they are all still there
            held = fenced_consents(ctx, app_id)
            if held:
                raise MigratorError(consent_back_warning(app_id, name, sorted(held)))
        for pol in view.app_policies(app_id):
            key = norm_id(pol.identity)
            found = now.get(key)
            if found is None:
                done = ctx.recorded(POLICY, key, "remove")
                if done is None:
                    raise MigratorError(f"access policy {pol.identity!r}: absent but not removed by this tool (drift)")
                if done.status != "verified":
                    ctx.mark(done.id, "verified")
                continue
            act = ctx.intent(POLICY, key, "remove", prior=dict(found.raw),
                             intent={"app_id": app_id, "scope": pol.scope, "access_right": found.access_right,
                                     "description": found.description})
            try:
                ctx.exo.remove_application_access_policy(found.identity)
            except NotFound:
                pass  # removed by an earlier run whose answer was lost, read back before it replicated
            if not ctx.dry_run:
                await_read(ctx, partial(read, key),
                           lambda p: None if p is None else "still present after removal",
                           f"access policy {found.identity!r}")
            ctx.mark(act, "verified")

    return ctx.for_each(view.mail_apps, one, label="Removing access policies", name=lambda a: f"app {a}")


def final_checks(ctx: Context) -> list[tuple[str, object]]:
    """Final verification's reads beside the tests: no fenced consent is back, no policy of the plan is back."""
    view = ctx.view
    if not view.mail_apps or ctx.dry_run or not ctx.settings.cutover:
        return []
    resources(ctx)

    def check(app_id: str):
        def run() -> None:
            held = fenced_consents(ctx, app_id)
            if held:
                raise MigratorError(consent_back_warning(app_id, view.app_names.get(app_id, ""), sorted(held))
                                    .replace("its access policy stays, since without it", "with its policy gone"))
            now = {p.key for p in ctx.exo.access_policies() if p.app_id == app_id}
            back = [p.identity for p in view.app_policies(app_id) if norm_id(p.identity) in now]
            if back:
                raise MigratorError(f"access policy {back[0]!r} is back")
        return run

    return [(f"app {a} (Graph/EWS)", check(a)) for a in view.mail_apps]


# ---------------------------------------------------------------------------------------------------------------
# Rollback
# ---------------------------------------------------------------------------------------------------------------

def restore_policies(ctx: Context) -> list[ItemFailure]:
    """Re-create every access policy the batch removed, from its recorded row (AppId, scope, AccessRight,
    Description), and read it back."""
    removed = ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase="execute", kind=POLICY,
                                  op="remove")
    if not removed:
        return []

    def read(key: str) -> AccessPolicyInfo | None:
        return next((p for p in ctx.exo.access_policies() if p.key == key), None)

    present = {p.key for p in ctx.exo.access_policies()}

    def restore(action) -> None:
        prior = action.prior if isinstance(action.prior, dict) else {}
        intent = action.intent if isinstance(action.intent, dict) else {}
        if action.key in present:
            done = ctx.recorded(POLICY, action.key, "restore")
            if done is not None and done.status != "verified":
                ctx.mark(done.id, "verified")
            return  # never removed (the run stopped before the call) or already restored
        app_id = str(prior.get("AppId") or intent.get("app_id") or "")
        scope = str(intent.get("scope") or prior.get("ScopeName") or prior.get("ScopeIdentity") or "")
        right = str(prior.get("AccessRight") or intent.get("access_right") or "")
        description = prior.get("Description")
        description = description if isinstance(description, str) else " "
        if not (app_id and scope and right):
            raise MigratorError(f"cannot restore access policy {action.key!r}: its recorded row lacks the AppId, "
                                "scope or AccessRight")
        act = ctx.intent(POLICY, action.key, "restore", intent={"restore": prior, "scope": scope}, prior=[])
        try:
            ctx.exo.new_application_access_policy(app_id, scope, right, description)
        except AlreadyExists:
            pass  # created by a run whose answer was lost
        if ctx.dry_run:
            return
        back = await_read(ctx, lambda: read(action.key),
                          lambda p: "not present after restoring it" if p is None else None,
                          f"access policy {action.key!r}")
        assert back is not None  # await_read returns only once the problem is gone
        if back.access_right.lower() != right.lower() or back.app_id != norm_id(app_id):
            raise MigratorError(f"access policy {back.identity!r} restored as {back.access_right} for app "
                                f"{back.app_id}, recorded as {right} for app {app_id}")
        ctx.mark(act, "verified", verification=dict(back.raw))

    return ctx.for_each(removed, restore, label="Restoring access policies", name=lambda a: f"access policy {a.key}")


def regrant_consents(ctx: Context, pending: list[PendingConsent]) -> tuple[list[ItemFailure], list[str]]:
    """Grant back every consent the cut-over deleted (after the restored policies apply: grants_wait). Returns
    (failures, the keys granted or found present); a consent no writer may grant goes to `pending`."""
    cut = ctx.journal.actions(batch=ctx.batch, generation=ctx.generation, phase="execute", kind=CONSENT, op="delete")
    if not cut:
        return [], []
    resources(ctx)
    names = {m.app_id: m for m in ctx.view.mail_access}
    lock = threading.Lock()
    keys = [a.key for a in cut if split_key(a.key)[0] in ctx.sps]

    def resource_of(app_id: str, perm: str) -> str:
        row = next((m for m in ctx.view.mail_access if norm_id(m.app_id) == app_id and m.permission == perm), None)
        return row.resource if row is not None else AAP_PERMISSIONS[perm][0]

    def regrant(action) -> None:
        app_id, perm = split_key(action.key)
        if app_id not in ctx.sps:
            raise MigratorError(f"cannot re-grant {perm}: the service principal of app {app_id} is gone")
        resource_id, role_id = consent_role(ctx, resource_of(app_id, perm), perm)
        if fenced_consents(ctx, app_id).get(perm):
            act = ctx.recorded(CONSENT, action.key, "grant")
            if act is not None and act.status != "verified":  # granted by a privileged admin (a handover)
                ctx.mark(act.id, "verified", verification={"present_at": ctx.now()})
            return
        act = ctx.intent(CONSENT, action.key, "grant", intent={"resourceId": resource_id, "appRoleId": role_id},
                         prior=[])
        sp_id = ctx.sps[app_id]["object_id"]
        name = ctx.view.app_names.get(app_id, "") or getattr(names.get(app_id), "app_name", "")
        change = PendingConsent(app_id, name, sp_id, perm, resource_id, role_id)
        writer = ctx.entra_client()
        if writer is None:
            with lock:
                pending.append(change)
            return
        try:
            row = writer.grant_app_role(sp_id, resource_id, role_id)
        except Forbidden:
            with lock:
                pending.append(change)
            return
        except ApiError as exc:  # granted by a run whose answer was lost, read back before Graph replicated
            if exc.status != 400 or "already exists" not in str(exc).lower():
                raise
            row = None
        if not ctx.dry_run:
            ctx.mark(act, "applied", result=row)

    failures = ctx.for_each(cut, regrant, label="Re-granting Graph/EWS consents", name=lambda a: f"consent {a.key}")
    return failures, keys


def verify_regrant(ctx: Context, keys: list[str], present_at: float) -> None:
    for key in keys:
        act = ctx.recorded(CONSENT, key, "grant")
        if act is not None and act.status != "verified":
            ctx.mark(act.id, "verified", verification={"present_at": present_at, "reads": ctx.settings.readbacks})


def consents_back(graph, sps: dict[str, str]) -> dict[str, list[str]]:
    """App ids (of `sps`: app id -> SP object id) whose Entra consent of a fenced permission is present again, with
    those permissions. Reads Graph (the two resources' app roles, then each app's assignments)."""
    by_role: dict[tuple[str, str], str] = {}
    for name, app_id in RESOURCE_APP_IDS.items():
        sp = graph.resource_service_principal(app_id)
        by_role.update({(norm_id(sp.id), norm_id(rid)): value for rid, value in sp.app_roles
                        if value in AAP_PERMISSIONS and AAP_PERMISSIONS[value][0] == name})
    out: dict[str, list[str]] = {}
    for app_id, sp_id in sorted(sps.items()):
        held = sorted({by_role[(r.resource_id, r.app_role_id)] for r in graph.app_role_assignments(sp_id)
                       if (r.resource_id, r.app_role_id) in by_role})
        if held:
            out[app_id] = held
    return out


def consent_back_after_warning(app_id: str, app_name: str, permissions: list[str]) -> str:
    """A done batch's app whose fenced consent came back: with its policy removed, it reaches every mailbox."""
    return (f"app {app_id} ({app_name}): Entra consent of {', '.join(permissions)} is back (someone granted admin "
            "consent again?) and its Application Access Policy was removed by this tool: the app reaches EVERY "
            "mailbox with it. Delete the consent now (Remove-MgServicePrincipalAppRoleAssignment) and remove the "
            "permission from the app registration, or roll the batch back")


def graph_resource_id(ctx: Context) -> str:
    """Microsoft Graph's service principal id: its token lifetime policy counts for the mail apps' tokens."""
    return resources(ctx)[GRAPH_NAME][0]
