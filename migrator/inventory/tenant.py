"""The live inventory: read the tenant through the Exchange admin REST endpoint and Graph, then classify the rows
with the same code as the PowerShell-exports path, so both paths give the same inventory folder.

Strategy (cheapest correct reads; EXCHANGE.md §3):
- SendAs: one full scan, `Get-RecipientPermission -ResultSize Unlimited`, filtered client-side. `-Trustee` can
  miss rows for trustees with several SIDs, and one scan costs ceil(rows / 1000) calls, which is fewer than one
  query per service principal as soon as there are more SPs than pages. No per-mailbox queries.
- FullAccess: `Get-EXOMailboxPermission -ResultSize Unlimited`, the cmdlet's documented Default parameter set
  (no identity): every mailbox's rows in ceil(rows / 1000) calls. If the endpoint does not offer that parameter
  set, fall back to one `Get-MailboxPermission -Identity <mailbox>` per mailbox, fanned out under the adaptive
  limiter (correct, but one call per mailbox). A SendAs-restricted shortcut would miss FullAccess-only grants
  (IMAP/POP apps), so it is not used.
- Mailboxes, service principals, groups: one paged listing each; group members: one paged call per group
  (fan-out). App permissions: Graph appRoleAssignments of the SPs that hold grants, 20 per `$batch`.
The independent listings run concurrently; every call shares one AdaptiveLimiter, so the run stays near the
tenant's throttle budget without tripping it, and any failed read stops the inventory (never read as "empty").
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from migrator.exchange.auth import TokenProvider
from migrator.exchange.errors import ApiError, NotFound, short_type
from migrator.exchange.exo import ExchangeClient
from migrator.exchange.graph import GraphClient
from migrator.exchange.http import ApiSession
from migrator.exchange.profile import Profile, load_profile
from migrator.exchange.ratelimit import AdaptiveLimiter, fan_out
from migrator.model import FILTERABLE_ATTRIBUTES

MAILBOX_PROPERTIES = ["Name", "Alias", "DisplayName", "PrimarySmtpAddress", "UserPrincipalName",
                      "ExternalDirectoryObjectId", "Guid", "DistinguishedName", "Identity", "RecipientTypeDetails",
                      "EmailAddresses", *FILTERABLE_ATTRIBUTES]
FULLACCESS_STRATEGIES = ("scan", "per-mailbox")
# Answers meaning "this cmdlet / parameter set is not offered here" (then the fallback applies).
_UNSUPPORTED = {"CommandNotFoundException", "ParameterBindingException"}


@dataclass
class Readings:
    """What the tenant answered, cmdlet by cmdlet, before classification."""

    service_principals: list[dict] = field(default_factory=list)
    mailboxes: list[dict] = field(default_factory=list)
    recipient_permissions: list[dict] = field(default_factory=list)
    mailbox_permissions: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)
    group_members: dict[str, list[dict]] = field(default_factory=dict)  # group key -> member rows
    app_permissions: list[tuple[str, str, str]] = field(default_factory=list)
    fullaccess_strategy: str = ""


class Clients:
    """The tenant clients of one profile, sharing one session, token provider and limiter."""

    def __init__(self, profile: Profile, *, limiter: AdaptiveLimiter | None = None, **session_kw: Any) -> None:
        self.profile = profile
        self.tokens = TokenProvider(profile)
        self.limiter = limiter or AdaptiveLimiter(initial=4, maximum=32)
        self.session = ApiSession(profile, self.tokens, self.limiter, **session_kw)
        self.exo = ExchangeClient(self.session, profile)
        self.graph = GraphClient(self.session, profile)

    def close(self) -> None:
        self.session.close()
        self.tokens.close()


class _Progress:
    """A click progress bar on stderr, advanced from worker threads; silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar = None
        self._lock = threading.Lock()

    def start(self, label: str, length: int) -> None:
        if not self.enabled:
            return
        import click

        self.finish()
        self._bar = click.progressbar(length=max(1, length), label=label, file=sys.stderr, show_pos=True)
        self._bar.__enter__()

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _group_key(row: dict) -> str:
    for key in ("PrimarySmtpAddress", "ExternalDirectoryObjectId", "Guid", "DistinguishedName", "Identity"):
        if row.get(key):
            return str(row[key])
    raise ApiError("Get-DistributionGroup returned a group without any identity", operation="Get-DistributionGroup")


