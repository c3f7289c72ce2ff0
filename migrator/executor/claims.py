"""The Entra SMTP.SendAsApp claim around a cut-over: reading its absence (or, in a rollback, its presence) back
until Graph has replicated the change, the app registration that still requests it, and a claim that came back.

Graph replicates app-role assignment grants and removals with delay: a read right after a delete may still show
the assignment, or already miss it while the token service still issues tokens with the claim. So the executor
reads the state back `readbacks` times, `readback_spacing` seconds apart, all agreeing, before the token wait starts.

Removing the assignment leaves `SMTP.SendAsApp` in the app registration's `requiredResourceAccess`: whoever later
clicks "Grant admin consent" (for any permission of the app) re-adds the assignment, the claim is back, and with the
legacy grants gone the app is cut off (a claim token needs the legacy grant under the documented rule).
"""

from __future__ import annotations

from collections.abc import Callable

from migrator.errors import MigratorError
from migrator.exchange.errors import ApiError
from migrator.exchange.ratelimit import fan_out
from migrator.executor.context import Context, ItemFailure
from migrator.model import EXCHANGE_ONLINE_APP_ID, SMTP_SEND_AS_APP, norm_id


def confirm_claims(ctx: Context, apps: list[str], *, present: bool) -> tuple[list[ItemFailure], float]:
    """Read each app's SMTP.SendAsApp assignment until `readbacks` reads in a row, `readback_spacing` apart, show
    it `present` (or absent). Returns (failures, time of the last confirming read). Bounded by replication_timeout."""
    from migrator.executor.steps import smtp_assignments

    return confirm_reads(ctx, apps, lambda a: bool(smtp_assignments(ctx, a)), present=present,
                         what=lambda a: "SMTP.SendAsApp assignment", item=lambda a: f"app {a}")


def confirm_reads(ctx: Context, items: list[str], there: Callable[[str], bool], *, present: bool,
                  what: Callable[[str], str], item: Callable[[str], str]) -> tuple[list[ItemFailure], float]:
    """Read `there(item)` until `readbacks` reads in a row, `readback_spacing` apart, answer `present`, for every
    item. Returns (failures, time of the last confirming read). Bounded by replication_timeout."""
    need = max(1, int(ctx.settings.readbacks))
    counts = {a: 0 for a in items}
    deadline = ctx.now() + ctx.settings.replication_timeout
    workers = max(1, min(ctx.settings.concurrency, len(items) or 1))
    while True:
        pending = [a for a in items if counts[a] < need]
        if not pending:
            return [], ctx.now()
        answers = fan_out(there, pending, workers=workers)
        for key, found in zip(pending, answers):
            counts[key] = counts[key] + 1 if found == present else 0
        pending = [a for a in items if counts[a] < need]
        if not pending:
            return [], ctx.now()
        if ctx.now() >= deadline:
            state = "present" if present else "absent"
            return [ItemFailure(item(a), f"{what(a)} not read back {state} {need} times in a row within "
                                         f"{ctx.settings.replication_timeout:g} s") for a in pending], 0.0
        ctx.sleep(ctx.settings.readback_spacing)


def smtp_role_requested(registration: dict, role_id: str) -> bool:
    """The app registration's requiredResourceAccess still lists Exchange Online's SMTP.SendAsApp app role."""
    for entry in registration.get("requiredResourceAccess") or ():
        if norm_id(entry.get("resourceAppId")) != EXCHANGE_ONLINE_APP_ID:
            continue
        for access in entry.get("resourceAccess") or ():
            if norm_id(access.get("id")) == norm_id(role_id) and str(access.get("type", "")).lower() == "role":
                return True
    return False


