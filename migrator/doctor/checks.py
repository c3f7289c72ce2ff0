"""The checks of `migrator doctor`, each a read-only look at one assumption the tool makes about the tenant.

Every check returns a Finding; a read that fails is "cannot tell", never taken as a yes or a no. Nothing here
writes to the tenant.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from migrator.doctor.findings import CANNOT_TELL, DIFFERS, VERIFIED, Finding
from migrator.exchange.errors import ApiError, CmdletRefused, NotFound
from migrator.exchange.interface import MailboxRef, rights, text, truthy
from migrator.model import EXCHANGE_ONLINE_APP_ID, GRAPH_APP_ID, RBAC_ROLE_SMTP_SEND_AS, SMTP_SEND_AS_APP, norm_id
from migrator.planner.plan import KIND_SMTP

# Cmdlets the default read and write path sends through InvokeCommand (reads probed here; the writes are covered by
# the admin's role, checked from its token), and the Get-EXO* names no public client sends that way.
REQUIRED_READS = ("Get-Mailbox", "Get-MailboxPermission", "Get-RecipientPermission", "Get-ServicePrincipal",
                  "Get-DistributionGroup", "Get-ManagementScope", "Get-ManagementRoleAssignment",
                  "Get-ManagementRole", "Test-ServicePrincipalAuthorization")
EXO_READS = ("Get-EXOMailbox", "Get-EXOMailboxPermission")
WRITE_ROLE_IDS = {"62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
                  "29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator"}
GRAPH_READ = {"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"}
GRAPH_WRITE = {"AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All"}
POLICY_READ = {"Policy.Read.All", "Policy.ReadWrite.ApplicationConfiguration"}


@dataclass
class Probe:
    """What the checks share: the clients, the plan (or None) and reads made once."""

    conn: Any
    plan: Any = None
    sample: int = 5
    seed: int = 0
    token_lifetime: float | None = None  # stated by the user (--token-lifetime): an unreadable policy is no block
    cutover: bool = True
    cache: dict = field(default_factory=dict)

    @property
    def exo(self):
        return self.conn.exo

    @property
    def graph(self):
        return self.conn.graph

    def once(self, key: str, fn):
        if key not in self.cache:
            self.cache[key] = fn()
        return self.cache[key]

    def mailboxes(self) -> list[MailboxRef]:
        return self.once("mailboxes", lambda: [MailboxRef.from_row(r) for r in self.exo.get_mailboxes()])

    def mailbox_names(self) -> dict[str, str]:
        def build() -> dict[str, str]:
            out: dict[str, str] = {}
            for mb in self.mailboxes():
                for name in mb.names:
                    out.setdefault(name, mb.address)
            return out
        return self.once("mailbox_names", build)

    def plan_apps(self) -> list[str]:
        return sorted({norm_id(a) for b in self.plan.batches for a in b.apps}) if self.plan is not None else []

    def entra_sp(self, app_id: str) -> dict | None:
        return self.once(f"sp:{app_id}", lambda: self.graph.get_service_principal_by_app_id(app_id))

    def smtp_role(self) -> tuple[str, str]:
        def read() -> tuple[str, str]:
            resource = self.graph.get_resource_service_principal(EXCHANGE_ONLINE_APP_ID)
            role = next((r.get("id") for r in resource.get("appRoles") or [] if r.get("value") == SMTP_SEND_AS_APP),
                        "")
            return resource["id"], role
        return self.once("smtp_role", read)

    def has_claim(self, app_id: str) -> bool:
        resource_id, role_id = self.smtp_role()
        sp = self.entra_sp(app_id)
        if not sp:
            return False
        return any(norm_id(r.get("resourceId")) == norm_id(resource_id) and norm_id(r.get("appRoleId")) ==
                   norm_id(role_id) for r in self.graph.list_app_role_assignments(sp["id"]))

    def any_mailbox(self) -> str:
        if self.plan is not None and self.plan.grants:
            return norm_id(self.plan.grants[0].mailbox)
        boxes = self.mailboxes()
        return boxes[0].address if boxes else ""


def _claims(token: str) -> dict:
    import jwt

    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}


# ---- 1. cmdlets ------------------------------------------------------------------------------------------------
def check_cmdlets(p: Probe) -> Finding:
    mailbox = p.any_mailbox()
    assumption = ("InvokeCommand accepts the read cmdlets the tool sends (Get-Mailbox, Get-MailboxPermission, "
                  "Get-RecipientPermission, ...) and the Get-EXO* names as well")
    if not mailbox:
        return Finding("cmdlets", assumption, CANNOT_TELL, "the tenant lists no mailbox to probe the cmdlets with")
    sp_oid = next((norm_id(text(s, "id")) for s in (p.entra_sp(a) for a in p.plan_apps()) if s), "")
    pointers = p.once("pointers", p.exo.get_service_principals)
    sp_ident = sp_oid or (text(pointers[0], "ObjectId", "Identity") if pointers else "")
    params = {"Get-Mailbox": {"Identity": mailbox}, "Get-EXOMailbox": {"Identity": mailbox},
              "Get-MailboxPermission": {"Identity": mailbox}, "Get-EXOMailboxPermission": {"Identity": mailbox},
              "Get-RecipientPermission": {"Identity": mailbox}, "Get-ServicePrincipal": {},
              "Get-DistributionGroup": {"Identity": mailbox}, "Get-ManagementScope": {},
              "Get-ManagementRoleAssignment": {"Role": RBAC_ROLE_SMTP_SEND_AS},
              "Get-ManagementRole": {"Identity": RBAC_ROLE_SMTP_SEND_AS},
              "Test-ServicePrincipalAuthorization": {"Identity": sp_ident} if sp_ident else None}
    answers: dict[str, str] = {}
    for cmdlet in REQUIRED_READS + EXO_READS:
        args = params[cmdlet]
        if args is None:
            answers[cmdlet] = "not probed (no service principal to name)"
            continue
        try:
            p.exo.invoke(cmdlet, args, scan=not args)
            answers[cmdlet] = "accepted"
        except NotFound:
            answers[cmdlet] = "accepted"  # it ran and said "no such object"
        except CmdletRefused:
            answers[cmdlet] = "refused"
        except ApiError as exc:
            answers[cmdlet] = f"error: {exc}"
    refused_required = [c for c in REQUIRED_READS if answers[c] == "refused"]
    unknown = [c for c in REQUIRED_READS + EXO_READS if answers[c] not in ("accepted", "refused")]
    exo_refused = [c for c in EXO_READS if answers[c] == "refused"]
    data = {"answers": answers, "exo_cmdlets": not exo_refused and not any(c in unknown for c in EXO_READS)}
    if refused_required:
        return Finding("cmdlets", assumption, DIFFERS, f"refused: {', '.join(refused_required)}",
                       "stop: the migrator app's Exchange role must include these cmdlets (Exchange Administrator)",
                       blocking=True, data=data)
    if unknown:
        return Finding("cmdlets", assumption, CANNOT_TELL, "; ".join(f"{c}: {answers[c]}" for c in unknown),
                       "read with the classic names (Get-Mailbox, Get-MailboxPermission); rerun doctor", data=data)
    if exo_refused:
        return Finding("cmdlets", assumption, DIFFERS, f"the classic cmdlets are accepted; refused: "
                       f"{', '.join(exo_refused)}",
                       "read with Get-Mailbox, Get-MailboxPermission and Get-RecipientPermission only (its default); "
                       "Get-EXO* names stay off", data=data)
    return Finding("cmdlets", assumption, VERIFIED, f"all {len(answers)} read cmdlets accepted, Get-EXO* included",
                   data=data)


# ---- 2. how permission rows name a service principal -----------------------------------------------------------
NAME_KINDS = ("pointer DisplayName", "pointer Name", "pointer Identity", "ObjectId", "AppId", "Sid",
              "Entra displayName")


def _names(pointer: dict | None, entra: dict | None, app_id: str) -> dict[str, str]:
    out = {"pointer DisplayName": text(pointer, "DisplayName"), "pointer Name": text(pointer, "Name"),
           "pointer Identity": text(pointer, "Identity"), "ObjectId": text(entra, "id") or text(pointer, "ObjectId"),
           "AppId": app_id, "Sid": text(pointer, "Sid"), "Entra displayName": text(entra, "displayName")}
    return {k: norm_id(v) for k, v in out.items() if v}


def check_trustee_names(p: Probe) -> Finding:
    assumption = ("permission rows (Trustee / User) name a service principal by its display name (the pointer's "
                  "DisplayName or the Entra name)")
    pair = None
    if p.plan is not None:
        grant = next((g for g in p.plan.grants if str(g.right) in ("SendAs", "FullAccess")), None)
        if grant is not None:
            pair = (norm_id(grant.app_id), norm_id(grant.mailbox), str(grant.right))
    try:
        if pair is None:  # no plan: the first pointer that holds a SendAs grant, from a scan
            pointers = p.once("pointers", p.exo.get_service_principals)
            rows = p.exo.scan_recipient_permissions()
            for pointer in pointers:
                app_id = norm_id(text(pointer, "AppId"))
                known = set(_names(pointer, None, app_id).values())
                hit = next((r for r in rows if norm_id(text(r, "Trustee")) in known), None)
                if hit is not None:
                    pair = (app_id, norm_id(text(hit, "Identity")), "SendAs")
                    break
        if pair is None:
            return Finding("trustee_names", assumption, CANNOT_TELL, "no service principal with a SendAs or "
                           "FullAccess grant found to look at", "match trustees by every name of the pointer")
        app_id, mailbox, right = pair
        entra = p.entra_sp(app_id)
        pointer = p.exo.get_service_principal(text(entra, "id") or app_id)
        names = _names(pointer, entra, app_id)
        rows = (p.exo.get_recipient_permissions(mailbox) if right == "SendAs"
                else p.exo.get_mailbox_permissions(mailbox))
    except ApiError as exc:
        return Finding("trustee_names", assumption, CANNOT_TELL, f"a read failed: {exc}",
                       "match trustees by every name of the pointer")
    shown = [text(r, "Trustee", "User") for r in rows if not truthy(r.get("IsInherited"))
             and (right.lower() in rights(r))]
    kinds = sorted({k for t in shown for k, v in names.items() if norm_id(t) == v}, key=NAME_KINDS.index)
    matched = [t for t in shown if norm_id(t) in names.values()]
    data = {"app_id": app_id, "mailbox": mailbox, "right": right, "shown": matched or shown, "kinds": kinds}
    if not shown:  # the grant is not there (already migrated, or removed since the plan): nothing to look at
        return Finding("trustee_names", assumption, CANNOT_TELL, f"{mailbox} shows no {right} row to look at "
                       "(migrated already?)", "match trustees by every name of the pointer", data=data)
    if not kinds:
        return Finding("trustee_names", assumption, DIFFERS,
                       f"the {right} rows of {mailbox} show {shown or 'no row'} and none is a name of app {app_id}",
                       "stop: the drift check could not recognise the app's grants; check the grant and the "
                       "pointer (Get-ServicePrincipal)", blocking=True, data=data)
    if any(k in ("pointer DisplayName", "Entra displayName") for k in kinds):
        data["match"] = "any"
        return Finding("trustee_names", assumption, VERIFIED,
                       f"app {app_id} is shown as {matched[0]!r} ({', '.join(kinds)})", data=data)
    data["match"] = "object_id" if "ObjectId" in kinds else "any"
    action = ("match trustees by the service principal's ObjectId only (trustee matching 'object_id'): a display "
              "name two principals share cannot confuse it" if data["match"] == "object_id"
              else "match trustees by every name of the pointer, the one shown included")
    return Finding("trustee_names", assumption, DIFFERS,
                   f"app {app_id} is shown as {matched[0]!r} ({', '.join(kinds)})", action, data=data)


# ---- 3. no-identity FullAccess scan against single reads ------------------------------------------------------
def _explicit_fullaccess(rows: list[dict]) -> set[str]:
    return {norm_id(text(r, "User", "Trustee")) for r in rows if "fullaccess" in rights(r)
            and not truthy(r.get("IsInherited")) and not truthy(r.get("Deny"))
            and norm_id(text(r, "User", "Trustee")) != "nt authority\\self"}


def check_fullaccess_scan(p: Probe) -> Finding:
    assumption = "Get-MailboxPermission without -Identity (one paged scan) returns every mailbox's FullAccess rows"
    scan, used, errors = None, "", []
    for cmdlet in ("Get-MailboxPermission", "Get-EXOMailboxPermission"):  # the inventory's two scan forms
        try:
            scan, used = p.exo.invoke(cmdlet, {"ResultSize": "Unlimited"}, scan=True), cmdlet
            break
        except ApiError as exc:
            errors.append(f"{cmdlet}: {exc}")
    if scan is None:
        return Finding("fullaccess_scan", assumption, DIFFERS if errors else CANNOT_TELL,
                       "no scan form answers: " + "; ".join(errors),
                       "read FullAccess per mailbox (`inventory --fullaccess per-mailbox`)")
    try:
        names = p.mailbox_names()
        by_mailbox: dict[str, list[dict]] = {}
        for row in scan:
            address = names.get(norm_id(text(row, "Identity")))
            if address:
                by_mailbox.setdefault(address, []).append(row)
        planned = sorted({norm_id(g.mailbox) for g in p.plan.grants if str(g.right) == "FullAccess"}) \
            if p.plan is not None else []
        others = sorted(set(a for a in (m.address for m in p.mailboxes()) if a) - set(planned))
        rng = random.Random(p.seed)
        sample = planned[: p.sample] + rng.sample(others, min(len(others), max(0, p.sample - len(planned[:p.sample]))))
        missed: dict[str, list[str]] = {}
        for mailbox in sample:
            single = _explicit_fullaccess(p.exo.get_mailbox_permissions(mailbox))
            scanned = _explicit_fullaccess(by_mailbox.get(mailbox, []))
            if single - scanned:
                missed[mailbox] = sorted(single - scanned)
    except ApiError as exc:
        return Finding("fullaccess_scan", assumption, CANNOT_TELL, f"a read failed: {exc}",
                       "read FullAccess per mailbox (`inventory --fullaccess per-mailbox`)")
    data = {"sample": sample, "missed": missed, "scan_rows": len(scan), "scan_cmdlet": used}
    if missed:
        return Finding("fullaccess_scan", assumption, DIFFERS,
                       f"the scan missed FullAccess rows on {len(missed)} of {len(sample)} sampled mailboxes "
                       f"(e.g. {next(iter(missed))})", "read FullAccess per mailbox: run `migrator inventory "
                       "--fullaccess per-mailbox`", data=data)
    return Finding("fullaccess_scan", assumption, VERIFIED, f"the scan ({used}, {len(scan)} rows) agrees with single "
                   f"reads on {len(sample)} sampled mailboxes", data=data)


# ---- 4. the admin token's roles -------------------------------------------------------------------------------
def check_admin_roles(p: Probe) -> Finding:
    assumption = ("the migrator app holds Exchange.ManageAsApp with Exchange Administrator, and in Graph "
                  "Application.Read.All, Policy.Read.All and AppRoleAssignment.ReadWrite.All (or the cut-over goes "
                  "through --cutover-profile or a handover)")
    try:
        exo = _claims(p.conn.tokens.token(p.conn.profile.exchange_resource))
        graph = _claims(p.conn.tokens.token(p.conn.profile.graph_resource))
    except ApiError as exc:
        return Finding("admin_roles", assumption, CANNOT_TELL, f"no token: {exc}", "stop", blocking=True)
    if not exo or not graph:
        return Finding("admin_roles", assumption, CANNOT_TELL, "a token is opaque (not a JWT): the calls will tell")
    roles, wids, groles = set(exo.get("roles") or ()), set(exo.get("wids") or ()), set(graph.get("roles") or ())
    data = {"exchange_roles": sorted(roles), "directory_roles": sorted(WRITE_ROLE_IDS[w] for w in wids
                                                                        if w in WRITE_ROLE_IDS),
            "graph_roles": sorted(groles)}
    missing, blocking = [], False
    if "Exchange.ManageAsApp" not in roles:
        missing.append("Exchange.ManageAsApp (no Exchange call works)")
        blocking = True
    if not wids & set(WRITE_ROLE_IDS):
        missing.append("an Entra role that may change Exchange (Exchange Administrator)")
        blocking = True
    if not groles & GRAPH_READ:
        missing.append("Application.Read.All (service principals and registrations cannot be read)")
        blocking = True
    if not groles & GRAPH_WRITE:  # kept off the run's app by design: a second profile or a handover writes it
        missing.append("AppRoleAssignment.ReadWrite.All (the cut-over and the rollback's re-grant go through "
                       "--cutover-profile, or a handover script for a privileged admin, exit 13)")
    if not groles & POLICY_READ:
        missing.append("Policy.Read.All (token lifetime policies cannot be read)")
        blocking = blocking or (p.cutover and p.token_lifetime is None)
    if missing:
        return Finding("admin_roles", assumption, DIFFERS, "missing: " + "; ".join(missing),
                       "stop before any write" if blocking else "go on: the missing permission is not needed by "
                       "this run (--no-cutover or a stated --token-lifetime)", blocking=blocking, data=data)
    return Finding("admin_roles", assumption, VERIFIED, "Exchange.ManageAsApp, " + ", ".join(
        data["directory_roles"]) + "; Graph " + ", ".join(sorted(groles & (GRAPH_READ | GRAPH_WRITE | POLICY_READ))),
        data=data)


# ---- 5. the RBAC role exists ----------------------------------------------------------------------------------
def check_smtp_role(p: Probe) -> Finding:
    assumption = f"the management role '{RBAC_ROLE_SMTP_SEND_AS}' exists in the tenant (RBAC for Applications)"
    try:
        rows = p.exo.invoke("Get-ManagementRole", {"Identity": RBAC_ROLE_SMTP_SEND_AS})
    except NotFound:
        rows = []
    except ApiError as exc:
        return Finding("smtp_role", assumption, CANNOT_TELL, f"Get-ManagementRole failed: {exc}",
                       "rely on the verify step (Test-ServicePrincipalAuthorization)")
    if not rows:
        return Finding("smtp_role", assumption, DIFFERS, "Get-ManagementRole does not know the role",
                       "stop: no role assignment can be created", blocking=True)
    return Finding("smtp_role", assumption, VERIFIED, f"found ({text(rows[0], 'RoleType') or 'role'})")


# ---- 6. token lifetime policies -------------------------------------------------------------------------------
def check_token_lifetimes(p: Probe) -> Finding:
    from migrator.executor.lifetimes import DEFAULT_ACCESS_TOKEN_LIFETIME, read_token_lifetimes

    assumption = "no token lifetime policy makes the apps' access tokens live longer than 90 minutes"
    try:
        resource_id, _ = p.smtp_role()
        sps = {a: text(p.entra_sp(a), "id") for a in p.plan_apps() if p.entra_sp(a)}
        extra: list[str] = [resource_id]
        if p.plan is not None and p.plan.mail_access:  # the Graph tokens of a Graph/EWS app end with its consent too
            extra.append(p.graph.get_resource_service_principal(GRAPH_APP_ID)["id"])
        found = read_token_lifetimes(p.graph, sps, extra_sp_ids=tuple(extra))
    except ApiError as exc:
        return Finding("token_lifetimes", assumption, CANNOT_TELL, f"a read failed: {exc}",
                       "stop at the cut-over unless --token-lifetime is given", blocking=p.token_lifetime is None)
    data = found.to_dict()
    if found.unreadable:
        stated = p.token_lifetime is not None
        return Finding("token_lifetimes", assumption, CANNOT_TELL, "; ".join(found.unreadable),
                       f"wait the stated {p.token_lifetime:g} s plus the margin" if stated else
                       "stop at the cut-over unless --token-lifetime SECONDS states the longest lifetime",
                       blocking=p.cutover and not stated, data=data)
    if found.longest is not None and found.longest > DEFAULT_ACCESS_TOKEN_LIFETIME:
        names = ", ".join(f"{x['name'] or x['id']} ({x['lifetime']:g} s)" for x in found.applied)
        return Finding("token_lifetimes", assumption, DIFFERS, f"policies that apply: {names}",
                       f"wait {found.longest:g} s plus the margin after the cut-over (and after a rollback's "
                       "re-grant)", data=data)
    return Finding("token_lifetimes", assumption, VERIFIED, "no policy that applies sets a longer access-token "
                   f"lifetime ({len(found.applied)} apply)", data=data)


# ---- 7. existing RBAC-for-Applications assignments of the plan's apps ------------------------------------------
def check_rbac_assignments(p: Probe) -> Finding:
    assumption = "the plan's apps hold no RBAC-for-Applications role assignment the plan does not know"
    if p.plan is None:
        return Finding("rbac_assignments", assumption, CANNOT_TELL, "no plan given", "check again with a PLAN")
    try:
        rows = p.exo.invoke("Get-ManagementRoleAssignment", {"RoleAssigneeType": "ServicePrincipal"}, scan=True)
        oids = {norm_id(text(p.entra_sp(a), "id")): a for a in p.plan_apps() if p.entra_sp(a)}
    except ApiError as exc:
        return Finding("rbac_assignments", assumption, CANNOT_TELL, f"a read failed: {exc}",
                       "rely on each batch's drift check")
    # the plan's own, and the ones the tenant had before that it builds on or leaves alone (existing.csv)
    planned = {a.name for a in p.plan.assignments} | {e.assignment for e in getattr(p.plan, "existing", ())}
    found = []
    for row in rows:
        assignee = norm_id(text(row, "RoleAssigneeName", "App", "RoleAssignee"))
        if assignee in oids and text(row, "Name") not in planned:
            scope = text(row, "CustomResourceScope", "RecipientWriteScope") or "Organization"
            found.append({"app_id": oids[assignee], "name": text(row, "Name"), "role": text(row, "Role"),
                          "scope": scope})
    if found:
        shown = "; ".join(f"{f['app_id']}: {f['role']} on {f['scope']} ({f['name']})" for f in found[:5])
        return Finding("rbac_assignments", assumption, DIFFERS, f"{len(found)} unplanned: {shown}",
                       "stop: the batch's drift check refuses an app with a role assignment the plan does not "
                       "know; remove it or re-plan", blocking=True, data={"unplanned": found})
    return Finding("rbac_assignments", assumption, VERIFIED, f"none among {len(rows)} application role "
                   "assignments", data={"unplanned": []})


# ---- 8. apps with FullAccess-only mailboxes and the SMTP claim -------------------------------------------------
def _rbac_sets(plan) -> dict[str, set[str]]:
    """app -> mailboxes the plan's scopes select for it (group members and attribute values at plan time)."""
    members = {g.key: {norm_id(m) for m in g.members} for g in plan.groups}
    by_value: dict[tuple[str, str], set[str]] = {}
    for attr, value, mailbox in plan.attributes:
        by_value.setdefault((attr.lower(), value.lower()), set()).add(norm_id(mailbox))
    scopes = {s.key: s for s in plan.scopes}
    out: dict[str, set[str]] = {}
    for a in plan.assignments:
        scope = scopes.get(a.scope)
        if scope is None or a.kind != KIND_SMTP:  # a Graph/EWS role is no SMTP reach
            continue
        got = out.setdefault(norm_id(a.app_id), set())
        for key in scope.groups:
            got |= members.get(key, set())
        for attr, value in scope.attributes:
            got |= by_value.get((attr.lower(), value.lower()), set())
    for e in getattr(plan, "existing", ()):  # existing assignments the plan reuses count in the app's set
        if e.action == "reuse":
            out.setdefault(norm_id(e.app_id), set()).update(norm_id(m) for m in e.members)
    return out