def read_tenant(clients: Clients, *, fullaccess: str = "scan", workers: int = 16, progress: bool = False,
                app_permissions: bool = True) -> Readings:
    """Read everything the inventory needs. Raises a typed ApiError on any failed read."""
    if fullaccess not in FULLACCESS_STRATEGIES:
        raise ValueError(f"fullaccess must be one of {FULLACCESS_STRATEGIES}")
    exo = clients.exo
    out = Readings()
    bar = _Progress(progress)
    try:
        bar.start("Reading the tenant", 5)

        def step(fn: Callable[[], Any]) -> Callable[[], Any]:
            def run():
                result = fn()
                bar.advance()
                return result
            return run

        def scan_fullaccess() -> list[dict] | None:
            if fullaccess != "scan":
                return None
            try:
                return exo.scan_mailbox_permissions()
            except ApiError as exc:
                if isinstance(exc, NotFound) or short_type(exc.exception_type) in _UNSUPPORTED:
                    return None  # the Default parameter set is not offered: per-mailbox fallback below
                raise

        with ThreadPoolExecutor(max_workers=5, thread_name_prefix="migrator-scan") as pool:
            f_sps = pool.submit(step(exo.get_service_principals))
            f_mbx = pool.submit(step(lambda: _get_mailboxes(exo)))
            f_rp = pool.submit(step(exo.scan_recipient_permissions))
            f_mp = pool.submit(step(scan_fullaccess))
            f_grp = pool.submit(step(exo.get_distribution_groups))
            out.service_principals = f_sps.result()
            out.mailboxes = f_mbx.result()
            out.recipient_permissions = f_rp.result()
            scanned = f_mp.result()
            out.groups = f_grp.result()

        if scanned is not None:
            out.mailbox_permissions, out.fullaccess_strategy = scanned, "scan"
        else:
            out.fullaccess_strategy = "per-mailbox"
            idents = [_mailbox_identity(m) for m in out.mailboxes]
            bar.start("Mailbox permissions (per mailbox)", len(idents))
            rows = fan_out(lambda ident: _mailbox_permissions(exo, ident), idents, workers=workers,
                           on_done=lambda _i, _r: bar.advance())
            out.mailbox_permissions = [r for chunk in rows for r in chunk]

        keys = [_group_key(g) for g in out.groups]
        bar.start("Group members", len(keys))
        members = fan_out(exo.get_group_members, keys, workers=workers, on_done=lambda _i, _r: bar.advance())
        out.group_members = dict(zip(keys, members))

        if app_permissions:
            out.app_permissions = read_app_permissions(clients, out.service_principals)
    finally:
        bar.finish()
    return out


def _mailbox_identity(row: dict) -> str:
    for key in ("ExternalDirectoryObjectId", "PrimarySmtpAddress", "Guid", "DistinguishedName"):
        if row.get(key):
            return str(row[key])
    raise ApiError("a mailbox row has no identity", operation="Get-EXOMailbox")


def _mailbox_permissions(exo: ExchangeClient, identity: str) -> list[dict]:
    rows = exo.get_mailbox_permissions(identity)
    for r in rows:  # per-mailbox answers name the mailbox in Identity already; keep what we asked for if not
        r.setdefault("Identity", identity)
    return rows