def registration_fix(app_id: str, role_id: str) -> str:
    """The exact change that stops a later admin consent from re-adding the claim (Microsoft.Graph PowerShell)."""
    return (f"$app = Get-MgApplication -Filter \"appId eq '{app_id}'\"; "
            "$rra = foreach ($r in $app.RequiredResourceAccess) { "
            f"if ($r.ResourceAppId -eq '{EXCHANGE_ONLINE_APP_ID}') {{ "
            f"$r.ResourceAccess = @($r.ResourceAccess | Where-Object {{ $_.Id -ne '{role_id}' }}) }}; "
            "if ($r.ResourceAccess.Count -gt 0) { $r } }; "
            "Update-MgApplication -ApplicationId $app.Id -RequiredResourceAccess @($rra)"
            f"  (Graph: PATCH /applications(appId='{app_id}') with requiredResourceAccess without role {role_id})")


def registration_warning(app_id: str, app_name: str, role_id: str) -> str:
    return (f"app {app_id} ({app_name}): its app registration still requests {SMTP_SEND_AS_APP} "
            "(requiredResourceAccess); a later \"Grant admin consent\" re-adds the claim and, once the legacy grants "
            f"are gone, cuts the app off. Remove the request: {registration_fix(app_id, role_id)}")


def app_registration(ctx: Context, app_id: str) -> dict | None:
    """The app's registration (None: none found), read once per batch context and shared by the SMTP and the
    Graph/EWS checks (a mixed app is read once); raises the read's ApiError to every caller when it failed."""
    cache = ctx.cache.setdefault("registrations", {})
    if app_id not in cache:
        try:
            cache[app_id] = ctx.graph.get_application_by_app_id(app_id)
        except ApiError as exc:
            cache[app_id] = exc
    found = cache[app_id]
    if isinstance(found, ApiError):
        raise found
    return found


def check_registrations(ctx: Context, apps: list[str]) -> dict:
    """After the cut-over: which apps' registrations still request SMTP.SendAsApp. Notes each (with the fix);
    a registration the tool cannot read is noted as such, never taken as clean."""
    from migrator.executor.steps import exchange_role

    _, role_id = exchange_role(ctx)
    requested, unread = [], []
    for app_id in apps:
        name = ctx.view.app_names.get(app_id, "")
        try:
            registration = app_registration(ctx, app_id)
        except ApiError as exc:
            unread.append(app_id)
            _note(ctx, f"app {app_id} ({name}): could not read its app registration ({exc}); check that it no "
                       f"longer requests {SMTP_SEND_AS_APP}")
            continue
        if registration is not None and smtp_role_requested(registration, role_id):
            requested.append(app_id)
            _note(ctx, registration_warning(app_id, name, role_id))
    return {"still_requested": requested, "registration_unread": unread, "smtp_role_id": role_id}


def _note(ctx: Context, text: str) -> None:
    ctx.cache.setdefault("notes", []).append(text)
    ctx.output.info(f"  warning: {text}")


def claims_back(graph, sps: dict[str, str]) -> list[str]:
    """App ids (of `sps`: app id -> SP object id) whose Entra SMTP.SendAsApp assignment is present again."""
    resource = graph.get_resource_service_principal(EXCHANGE_ONLINE_APP_ID)
    role_id = next((r.get("id") for r in resource.get("appRoles") or [] if r.get("value") == SMTP_SEND_AS_APP),
                   None)
    if not role_id:
        raise MigratorError("Office 365 Exchange Online has no SMTP.SendAsApp app role in this tenant")
    back = []
    for app_id, sp_id in sorted(sps.items()):
        rows = graph.list_app_role_assignments(sp_id)
        if any(norm_id(r.get("resourceId")) == norm_id(resource["id"]) and norm_id(r.get("appRoleId")) ==
               norm_id(role_id) for r in rows):
            back.append(app_id)
    return back


def claim_back_warning(app_id: str, app_name: str) -> str:
    return (f"app {app_id} ({app_name}): its Entra {SMTP_SEND_AS_APP} assignment is back (someone granted admin "
            "consent again?): its new tokens carry the claim, which needs the legacy grants (documented claim "
            "rule), and this tool removes them or has removed them. "
            "Delete the assignment again (Remove-MgServicePrincipalAppRoleAssignment) and remove the request from "
            "the app registration, or roll the batch back")