def check_fullaccess_smtp(p: Probe) -> Finding:
    assumption = ("no app reaches a mailbox over SMTP through FullAccess alone outside its planned RBAC set (the "
                  "cut-over moves every mailbox the app reaches to RBAC)")
    if p.plan is None:
        return Finding("fullaccess_smtp", assumption, CANNOT_TELL, "no plan given", "check again with a PLAN")
    fullaccess: dict[str, set[str]] = {}
    sendas: dict[str, set[str]] = {}
    for g in p.plan.grants:
        (fullaccess if str(g.right) == "FullAccess" else sendas).setdefault(norm_id(g.app_id), set()).add(
            norm_id(g.mailbox))
    rbac = _rbac_sets(p.plan)
    uncovered: dict[str, list[str]] = {}
    covered: list[str] = []
    try:
        for app_id, boxes in sorted(fullaccess.items()):
            only = boxes - sendas.get(app_id, set())
            if not only or app_id not in p.plan_apps() or not p.has_claim(app_id):
                continue
            missing = sorted(only - rbac.get(app_id, set()))
            if missing:
                uncovered[app_id] = missing
            else:
                covered.append(app_id)
    except ApiError as exc:
        return Finding("fullaccess_smtp", assumption, CANNOT_TELL, f"a read failed: {exc}",
                       "stop: the cut-over may cut an app off", blocking=p.cutover)
    data = {"uncovered": uncovered, "covered": covered}
    if uncovered:
        app_id, missing = next(iter(uncovered.items()))
        return Finding("fullaccess_smtp", assumption, DIFFERS,
                       f"{len(uncovered)} app(s) with the SMTP claim reach mailboxes through FullAccess only that "
                       f"their RBAC scope leaves out (e.g. {app_id}: {', '.join(missing[:3])})",
                       "stop: re-plan so the app's scope covers its whole SMTP reach, or run with --no-cutover",
                       blocking=p.cutover, data=data)
    return Finding("fullaccess_smtp", assumption, VERIFIED,
                   f"{len(covered)} app(s) with FullAccess-only mailboxes and the claim, all covered by their scope"
                   if covered else "no app with the SMTP claim holds FullAccess-only mailboxes", data=data)