def _get_mailboxes(exo: ExchangeClient) -> list[dict]:
    try:
        return exo.get_mailboxes(MAILBOX_PROPERTIES)
    except ApiError as exc:
        if short_type(exc.exception_type) in _UNSUPPORTED or isinstance(exc, NotFound):
            return exo.get_mailboxes()
        raise


def read_app_permissions(clients: Clients, sp_rows: list[dict]) -> list[tuple[str, str, str]]:
    """(app_id, resource display name, permission) for every Entra app-role assignment of the Exchange SPs.

    The Exchange ObjectId is the Entra service principal id, so assignments are read directly, 20 SPs per $batch;
    each distinct resource SP is read once to turn appRoleIds into permission names.
    """
    by_object = {}
    for row in sp_rows:
        oid, app = str(row.get("ObjectId") or "").lower(), str(row.get("AppId") or "").lower()
        if oid and app:
            by_object[oid] = app
    if not by_object:
        return []
    assignments = clients.graph.list_app_role_assignments_many(sorted(by_object))
    resource_ids = sorted({a.get("resourceId", "") for rows in assignments.values() for a in rows} - {""})
    resources = clients.graph.batch_get({rid: f"/servicePrincipals/{rid}" for rid in resource_ids},
                                        operation="POST /$batch (servicePrincipals)") if resource_ids else {}
    out: set[tuple[str, str, str]] = set()
    for oid, rows in assignments.items():
        for a in rows:
            res = resources.get(a.get("resourceId", ""), {})
            roles = {str(r.get("id")): r.get("value") or r.get("displayName") for r in res.get("appRoles") or []}
            name = roles.get(str(a.get("appRoleId")))
            if not name:
                continue  # the default-access role (all zeros) or a role the resource no longer lists
            out.add((by_object[oid], res.get("displayName") or a.get("resourceDisplayName") or "", name))
    return sorted(out)


# -------------------------------------------------------------------------------------- building the inventory

def api_summary(clients: Clients) -> dict:
    return {"calls": clients.session.api_calls(), "total": sum(clients.session.calls.values()),
            "retries": sum(clients.session.retries.values()), "limiter": clients.limiter.stats(),
            "tokens_acquired": clients.tokens.acquired}


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# The live rows are classified by the exports path itself: written as the CSV files `Export-Csv` would produce
# (one per cmdlet, into a private temporary folder) and read by inventory_from_exports. So both paths share the
# trustee resolution, the noise classes and the checks, and cannot drift apart.
_EXPORT_FILES = {
    "service_principals": "Get-ServicePrincipal.csv",
    "mailboxes": "Get-EXOMailbox.csv",
    "recipient_permissions": "Get-RecipientPermission.csv",
    "mailbox_permissions": "Get-MailboxPermission.csv",
    "groups": "Get-DistributionGroup.csv",
    "group_members": "Get-DistributionGroupMember.csv",
}
_GROUP_MARKER_COLUMNS = ("GroupType", "MemberJoinRestriction", "MemberDepartRestriction", "ManagedBy")


