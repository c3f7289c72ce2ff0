r"""The live inventory: read the tenant through the Exchange admin REST endpoint and Graph, then classify the rows
with the same code as the PowerShell-exports path, so both paths give the same inventory folder.

Strategy (cheapest correct reads; docs/exchange.md §3):
- SendAs: one full scan, `Get-RecipientPermission -ResultSize Unlimited`, filtered client-side (the safe
  default: `-Trustee` can miss rows for trustees with several SIDs). It costs ceil(rows / 1000) calls, fewer than
  one query per service principal as soon as there are more SPs than pages. Per-SP `-Trustee` queries are used
  only to tell apart SPs that share a display name, and only when their answers add up to the scan exactly.
- FullAccess: Get-MailboxPermission is per mailbox in its common parameter set; one call per mailbox is what the
  inventory must avoid. So: a scan, `Get-MailboxPermission -ResultSize Unlimited` with no identity (the cmdlet
  answers every mailbox's rows: the $null-identity hazard, used here on purpose and checked);
  `Get-EXOMailboxPermission -ResultSize Unlimited` first only when the profile enables Get-EXO* names (public
  InvokeCommand clients do not send them; the endpoint most likely refuses them with its 403). A refusal or a
  missing parameter set falls back to one query per mailbox. A SendAs-restricted shortcut would miss
  FullAccess-only grants (IMAP/POP apps), so it is not used.
- Both scans are verified: a stratified sample of mailboxes (some the scan shows rows for, some it shows none
  for) is queried one by one and must match the scan row for row; on a mismatch that right is read with one
  query per mailbox instead (correct, just expensive).
- Mailboxes, service principals, groups: one paged listing each; group members: one paged call per group
  (fan-out). App permissions: Graph appRoleAssignments of the Exchange SPs, 20 per `$batch`.
The independent reads run concurrently, each as soon as what it needs is in (read_tenant); every call goes through
the per-service AdaptiveLimiter, so the run stays within the tenant's throttle budget without tripping it. Pages
of one scan stay sequential (nextLink), so the run is latency-bound: it lasts about as long as its longest scan.
Any failed read stops the whole inventory (never read as "empty"); nothing is written.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.exchange.auth import TokenProvider
from migrator.exchange.errors import ApiError, Forbidden, NotFound
from migrator.exchange.exo import ExchangeClient, is_unsupported
from migrator.exchange.graph import BATCH_MAX, GraphClient
from migrator.exchange.http import ApiSession
from migrator.exchange.profile import Profile, load_profile
from migrator.exchange.ratelimit import AdaptiveLimiter, fan_out
from migrator.model import (
    AAP_PERMISSIONS,
    EXCHANGE_ONLINE_APP_ID,
    EXCHANGE_ONLINE_NAME,
    FILTERABLE_ATTRIBUTES,
    GRAPH_APP_ID,
    GRAPH_NAME,
)

MAILBOX_PROPERTIES = ["Name", "Alias", "DisplayName", "PrimarySmtpAddress", "UserPrincipalName",
                      "ExternalDirectoryObjectId", "Guid", "DistinguishedName", "Identity", "RecipientTypeDetails",
                      "EmailAddresses", *FILTERABLE_ATTRIBUTES]
# $select on the big listings: only what the classification reads (smaller pages, faster scans)
RECIPIENT_PERMISSION_FIELDS = ["Identity", "Trustee", "AccessControlType", "AccessRights", "IsInherited",
                               "InheritanceType"]
MAILBOX_PERMISSION_FIELDS = ["Identity", "User", "AccessRights", "Deny", "IsInherited", "InheritanceType"]
MEMBER_FIELDS = ["Identity", "Name", "DisplayName", "PrimarySmtpAddress", "ExternalDirectoryObjectId",
                 "RecipientType", "RecipientTypeDetails"]
FULLACCESS_STRATEGIES = ("scan", "per-mailbox")


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
    app_permissions_read: bool = False  # False: not read (then the planner does not know the apps' claims)
    access_policies: list[dict] = field(default_factory=list)  # Get-ApplicationAccessPolicy rows
    access_policies_read: bool = False
    mail_permissions: list[dict] = field(default_factory=list)  # AAP-fenced app roles (read_mail_permissions)
    mail_permissions_read: bool = False
    refused: dict[str, str] = field(default_factory=dict)  # optional read -> why the tenant refused it
    role_assignments: list[dict] = field(default_factory=list)  # every Get-ManagementRoleAssignment row
    management_scopes: list[dict] = field(default_factory=list)  # every Get-ManagementScope row
    rbac_read: bool = False  # False: not read (then existing RBAC for Applications is unknown, not "none")
    fullaccess_strategy: str = ""
    checks: dict = field(default_factory=dict)  # how the scans were verified (for the manifest)
    timings: dict = field(default_factory=dict)  # read -> (start, end) seconds; for the benchmark, not the manifest


class Clients:
    """The tenant clients of one profile, sharing one session, token provider and limiter."""

    def __init__(self, profile: Profile, *, limiter: AdaptiveLimiter | None = None, **session_kw: Any) -> None:
        self.profile = profile
        self.tokens = TokenProvider(profile)
        # initial 8: the first moments already have five listings and their follow-ups in flight
        self.limiter = limiter or AdaptiveLimiter(initial=8, maximum=32)
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
        self._bar: Any = None  # click's ProgressBar while a phase runs
        self._lock = threading.Lock()

    def start(self, label: str, length: int) -> None:
        if not self.enabled:
            return
        import click

        self.finish()
        self._bar = click.progressbar(length=max(1, length), label=label, file=sys.stderr, show_pos=True)
        self._bar.__enter__()

    def grow(self, n: int) -> None:
        """More steps than planned (a fan-out whose size is known only now)."""
        if self._bar is not None and n > 0:
            with self._lock:
                self._bar.length += n

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


class _Aborted(Exception):
    """Internal: another read of this inventory failed; stop starting new calls (its error is the one raised)."""


class _Reads:
    """The inventory's independent reads, run concurrently in one small pool.

    Each read is a task; a task needing another's answer waits on its future (the pool has a thread per task, so
    a waiting task never starves the one it waits for). The first failure sets `abort`: tasks and fan-outs not yet
    started stop before sending anything, and that first error is what `run` raises once every thread is done
    (nothing keeps running, or counting calls, after read_tenant returns). Answers are collected by task name,
    never by completion order, so the inventory does not depend on which read finished first."""

    def __init__(self, bar: _Progress) -> None:
        self.abort = threading.Event()
        self.bar = bar
        self.timings: dict[str, tuple[float, float]] = {}
        self._tasks: dict[str, Callable[[], Any]] = {}
        self._futures: dict[str, Future] = {}
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._local = threading.local()  # per task: when its last input arrived (its real start, for timings)
        self._t0 = time.monotonic()

    def add(self, name: str, fn: Callable[[], Any]) -> None:
        self._tasks[name] = fn

    def result(self, name: str) -> Any:
        """Another task's answer (waits for it); raises _Aborted if that task or any other failed."""
        try:
            value = self._futures[name].result()
        except BaseException:
            raise _Aborted(name) from None
        if self.abort.is_set():
            raise _Aborted(name)
        self._local.ready = time.monotonic() - self._t0
        return value

    def guard(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """`fn` for a fan-out: refuses to start once the inventory is aborting."""
        def run(item):
            if self.abort.is_set():
                raise _Aborted(item)
            return fn(item)
        return run

    def _run_one(self, name: str, fn: Callable[[], Any]) -> Any:
        if self.abort.is_set():
            raise _Aborted(name)
        self._local.ready = time.monotonic() - self._t0
        try:
            value = fn()
        except _Aborted:
            raise
        except BaseException as exc:
            with self._lock:
                self._errors.append(exc)
            self.abort.set()
            raise
        self.timings[name] = (round(self._local.ready, 3), round(time.monotonic() - self._t0, 3))
        self.bar.advance()
        return value

    def run(self) -> dict[str, Any]:
        with ThreadPoolExecutor(max_workers=len(self._tasks), thread_name_prefix="migrator-inventory") as pool:
            for name, fn in self._tasks.items():
                self._futures[name] = pool.submit(self._run_one, name, fn)
            try:
                wait(self._futures.values())
            except BaseException:  # Ctrl-C: let the workers stop at their next call instead of reading on
                self.abort.set()
                raise
        if self._errors:
            raise self._errors[0]
        return {name: f.result() for name, f in self._futures.items()}


def read_tenant(clients: Clients, *, fullaccess: str = "scan", workers: int = 16, progress: bool = False,
                app_permissions: bool = True, verify_sample: int = 10, access_policies: bool = True,
                rbac: bool = True) -> Readings:
    """Read everything the inventory needs. Raises a typed ApiError on any failed read.

    The reads run concurrently as soon as what they need is known: the five listings at once; group members
    as soon as the groups are listed; app permissions as soon as the service principals are; each scan's check
    as soon as that scan and the mailboxes are in. Pages of one scan stay sequential (each nextLink comes with
    the previous page), so the run takes about as long as its longest scan."""
    if fullaccess not in FULLACCESS_STRATEGIES:
        raise ValueError(f"fullaccess must be one of {FULLACCESS_STRATEGIES}")
    exo = clients.exo
    bar = _Progress(progress)
    reads = _Reads(bar)

    def check_fullaccess():
        mailboxes, index = reads.result("mailboxes"), reads.result("index")
        return _complete_fullaccess(exo, mailboxes, index, reads.result("fullaccess_scan"), workers=workers,
                                    sample=verify_sample, bar=bar, guard=reads.guard)

    def group_members() -> dict[str, list[dict]]:
        keys = [_group_key(g) for g in reads.result("groups")]
        bar.grow(len(keys))
        members = fan_out(reads.guard(lambda k: exo.get_group_members(k, MEMBER_FIELDS)), keys, workers=workers,
                          on_done=lambda _i, _r: bar.advance())
        return dict(zip(keys, members))

    reads.add("service_principals", exo.get_service_principals)
    reads.add("mailboxes", lambda: _get_mailboxes(exo))
    reads.add("sendas_scan", lambda: exo.scan_recipient_permissions(RECIPIENT_PERMISSION_FIELDS))
    reads.add("fullaccess_scan", lambda: _scan_fullaccess(exo) if fullaccess == "scan" else None)
    reads.add("groups", exo.get_distribution_groups)
    reads.add("index", lambda: _mailbox_index(reads.result("mailboxes")))
    reads.add("fullaccess", check_fullaccess)
    reads.add("sendas", lambda: _check_sendas(exo, reads, bar, verify_sample=verify_sample, workers=workers))
    reads.add("group_members", group_members)
    if rbac:  # existing RBAC for Applications (inventory/rbac.py): two paged listings
        reads.add("role_assignments", exo.scan_role_assignments)
        reads.add("management_scopes", exo.get_management_scopes)
    if app_permissions:
        reads.add("app_permissions", lambda: read_app_permissions(
            clients, reads.result("service_principals"), workers=workers, guard=reads.guard))
    refused: dict[str, str] = {}
    if access_policies:  # Graph/EWS: the policies, and who holds the permissions they fence (mailaccess.py)
        reads.add("access_policies", lambda: _unless_refused(exo.get_application_access_policies,
                                                             "access_policies", refused))
        reads.add("mail_permissions", lambda: _unless_refused(lambda: read_mail_permissions(clients),
                                                              "mail_permissions", refused))
    try:
        bar.start("Reading the tenant", len(reads._tasks))
        done = reads.run()
    finally:
        bar.finish()
    out = Readings()
    out.timings = dict(sorted(reads.timings.items()))
    out.service_principals = done["service_principals"]
    out.mailboxes = done["mailboxes"]
    out.groups = done["groups"]
    out.group_members = done["group_members"]
    out.mailbox_permissions, out.fullaccess_strategy, fa_checks = done["fullaccess"]
    out.recipient_permissions, sa_checks = done["sendas"]
    out.checks = {**fa_checks, **sa_checks}  # a fixed order, whichever check finished first
    out.app_permissions = done.get("app_permissions", [])
    out.app_permissions_read = "app_permissions" in done
    out.access_policies = done.get("access_policies") or []
    out.access_policies_read = done.get("access_policies") is not None
    out.mail_permissions = done.get("mail_permissions") or []
    out.mail_permissions_read = done.get("mail_permissions") is not None
    out.refused = dict(sorted(refused.items()))
    out.role_assignments = done.get("role_assignments", [])
    out.management_scopes = done.get("management_scopes", [])
    out.rbac_read = "role_assignments" in done

    # Rare (SPs sharing a display name while trustees are shown by name): needs both rights' final rows.
    ambiguous = _ambiguous_sp_names(out.service_principals)
    if ambiguous:
        out.checks["ambiguous_sp_names"] = _disambiguate(exo, out, ambiguous, done["index"], workers)
    return out


def _scan_fullaccess(exo: ExchangeClient) -> tuple[list[dict], str] | None:
    """Every FullAccess row in one scan, with the cmdlet that answered; None when no scan form is offered."""
    try:
        return exo.scan_mailbox_permissions_with(MAILBOX_PERMISSION_FIELDS)
    except ApiError as exc:
        if isinstance(exc, NotFound) or is_unsupported(exc):
            return None  # no whole-tenant form here (refused, or no such parameter set): one per mailbox
        raise


def _check_sendas(exo: ExchangeClient, reads: _Reads, bar: _Progress, *, verify_sample: int,
                  workers: int) -> tuple[list[dict], dict]:
    """The SendAs scan, checked against a sample of per-mailbox answers; read per mailbox if they disagree."""
    mailboxes, index, rows = reads.result("mailboxes"), reads.result("index"), reads.result("sendas_scan")
    checks: dict = {}
    try:
        checks["sendas_sample"] = _verify_sample(
            exo.get_recipient_permissions, rows, mailboxes, index, verify_sample, workers, _sendas_key,
            "Get-RecipientPermission", guard=reads.guard)
    except ScanMismatch as exc:  # the scan cannot be trusted here: read SendAs one mailbox at a time
        checks["sendas_scan_rejected"] = f"Get-RecipientPermission: {exc.mailbox} differs"
        bar.grow(len(mailboxes))
        answers = fan_out(reads.guard(lambda m: _one_mailbox(exo.get_recipient_permissions, m, index)),
                          mailboxes, workers=workers, on_done=lambda _i, _r: bar.advance())
        rows = [r for chunk in answers for r in chunk]
    return rows, checks


def _mailbox_identity(row: dict) -> str:
    for key in ("ExternalDirectoryObjectId", "PrimarySmtpAddress", "Guid", "DistinguishedName"):
        if row.get(key):
            return str(row[key])
    raise ApiError("a mailbox row has no identity", operation="Get-Mailbox")


_MAILBOX_NAME_FIELDS = ("PrimarySmtpAddress", "ExternalDirectoryObjectId", "Guid", "Name", "Alias",
                       "DistinguishedName", "Identity", "UserPrincipalName")


def _address(row: dict) -> str:
    return str(row.get("PrimarySmtpAddress") or "").strip().lower()


def _mailbox_index(mailboxes: list[dict]) -> dict[str, set[str]]:
    """Every name a permission row's Identity may use for a mailbox -> the mailbox addresses bearing it."""
    index: dict[str, set[str]] = {}
    for m in mailboxes:
        addr = _address(m)
        for key in _MAILBOX_NAME_FIELDS:
            value = str(m.get(key) or "").strip().lower()
            if value:
                index.setdefault(value, set()).add(addr)
    return index


def _row_mailbox(row: dict, index: dict[str, set[str]]) -> str | None:
    found = index.get(str(row.get("Identity") or "").strip().lower(), set())
    return next(iter(found)) if len(found) == 1 else None


def _fullaccess_key(row: dict) -> tuple:
    rights = row.get("AccessRights")
    rights = tuple(sorted(rights)) if isinstance(rights, list) else (str(rights),)
    return (str(row.get("User") or "").lower(), rights, bool(row.get("Deny")), bool(row.get("IsInherited")))


def _sendas_key(row: dict) -> tuple:
    rights = row.get("AccessRights")
    rights = tuple(sorted(rights)) if isinstance(rights, list) else (str(rights),)
    return (str(row.get("Trustee") or "").lower(), rights, str(row.get("AccessControlType") or "").lower(),
            bool(row.get("IsInherited")))


def _one_mailbox(query: Callable[[str], list[dict]], mailbox: dict, index: dict[str, set[str]]) -> list[dict]:
    """One mailbox's rows. Rows naming another mailbox are dropped: an identity that stopped resolving makes these
    cmdlets answer with every mailbox's rows (the $null-identity hazard), which must not be read as this one's."""
    addr = _address(mailbox)
    rows = query(_mailbox_identity(mailbox))
    return [r for r in rows if _row_mailbox(r, index) == addr]


def _sample(mailboxes: list[dict], k: int) -> list[dict]:
    """A deterministic spread of k mailboxes (every n-th by address)."""
    ordered = sorted(mailboxes, key=_address)
    if k <= 0 or not ordered:
        return []
    step = max(1, len(ordered) // k)
    return ordered[::step][:k]


def _verify_sample(query, scan_rows: list[dict], mailboxes: list[dict], index, k: int, workers: int, key,
                   cmdlet: str, *, guard: Callable = lambda fn: fn) -> dict:
    """Query mailboxes one by one; their rows must equal the scan's rows for them. Raises ScanMismatch.

    The sample is stratified: k mailboxes the scan shows rows for and k it shows none for (a scan that silently
    missed mailboxes shows up in the second half; on a real tenant every mailbox has its SELF row, so the second
    half is usually empty)."""
    by_mailbox: dict[str, list] = {}
    for r in scan_rows:
        by_mailbox.setdefault(_row_mailbox(r, index) or "", []).append(key(r))
    covered = [m for m in mailboxes if _address(m) in by_mailbox]
    uncovered = [m for m in mailboxes if _address(m) not in by_mailbox]
    chosen = _sample(covered, k) + _sample(uncovered, k)
    if not chosen:
        return {"mailboxes": 0}
    answers = fan_out(guard(lambda m: _one_mailbox(query, m, index)), chosen, workers=workers)
    for m, rows in zip(chosen, answers):
        if sorted(map(key, rows)) != sorted(by_mailbox.get(_address(m), [])):
            raise ScanMismatch(cmdlet, _address(m))
    return {"mailboxes": len(chosen), "with_rows": len(covered), "without_rows": len(uncovered), "matched": True}


class ScanMismatch(ApiError):
    """A whole-tenant scan disagrees with the per-mailbox answer for the same mailbox."""

    def __init__(self, cmdlet: str, mailbox: str) -> None:
        super().__init__(f"the full scan and the per-mailbox answer differ for {mailbox}", operation=cmdlet,
                         hint="the scan cannot be trusted on this tenant; rerun with --fullaccess per-mailbox")
        self.mailbox = mailbox


def _complete_fullaccess(exo: ExchangeClient, mailboxes: list[dict], index, scanned, *, workers: int, sample: int,
                         bar: _Progress, guard: Callable = lambda fn: fn) -> tuple[list[dict], str, dict]:
    """The FullAccess rows of every mailbox: the scan, checked and completed, or one query per mailbox."""
    query = exo.get_mailbox_permissions
    checks: dict = {}
    if scanned is not None:
        rows, cmdlet = scanned
        try:
            checks["fullaccess_sample"] = _verify_sample(query, rows, mailboxes, index, sample, workers,
                                                         _fullaccess_key, cmdlet, guard=guard)
        except ScanMismatch as exc:
            checks["fullaccess_scan_rejected"] = f"{cmdlet}: {exc.mailbox} differs"
        else:
            return rows, f"scan:{cmdlet}", checks
    bar.grow(len(mailboxes))
    answers = fan_out(guard(lambda m: _one_mailbox(query, m, index)), mailboxes, workers=workers,
                      on_done=lambda _i, _r: bar.advance())
    return [r for chunk in answers for r in chunk], "per-mailbox", checks


def _ambiguous_sp_names(sp_rows: list[dict]) -> dict[str, list[dict]]:
    """Display names that two or more service principals share (lower case) -> those SPs' rows."""
    by_name: dict[str, list[dict]] = {}
    for row in sp_rows:
        name = str(row.get("DisplayName") or "").strip().lower()
        if name:
            by_name.setdefault(name, []).append(row)
    return {n: rows for n, rows in by_name.items() if len(rows) > 1}


def _disambiguate(exo: ExchangeClient, out: Readings, ambiguous: dict[str, list[dict]], index, workers: int) -> dict:
    """Permission rows whose trustee is a display name two SPs share: ask per SP (by ObjectId) which rows are its
    own, and rewrite those rows' trustee to the ObjectId. Used only when the per-SP answers add up exactly to the
    scan's rows for that name (-Trustee can miss rows: docs/exchange.md §3); else the rows are left as they are and
    the classification stops with an ambiguity error naming them. SendAs: one -Trustee query per SP; FullAccess:
    one -User query per (mailbox, SP) pair, as Get-MailboxPermission needs a mailbox."""
    report: dict = {}

    def split(rows: list[dict], field_: str, key, answers: dict[str, list[dict]]) -> tuple[list[dict], list[str]]:
        unresolved = []
        kept = [r for r in rows if str(r.get(field_) or "").strip().lower() not in ambiguous]
        for name, sps in ambiguous.items():
            mine = [r for r in rows if str(r.get(field_) or "").strip().lower() == name]
            if not mine:
                continue
            scan = collections.Counter((_row_mailbox(r, index), key(r)[1:]) for r in mine)
            per_sp = {sp["ObjectId"]: [r for r in answers.get(sp["ObjectId"], [])
                                       if str(r.get(field_) or "").strip().lower() == name] for sp in sps}
            total = collections.Counter((_row_mailbox(r, index), key(r)[1:]) for rs in per_sp.values() for r in rs)
            if total != scan:
                unresolved.append(name)
                kept.extend(mine)
                continue
            for oid, rs in per_sp.items():
                kept.extend({**r, field_: oid} for r in rs)
        return kept, unresolved

    names_in_sendas = {str(r.get("Trustee") or "").strip().lower() for r in out.recipient_permissions} & set(ambiguous)
    if names_in_sendas:
        sps = [sp for n in names_in_sendas for sp in ambiguous[n]]
        answers = fan_out(lambda sp: exo.get_recipient_permissions_by_trustee(sp["ObjectId"]), sps, workers=workers)
        out.recipient_permissions, unresolved = split(out.recipient_permissions, "Trustee", _sendas_key,
                                                      {sp["ObjectId"]: a for sp, a in zip(sps, answers)})
        report["sendas"] = {"names": sorted(names_in_sendas), "unresolved": unresolved}
    rows_fa = [r for r in out.mailbox_permissions if str(r.get("User") or "").strip().lower() in ambiguous]
    if rows_fa:
        pairs = sorted({(str(r.get("Identity")), sp["ObjectId"]) for r in rows_fa
                        for sp in ambiguous[str(r.get("User")).strip().lower()]})
        answers = fan_out(lambda pair: exo.get_mailbox_permissions(pair[0], user=pair[1]), pairs, workers=workers)
        by_sp: dict[str, list[dict]] = {}
        for (ident, oid), rows in zip(pairs, answers):
            by_sp.setdefault(oid, []).extend(r for r in rows if str(r.get("Identity")) == ident)
        out.mailbox_permissions, unresolved = split(out.mailbox_permissions, "User", _fullaccess_key, by_sp)
        report["fullaccess"] = {"pairs": len(pairs), "unresolved": unresolved}
    return report


def _get_mailboxes(exo: ExchangeClient) -> list[dict]:
    return exo.get_mailboxes(MAILBOX_PROPERTIES)  # falls back from Get-EXOMailbox itself (when enabled)


def read_app_permissions(clients: Clients, sp_rows: list[dict], *, workers: int = 16,
                         guard: Callable = lambda fn: fn) -> list[tuple[str, str, str]]:
    """(app_id, resource display name, permission) for every Entra app-role assignment of the Exchange SPs.

    The Exchange ObjectId is the Entra service principal id, so assignments are read directly, 20 SPs per $batch,
    the batches concurrently (each through the Graph limiter); each distinct resource SP is read once to turn
    appRoleIds into permission names.
    """
    by_object = {}
    for row in sp_rows:
        oid, app = str(row.get("ObjectId") or "").lower(), str(row.get("AppId") or "").lower()
        if oid and app:
            by_object[oid] = app
    if not by_object:
        return []
    ids = sorted(by_object)
    chunks = [ids[i:i + BATCH_MAX] for i in range(0, len(ids), BATCH_MAX)]
    assignments: dict[str, list[dict]] = {}
    for part in fan_out(guard(clients.graph.list_app_role_assignments_many), chunks, workers=workers):
        assignments.update(part)
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


def _unless_refused(read: Callable[[], Any], name: str, refused: dict[str, str]) -> Any:
    """An optional read (the Graph/EWS side: the SMTP migration does not need it): a refusal (403: a role or
    permission the profile lacks) makes it "not read", said in the manifest; any other failure still fails the
    inventory, as a failed read is never "none"."""
    try:
        return read()
    except Forbidden as exc:
        refused[name] = f"refused by the tenant ({type(exc).__name__}): {exc}"
        return None


def read_mail_permissions(clients: Clients) -> list[dict]:
    """Every app holding a permission an Application Access Policy fences (model.AAP_PERMISSIONS), from the two
    resources' appRoleAssignedTo (so apps without an Exchange pointer count too), in the shape of the export
    script's file: PrincipalId, PrincipalAppId, PrincipalDisplayName, PrincipalType, ResourceId,
    ResourceDisplayName, AppRoleId, AppRoleValue. Each principal's appId is read once ($batch)."""
    graph = clients.graph
    found: list[tuple[dict, str, str]] = []
    for name, app_id in ((GRAPH_NAME, GRAPH_APP_ID), (EXCHANGE_ONLINE_NAME, EXCHANGE_ONLINE_APP_ID)):
        resource = graph.get_resource_service_principal(app_id)
        values = {str(r.get("id")): str(r.get("value") or "") for r in resource.get("appRoles") or []}
        for a in graph.list_app_role_assigned_to(str(resource["id"])):
            value = values.get(str(a.get("appRoleId")), "")
            if AAP_PERMISSIONS.get(value, ("",))[0] == name:
                found.append((a, name, value))
    ids = sorted({str(a.get("principalId") or "").lower() for a, _n, _v in found} - {""})
    principals = graph.batch_get({i: f"/servicePrincipals/{i}?$select=id,appId,displayName" for i in ids},
                                 operation="POST /$batch (servicePrincipals)") if ids else {}
    rows = []
    for a, name, value in found:
        pid = str(a.get("principalId") or "").lower()
        principal = principals.get(pid) or {}
        if not principal.get("appId"):
            continue  # the principal is gone (404): its assignment grants nothing
        rows.append({"PrincipalId": pid, "PrincipalAppId": str(principal["appId"]).lower(),
                     "PrincipalDisplayName": principal.get("displayName") or a.get("principalDisplayName") or "",
                     "PrincipalType": a.get("principalType") or "ServicePrincipal",
                     "ResourceId": a.get("resourceId") or "", "ResourceDisplayName": name,
                     "AppRoleId": a.get("appRoleId") or "", "AppRoleValue": value})
    return rows


# -------------------------------------------------------------------------------------- building the inventory

def api_summary(clients: Clients) -> dict:
    return {"calls": clients.session.api_calls(), "total": sum(clients.session.calls.values()),
            "retries": sum(clients.session.retries.values()),
            "retry_kinds": dict(sorted(clients.session.retry_kinds.items())), "limiter": clients.limiter.stats(),
            "limiter_graph": clients.session.limiters["graph"].stats(),
            "tokens_acquired": clients.tokens.acquired}



# The live rows are classified by the exports path itself (exports.build_inventory over psexport.from_records):
# both paths share the trustee resolution, the noise classes and the checks, and cannot drift apart.
def readings_to_files(readings: Readings) -> list:
    """The readings as in-memory 'exports', one per cmdlet (names label rows in error messages)."""
    from migrator.inventory import psexport as px

    files = [
        px.from_records(px.SERVICE_PRINCIPALS, readings.service_principals, "Get-ServicePrincipal"),
        px.from_records(px.MAILBOXES, readings.mailboxes, "Get-Mailbox"),
        px.from_records(px.RECIPIENT_PERMISSIONS, readings.recipient_permissions, "Get-RecipientPermission"),
        px.from_records(px.MAILBOX_PERMISSIONS, readings.mailbox_permissions,
                        readings.fullaccess_strategy.split(":", 1)[-1]
                        if readings.fullaccess_strategy.startswith("scan:") else "Get-MailboxPermission"),
    ]
    if readings.groups:
        files.append(px.from_records(px.GROUPS, readings.groups, "Get-DistributionGroup"))
        members = [{**{k: v for k, v in m.items() if k.lower() != "groupidentity"}, "GroupIdentity": key}
                   for key, rows in readings.group_members.items() for m in rows]
        if members:
            files.append(px.from_records(px.GROUP_MEMBERS, members, "Get-DistributionGroupMember"))
        else:  # groups without members are still known (and empty): say so with a placeholder-free empty file
            files.append(px.ExportFile(Path("Get-DistributionGroupMember"), px.GROUP_MEMBERS, ["GroupIdentity"], []))
    # Read and empty still means "read": an empty file of the kind says so (absent would mean "not read").
    for kind, read, rows, name in ((px.ACCESS_POLICIES, readings.access_policies_read, readings.access_policies,
                                    "Get-ApplicationAccessPolicy"),
                                   (px.APP_ROLE_ASSIGNED_TO, readings.mail_permissions_read,
                                    readings.mail_permissions, "GET /servicePrincipals/{id}/appRoleAssignedTo")):
        if read:
            files.append(px.from_records(kind, rows, name) if rows else
                         px.ExportFile(Path(name), kind, list(px.REQUIRED[kind]), []))
    if readings.rbac_read:
        files.append(px.from_records(px.ROLE_ASSIGNMENTS, readings.role_assignments, "Get-ManagementRoleAssignment"))
        files.append(px.from_records(px.MANAGEMENT_SCOPES, readings.management_scopes, "Get-ManagementScope"))
    return files


def inventory_from_readings(readings: Readings, profile: Profile, *, api: dict | None = None,
                            allow_unknown_trustees: bool = False):
    """Classify the readings with the exports path; manifest `source: tenant` with the API calls made."""
    import dataclasses

    from migrator.inventory.exports import build_inventory

    files = readings_to_files(readings)
    sources = [{"tenant_id": profile.tenant_id, "exchange_url": profile.invoke_url, "graph_url": profile.graph_base,
                "profile": profile.name}]
    sps = {str(r.get("AppId") or "").lower() for r in readings.service_principals}
    perms = tuple(p for p in sorted(set(readings.app_permissions)) if p[0] in sps)
    inv = build_inventory(files, allow_unknown_trustees=allow_unknown_trustees, source="tenant", sources=sources,
                          app_permissions=perms, app_permissions_known=readings.app_permissions_read,
                          where=f"tenant {profile.tenant_id}")
    if readings.refused:  # say why a Graph/EWS part is not read (not "older exports")
        notes = dict(inv.mail_access.notes)
        for name, key in (("access_policies", "why_policies"), ("mail_permissions", "why_permissions")):
            if name in readings.refused:
                notes[key] = readings.refused[name]
        inv = dataclasses.replace(inv, mail_access=dataclasses.replace(inv.mail_access, notes=notes))
    manifest = dict(inv.manifest)
    manifest["access_policies"] = inv.mail_access.manifest()
    fa = readings.fullaccess_strategy
    manifest["strategy"] = {
        "sendas": "scan: Get-RecipientPermission -ResultSize Unlimited",
        "fullaccess": (f"scan: {fa.split(':', 1)[1]} -ResultSize Unlimited" if fa.startswith("scan:")
                       else "per mailbox: Get-MailboxPermission -Identity"),
        "checks": readings.checks,
    }
    if api is not None:
        manifest["api_calls"] = api.get("calls", {})
        manifest["api"] = {k: v for k, v in api.items() if k != "calls"}
    return dataclasses.replace(inv, manifest=manifest)


def live_inventory(profile_path: str | Path, out: Path, *, overwrite: bool = False, progress: bool = True,
                   fullaccess: str = "scan", workers: int = 16, allow_unknown_trustees: bool = False,
                   profile: Profile | None = None, session_options: dict | None = None):
    """`migrator inventory --profile P --out DIR`: read the tenant, write the inventory folder atomically."""
    from migrator.inventory.store import write_inventory

    profile = profile or load_profile(profile_path)
    clients = Clients(profile, **(session_options or {}))  # e.g. backoff_cap, max_attempts (ApiSession)
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