# ---- 9. Application Access Policies: Exchange's own answer agrees with the plan's flattened reach --------------
def _fenced_consents(p: Probe, apps: list[str]) -> dict[str, list[str]]:
    """App id -> the fenced permissions its Entra consent holds now (executor/aap.py), for the apps that resolve."""
    from migrator.executor.aap import consents_back

    sps = {}
    for app in apps:
        sp = p.graph.get_service_principal_by_app_id(app)
        if sp and sp.get("id"):
            sps[app] = sp["id"]
    return consents_back(p.graph, sps) if sps else {}



def check_access_policies(p: Probe) -> Finding:
    """The plan took each Graph/EWS app's reach from the policy groups' members with nesting followed (docs/
    exchange.md §8). Test-ApplicationAccessPolicy is Exchange's own evaluation of the same policies: a sample of
    each app's mailboxes must be Granted and a sample of the others Denied. A difference means the model (or the
    groups since the inventory) is not what the tenant does: the RBAC scope would then gap or over-grant."""
    assumption = ("each Graph/EWS app's access policies grant exactly the mailboxes the plan scopes it to "
                  "(Test-ApplicationAccessPolicy, nested groups included)")
    mail_apps = p.plan.mail_apps() if p.plan is not None else []
    if p.plan is None:
        return Finding("access_policies", assumption, CANNOT_TELL, "no plan given", "check again with a PLAN")
    if not mail_apps:
        return Finding("access_policies", assumption, VERIFIED, "the plan moves no Graph/EWS access")
    try:
        rows = p.exo.get_application_access_policies()
        present = {norm_id(text(r, "AppId")): r for r in rows}
        identities = {norm_id(text(r, "Identity")) for r in rows}
        tenant = [m.address for m in p.mailboxes()]
        held = _fenced_consents(p, mail_apps)
    except ApiError as exc:
        return Finding("access_policies", assumption, CANNOT_TELL, f"a read failed: {exc}",
                       "rely on each batch's drift check and verification")
    rng = random.Random(p.seed)
    differs: list[str] = []
    tested = moved = 0
    for app in mail_apps:
        planned = {norm_id(x.identity) for x in p.plan.policies if norm_id(x.app_id) == app}
        perms = {m.permission for m in p.plan.mail_access if norm_id(m.app_id) == app}
        if app not in present or not planned <= identities or not perms & set(held.get(app, ())):
            # its batch removed them (all, or some before a crash: those left grant less than the planned reach),
            # or its batch's cut-over removed the consents they fence (what they reach no longer matters), or
            # someone did either: the batch's drift check decides
            moved += 1
            continue
        reach = sorted(p.plan.mail_reach.get(app, ()))
        outside = sorted(set(tenant) - set(reach))
        pairs = [(m, "Granted") for m in rng.sample(reach, min(p.sample, len(reach)))]
        pairs += [(m, "Denied") for m in rng.sample(outside, min(p.sample, len(outside)))]
        for mailbox, want in pairs:
            try:
                rows = p.exo.test_application_access_policy(mailbox, app)
            except ApiError as exc:
                return Finding("access_policies", assumption, CANNOT_TELL,
                               f"Test-ApplicationAccessPolicy failed for {app} on {mailbox}: {exc}",
                               "rely on each batch's drift check and verification")
            tested += 1
            got = text(rows[0], "AccessCheckResult") if rows else ""
            if got.lower() != want.lower():
                differs.append(f"{app} on {mailbox}: {got or 'no answer'}, the plan expects {want}")
    data = {"apps": len(mail_apps), "tested": tested, "already_moved": moved, "differs": differs}
    if differs:
        return Finding("access_policies", assumption, DIFFERS, f"{len(differs)} of {tested}: {'; '.join(differs[:5])}",
                       "stop: the policies (or their groups) no longer reach what the plan was made from; take a "
                       "new inventory and plan", blocking=True, data=data)
    return Finding("access_policies", assumption, VERIFIED, f"{tested} answers agree for {len(mail_apps) - moved} "
                   f"app(s){f' ({moved} without their policies: moved already)' if moved else ''}", data=data)