def _cell(value: Any) -> str:
    """A value as Export-Csv renders it: booleans True/False, lists joined with ', ', None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def _write_export(path: Path, rows: list[dict], *, required: tuple[str, ...] = ()) -> None:
    import csv

    columns: dict[str, str] = {}  # lower -> first spelling seen
    for c in required:
        columns.setdefault(c.lower(), c)
    for row in rows:
        for key in row:
            if not key.startswith("@") and key.lower() not in columns:
                columns[key.lower()] = key
    header = list(columns.values())
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        lowered = [{k.lower(): v for k, v in row.items()} for row in rows]
        for row in lowered:
            writer.writerow([_cell(row.get(c.lower())) for c in header])


def readings_to_exports(readings: Readings, folder: Path) -> None:
    """Write the readings as the PowerShell exports of the same cmdlets (see _EXPORT_FILES)."""
    folder = Path(folder)
    _write_export(folder / _EXPORT_FILES["service_principals"], readings.service_principals,
                  required=("AppId", "ObjectId", "DisplayName"))
    _write_export(folder / _EXPORT_FILES["mailboxes"], readings.mailboxes,
                  required=("PrimarySmtpAddress", "ExternalDirectoryObjectId", "RecipientTypeDetails"))
    _write_export(folder / _EXPORT_FILES["recipient_permissions"], readings.recipient_permissions,
                  required=("Identity", "Trustee", "AccessControlType", "AccessRights", "IsInherited"))
    _write_export(folder / _EXPORT_FILES["mailbox_permissions"], readings.mailbox_permissions,
                  required=("Identity", "User", "AccessRights", "Deny", "IsInherited"))
    if readings.groups:
        _write_export(folder / _EXPORT_FILES["groups"], readings.groups,
                      required=("PrimarySmtpAddress", "DistinguishedName", *_GROUP_MARKER_COLUMNS))
        members = [{"GroupIdentity": key, **{k: v for k, v in m.items() if k.lower() != "groupidentity"}}
                   for key, rows in readings.group_members.items() for m in rows]
        if members:
            _write_export(folder / _EXPORT_FILES["group_members"], members,
                          required=("GroupIdentity", "PrimarySmtpAddress", "RecipientTypeDetails"))


def inventory_from_readings(readings: Readings, profile: Profile, *, api: dict | None = None,
                            allow_unknown_trustees: bool = False):
    """Classify the readings with the exports path; manifest `source: tenant` with the API calls made."""
    import dataclasses
    import tempfile

    from migrator.errors import InputError
    from migrator.inventory.exports import inventory_from_exports

    with tempfile.TemporaryDirectory(prefix="migrator-live-") as tmp:
        readings_to_exports(readings, Path(tmp))
        try:
            inv = inventory_from_exports(Path(tmp), allow_unknown_trustees=allow_unknown_trustees)
        except InputError as exc:  # name the tenant, not a temporary file
            text = str(exc).replace(str(Path(tmp)) + "/", "").replace(str(Path(tmp)), "tenant")
            raise InputError(f"tenant {profile.tenant_id}: {text} (file names are the cmdlets read)") from None
    manifest = dict(inv.manifest)
    manifest["source"] = "tenant"
    manifest["created"] = now_iso()
    manifest["sources"] = [{"tenant_id": profile.tenant_id, "exchange_url": profile.invoke_url,
                            "graph_url": profile.graph_base, "profile": profile.name}]
    manifest["strategy"] = {"sendas": "scan: Get-RecipientPermission -ResultSize Unlimited",
                            "fullaccess": readings.fullaccess_strategy}
    if api is not None:
        manifest["api_calls"] = api.get("calls", {})
        manifest["api"] = {k: v for k, v in api.items() if k != "calls"}
    perms = tuple(sorted(set(readings.app_permissions)))
    known_apps = {sp.app_id for sp in inv.service_principals}
    perms = tuple(p for p in perms if p[0] in known_apps)
    return dataclasses.replace(inv, app_permissions=perms, manifest=manifest)


def live_inventory(profile_path: str | Path, out: Path, *, overwrite: bool = False, progress: bool = True,
                   fullaccess: str = "scan", workers: int = 16, allow_unknown_trustees: bool = False,
                   profile: Profile | None = None):
    """`migrator inventory --profile P --out DIR`: read the tenant, write the inventory folder atomically."""
    from migrator.inventory.store import write_inventory

    profile = profile or load_profile(profile_path)
    clients = Clients(profile)
    started = time.monotonic()
    try:
        readings = read_tenant(clients, fullaccess=fullaccess, workers=workers, progress=progress)
    finally:
        clients.close()
    api = api_summary(clients)
    api["seconds"] = round(time.monotonic() - started, 3)
    inv = inventory_from_readings(readings, profile, api=api, allow_unknown_trustees=allow_unknown_trustees)
    write_inventory(inv, Path(out), overwrite=overwrite)
    return inv
