"""Tenant fixtures (INTERNALS.md §2) to and from TenantState. Optional keys may be absent; ids left out are
derived deterministically from names, so a hand-written fixture loads the same way every time."""

from __future__ import annotations

import secrets

from migrator.model import EXCHANGE_ONLINE_APP_ID
from migrator.sandbox import aap
from migrator.sandbox.entra import FixturePolicyError, dump_policies, load_policies
from migrator.sandbox.state import (
    GRAPH_APP_ID,
    GROUP_TYPES,
    KNOWN_ROLE_IDS,
    RESOURCE_APP_IDS,
    RESOURCE_ROLES,
    SMTP_AUTH_DISABLED,
    AdministrativeUnit,
    App,
    ManagementScope,
    PermissionRow,
    Recipient,
    RoleAssignment,
    TenantState,
    default_pointer_name,
    det_uuid,
    escape_dn,
    graph_assignment_id,
    sid_for,
)

FORMAT = 1


class FixtureError(ValueError):
    """A fixture the sandbox cannot load; the message names the entry and key."""


def _need(entry: dict, key: str, where: str):
    value = entry.get(key)
    if value in (None, ""):
        raise FixtureError(f"fixture {where}: missing {key!r}")
    return value


def _lower(value) -> str:
    return (value or "").strip().lower()


def load_fixture(state: TenantState, data: dict) -> None:
    if not isinstance(data, dict):
        raise FixtureError("fixture: the top level must be a JSON object")
    if data.get("format", FORMAT) != FORMAT:
        raise FixtureError(f"fixture: format {data.get('format')!r} is not supported (expected {FORMAT})")
    tenant = data.get("tenant") or {}
    state.domain = _lower(tenant.get("domain")) or "contoso.onmicrosoft.com"
    state.tenant_id = _lower(tenant.get("id")) or det_uuid("tenant", state.domain)
    state.tenant_name = tenant.get("name") or state.domain.split(".")[0].title()
    state.dn_suffix = tenant.get("dn_suffix") or (
        f"OU={state.domain},OU=Microsoft Exchange Hosted Organizations,DC=NAMPR03A001,DC=prod,DC=outlook,DC=com")
    state.smtp_auth_disabled = bool(tenant.get(SMTP_AUTH_DISABLED, False))
    now = state.clock.now()
    _load_resources(state)

    for i, m in enumerate(data.get("mailboxes") or ()):
        where = f"mailboxes[{i}]"
        smtp = _lower(_need(m, "primary_smtp", where))
        local = smtp.split("@")[0]
        name = m.get("name") or local
        rtd = m.get("recipient_type_details") or "UserMailbox"
        extra_addrs = [a for a in (m.get("email_addresses") or m.get("proxy_addresses") or ())
                       if _lower(a.split(":", 1)[-1]) != smtp]
        rec = Recipient(
            guid=_lower(m.get("guid")) or det_uuid("mailbox", smtp), kind="mailbox", name=name,
            alias=m.get("alias") or local, display_name=m.get("display_name") or name, primary_smtp=smtp,
            upn=_lower(m.get("upn")) or smtp, external_id=_lower(m.get("external_id")) or det_uuid("user", smtp),
            recipient_type_details=rtd, hidden=bool(m.get("hidden", False)),
            email_addresses=[f"SMTP:{smtp}"] + [a if ":" in a else f"smtp:{a}" for a in extra_addrs],
            attributes={k: str(v) for k, v in (m.get("attributes") or {}).items() if v not in (None, "")},
            created=float(m.get("created", now - 86400)))
        if m.get(SMTP_AUTH_DISABLED) is not None:
            rec.extra[SMTP_AUTH_DISABLED] = bool(m[SMTP_AUTH_DISABLED])
        rec.dn = m.get("dn") or f"CN={escape_dn(name)},{state.dn_suffix}"
        rec.cn = name
        _add_unique(state, rec, where)

    groups = list(data.get("groups") or ())
    group_recs = []
    for i, g in enumerate(groups):
        where = f"groups[{i}]"
        name = _need(g, "name", where)
        smtp = _lower(g.get("primary_smtp")) or f"{g.get('alias') or name.replace(' ', '')}@{state.domain}".lower()
        gtype = g.get("type") or "Security"
        if gtype not in GROUP_TYPES:
            raise FixtureError(f"fixture {where}: type {gtype!r} is not one of {sorted(GROUP_TYPES)}")
        gtype = "Microsoft365" if gtype == "Unified" else gtype
        cn = g.get("cn") or name
        rec = Recipient(
            guid=_lower(g.get("guid")) or det_uuid("group", smtp), kind="group", name=name,
            alias=g.get("alias") or smtp.split("@")[0], display_name=g.get("display_name") or name,
            primary_smtp=smtp, external_id=_lower(g.get("external_id")) or det_uuid("group-object", smtp),
            recipient_type_details=g.get("recipient_type_details") or GROUP_TYPES[gtype], group_type=gtype,
            hidden=bool(g.get("hidden", False)), email_addresses=[f"SMTP:{smtp}"],
            created=float(g.get("created", now - 86400)),
            cn=cn, extra={k: g[k] for k in ("managed_by", "member_join_restriction", "member_depart_restriction",
                                            "notes")
                          if k in g})
        rec.dn = g.get("dn") or f"CN={escape_dn(cn)},{state.dn_suffix}"
        _add_unique(state, rec, where)
        group_recs.append(rec)
    for i, (g, group) in enumerate(zip(groups, group_recs)):
        for addr in g.get("members") or ():
            hits = state._recipient_ids.find(addr)
            if len(hits) != 1:
                raise FixtureError(f"fixture groups[{i}] ({g['name']}): member {addr!r} is "
                                   f"{'unknown' if not hits else 'ambiguous'}")
            group.members[next(iter(hits))] = None

    for i, a in enumerate(data.get("apps") or ()):
        _load_app(state, a, f"apps[{i}]", admin=False)
    admin = data.get("admin")
    if admin:
        _load_app(state, {**admin, "app_id": admin.get("client_id") or admin.get("app_id"),
                          "exchange_pointer": admin.get("exchange_pointer", False)}, "admin", admin=True)
    second = data.get("cutover_admin")
    if second:
        _load_app(state, {**second, "app_id": second.get("client_id") or second.get("app_id"),
                          "exchange_pointer": second.get("exchange_pointer", False)}, "cutover_admin", admin=True,
                  main_admin=False)
        state.cutover_admin_app_id = _lower(second.get("client_id") or second.get("app_id"))
    try:
        load_policies(state, data)
    except FixturePolicyError as exc:
        raise FixtureError(str(exc)) from None

    for i, au in enumerate(data.get("administrative_units") or ()):
        where = f"administrative_units[{i}]"
        unit = AdministrativeUnit(id=_lower(_need(au, "id", where)), display_name=au.get("display_name") or au["id"])
        for addr in au.get("members") or ():
            unit.members.add(_resolve_recipient(state, addr, where).guid)
        state.admin_units[unit.id] = unit

    # Permission rows are most of a large fixture: resolve each mailbox and trustee once.
    mailbox_cache: dict[str, str] = {}
    trustee_cache: dict[tuple, tuple] = {}

    def mailbox_guid(row: dict, where: str) -> str:
        key = str(row.get("mailbox"))
        guid = mailbox_cache.get(key)
        if guid is None:
            guid = mailbox_cache[key] = _resolve_recipient(state, _need(row, "mailbox", where), where).guid
        return guid

    def trustee_of(t, where: str) -> tuple:
        key = tuple(sorted(t.items())) if isinstance(t, dict) else None
        hit = trustee_cache.get(key) if key is not None else None
        if hit is None:
            hit = _trustee(state, t, where)
            if key is not None:
                trustee_cache[key] = hit
        return hit

    for i, row in enumerate(data.get("recipient_permissions") or ()):
        where = f"recipient_permissions[{i}]"
        state.recipient_permissions.append(PermissionRow(
            mailbox=mailbox_guid(row, where), trustee=trustee_of(_need(row, "trustee", where), where),
            access_rights=list(row.get("access_rights") or ["SendAs"]),
            deny=row.get("access_control_type", "Allow") == "Deny",
            is_inherited=bool(row.get("is_inherited", False)),
            inheritance_type=row.get("inheritance_type") or "None", other_sid=bool(row.get("other_sid", False))))
    for i, row in enumerate(data.get("mailbox_permissions") or ()):
        where = f"mailbox_permissions[{i}]"
        state.mailbox_permissions.append(PermissionRow(
            mailbox=mailbox_guid(row, where), trustee=trustee_of(_need(row, "user", where), where),
            access_rights=list(row.get("access_rights") or ["FullAccess"]), deny=bool(row.get("deny", False)),
            is_inherited=bool(row.get("is_inherited", False)),
            inheritance_type=row.get("inheritance_type") or "All", other_sid=bool(row.get("other_sid", False))))

    for i, sc in enumerate(data.get("management_scopes") or ()):
        where = f"management_scopes[{i}]"
        name = _need(sc, "name", where)
        text = sc.get("filter") or sc.get("recipient_restriction_filter") or ""
        try:
            ast = state.parse_filter(text)
        except ValueError as exc:
            raise FixtureError(f"fixture {where} ({name}): bad filter: {exc}") from None
        state.scopes[name.lower()] = ManagementScope(
            name=name, guid=_lower(sc.get("guid")) or det_uuid("scope", name.lower()), filter=text, ast=ast,
            exclusive=bool(sc.get("exclusive", False)), created=float(sc.get("created", now)))

    for i, ra in enumerate(data.get("role_assignments") or ()):
        where = f"role_assignments[{i}]"
        name = _need(ra, "name", where)
        app = state.find_sps(_need(ra, "app", where))
        if len(app) != 1:
            raise FixtureError(f"fixture {where} ({name}): app {ra['app']!r} is not one Exchange service principal")
        kind, ref = "organization", ""
        if ra.get("custom_resource_scope"):
            kind, ref = "custom", ra["custom_resource_scope"]
            if ref.lower() not in state.scopes:
                raise FixtureError(f"fixture {where} ({name}): unknown scope {ref!r}")
        elif ra.get("recipient_group_scope"):
            kind, ref = "group", _resolve_recipient(state, ra["recipient_group_scope"], where).guid
        elif ra.get("recipient_administrative_unit_scope"):
            kind, ref = "au", _lower(ra["recipient_administrative_unit_scope"])
        state.assignments[name.lower()] = RoleAssignment(
            name=name, guid=_lower(ra.get("guid")) or det_uuid("assignment", name.lower()),
            role=_need(ra, "role", where), app_id=app[0].app_id, scope_kind=kind, scope_ref=ref,
            enabled=bool(ra.get("enabled", True)), created=float(ra.get("created", now)))

    for i, p in enumerate(data.get("application_access_policies") or ()):
        state.access_policies.append(_load_policy(state, p, f"application_access_policies[{i}]", now))


def _load_policy(state: TenantState, p: dict, where: str, now: float) -> aap.AccessPolicy:
    """One Application Access Policy: `app_id`, `scope` (the group, or a mailbox, by any recipient identity),
    `access_right` (RestrictAccess | DenyAccess), `description`; `"is_valid": false` keeps a policy whose scope
    recipient is gone (`scope` is then the name it showed)."""
    app_id = _lower(_need(p, "app_id", where))
    right = p.get("access_right") or aap.RESTRICT
    if right not in aap.ACCESS_RIGHTS:
        raise FixtureError(f"fixture {where}: access_right {right!r} is not one of {', '.join(aap.ACCESS_RIGHTS)}")
    text = str(_need(p, "scope", where))
    pol = aap.AccessPolicy(app_id=app_id, scope="", access_right=right, description=p.get("description") or "",
                           created=float(p.get("created", now)))
    if p.get("is_valid", True) is False:
        pol.scope_name = text
        pol.scope_sid, pol.scope_external_id = p.get("scope_sid") or sid_for(text), p.get("scope_external_id") or ""
        return pol
    rec = _resolve_recipient(state, text, where)
    if not aap.scope_type_ok(rec):
        raise FixtureError(f"fixture {where}: scope {text!r} is a {rec.recipient_type_details}, not a mail-enabled "
                           "security group or a user mailbox")
    pol.scope, pol.scope_name = rec.guid, rec.name
    pol.scope_sid, pol.scope_external_id = sid_for(rec.guid), rec.external_id
    if any(q.app_id == app_id and q.scope == rec.guid for q in state.access_policies):
        raise FixtureError(f"fixture {where}: app {app_id} already has a policy on {text!r}")
    return pol


def _add_unique(state: TenantState, rec: Recipient, where: str) -> None:
    for key in (rec.primary_smtp, rec.guid):
        if state._recipient_ids.find(key):
            raise FixtureError(f"fixture {where}: {key!r} is already used by another recipient")
    state.add_recipient(rec)


def _resolve_recipient(state: TenantState, identity: str, where: str) -> Recipient:
    exact = state._recipient_ids.find(identity)
    if len(exact) == 1:  # the common case, without sorting
        return state.recipients[next(iter(exact))]
    hits = state.find_recipients(identity, include_unreplicated=True)
    if len(hits) != 1:
        raise FixtureError(f"fixture {where}: recipient {identity!r} is {'unknown' if not hits else 'ambiguous'}")
    return hits[0]


def _trustee(state: TenantState, t: dict, where: str) -> tuple:
    if not isinstance(t, dict):
        raise FixtureError(f"fixture {where}: trustee must be an object like {{\"app\": app_id}}")
    if t.get("app"):
        app = state.apps.get(_lower(t["app"])) or next(
            (a for a in state.apps.values() if a.object_id == _lower(t["app"])), None)
        if app is None:
            raise FixtureError(f"fixture {where}: trustee app {t['app']!r} is not in apps")
        return ("app", app.app_id)
    if t.get("mailbox"):
        return ("recipient", _resolve_recipient(state, t["mailbox"], where).guid)
    if t.get("self"):
        return ("self",)
    if t.get("sid"):
        return ("sid", t["sid"])
    raise FixtureError(f"fixture {where}: trustee needs one of app, mailbox, self, sid")


def _load_resources(state: TenantState) -> None:
    for name, roles in RESOURCE_ROLES.items():
        app_id = RESOURCE_APP_IDS[name]
        state.resources[name] = {
            "id": det_uuid("resource-sp", state.tenant_id, app_id), "appId": app_id, "displayName": name,
            "servicePrincipalType": "Application", "accountEnabled": True,
            "appRoles": [{"id": KNOWN_ROLE_IDS.get((name, r)) or det_uuid("app-role", app_id, r), "value": r,
                          "displayName": r, "description": f"{r} ({name})", "isEnabled": True,
                          "allowedMemberTypes": ["Application"], "origin": "Application"} for r in roles]}


def _load_app(state: TenantState, a: dict, where: str, *, admin: bool, main_admin: bool = True) -> None:
    app_id = _lower(_need(a, "app_id", where))
    if app_id in state.apps:
        raise FixtureError(f"fixture {where}: app_id {app_id} appears twice")
    display_name = a.get("display_name") or app_id
    app = App(app_id=app_id, object_id=_lower(a.get("object_id")) or det_uuid("sp", app_id),
              display_name=display_name, exchange_pointer=bool(a.get("exchange_pointer", True)),
              pointer_name=a.get("exchange_display_name") or default_pointer_name(display_name),
              exchange_guid=_lower(a.get("exchange_guid")) or det_uuid("exo-sp", app_id),
              secret=a.get("secret"), certificate_pem=a.get("certificate_pem"),
              directory_roles=set(a.get("directory_roles") or ()), is_admin=admin)
    if admin and not app.secret and not app.certificate_pem:
        app.secret = secrets.token_urlsafe(32)  # "generated at start if null"
    state.apps[app_id] = app
    if admin and main_admin:
        state.admin_app_id = app_id
    state.index_app(app)
    for j, role in enumerate(a.get("app_roles") or ()):
        resource = state.resources.get(role.get("resource"))
        if resource is None:
            raise FixtureError(f"fixture {where}.app_roles[{j}]: unknown resource {role.get('resource')!r} "
                               f"(known: {', '.join(sorted(state.resources))})")
        match = [r for r in resource["appRoles"] if r["value"] == role.get("permission")]
        if not match:
            raise FixtureError(f"fixture {where}.app_roles[{j}]: {role.get('resource')} has no app role "
                               f"{role.get('permission')!r}")
        grant_app_role(state, app, resource, match[0]["id"], created=0.0)


def grant_app_role(state: TenantState, app: App, resource: dict, role_id: str, *, created: float) -> dict:
    import datetime as dt

    aid = graph_assignment_id(app.object_id, resource["id"], role_id)
    row = {"id": aid, "appRoleId": role_id, "principalId": app.object_id, "principalType": "ServicePrincipal",
           "principalDisplayName": app.display_name, "resourceId": resource["id"],
           "resourceDisplayName": resource["displayName"], "deletedDateTime": None,
           "createdDateTime": dt.datetime.fromtimestamp(created or state.clock.now(), dt.UTC)
           .strftime("%Y-%m-%dT%H:%M:%SZ")}
    state.app_role_assignments.setdefault(app.object_id, {})[aid] = row
    return row


def dump_fixture(state: TenantState, *, include_secrets: bool = False) -> dict:
    def addr(guid: str) -> str:
        r = state.recipients.get(guid)
        return r.primary_smtp if r else guid

    def trustee(t: tuple) -> dict:
        if t[0] == "app":
            return {"app": t[1]}
        if t[0] == "recipient":
            return {"mailbox": addr(t[1])}
        if t[0] == "self":
            return {"self": True}
        return {"sid": t[1]}

    def roles(app: App) -> list[dict]:
        by_id = {(r["id"], role["id"]): (name, role["value"]) for name, r in state.resources.items()
                 for role in r["appRoles"]}
        out = [by_id[(a["resourceId"], a["appRoleId"])] for a in state.app_role_assignments.get(app.object_id, {})
               .values() if (a["resourceId"], a["appRoleId"]) in by_id]
        return [{"resource": n, "permission": p} for n, p in sorted(out)]

    mailboxes = sorted((r for r in state.recipients.values() if r.kind == "mailbox"), key=lambda r: r.primary_smtp)
    groups = sorted((r for r in state.recipients.values() if r.is_group), key=lambda r: r.primary_smtp)
    apps = sorted((a for a in state.apps.values() if not a.is_admin), key=lambda a: a.app_id)
    admin = state.apps.get(state.admin_app_id)
    out = {
        "format": FORMAT,
        "tenant": {"id": state.tenant_id, "domain": state.domain, "name": state.tenant_name,
                   "dn_suffix": state.dn_suffix,
                   **({SMTP_AUTH_DISABLED: True} if state.smtp_auth_disabled else {})},
        "mailboxes": [{"name": r.name, "alias": r.alias, "display_name": r.display_name,
                       "primary_smtp": r.primary_smtp, "upn": r.upn, "external_id": r.external_id, "guid": r.guid,
                       "recipient_type_details": r.recipient_type_details, "dn": r.dn,
                       "email_addresses": r.email_addresses[1:], "hidden": r.hidden, "created": r.created,
                       "attributes": dict(sorted(r.attributes.items())),
                       **({SMTP_AUTH_DISABLED: r.extra[SMTP_AUTH_DISABLED]} if SMTP_AUTH_DISABLED in r.extra
                          else {})} for r in mailboxes],
        "apps": [{"app_id": a.app_id, "object_id": a.object_id, "display_name": a.display_name,
                  "exchange_display_name": a.pointer_name, "exchange_pointer": a.exchange_pointer,
                  "exchange_guid": a.exchange_guid, "app_roles": roles(a),
                  "secret": a.secret if include_secrets else None, "certificate_pem": a.certificate_pem,
                  "directory_roles": sorted(a.directory_roles),
                  "required_resource_access": [{"resource": r, "permission": p}
                                               for r, p in state.requested_roles.get(a.app_id, ())]}
                 for a in apps],
        "groups": [{"name": g.name, "alias": g.alias, "display_name": g.display_name, "primary_smtp": g.primary_smtp,
                    "type": g.group_type, "cn": g.cn, "dn": g.dn, "guid": g.guid, "external_id": g.external_id,
                    "recipient_type_details": g.recipient_type_details, "hidden": g.hidden,
                    "members": [addr(m) for m in g.members], "created": g.created, **g.extra} for g in groups],
        "recipient_permissions": [{"mailbox": addr(p.mailbox), "trustee": trustee(p.trustee),
                                   "access_control_type": "Deny" if p.deny else "Allow",
                                   "access_rights": list(p.access_rights), "is_inherited": p.is_inherited,
                                   "inheritance_type": p.inheritance_type, **({"other_sid": True} if p.other_sid
                                                                               else {})}
                                  for p in state.recipient_permissions],
        "mailbox_permissions": [{"mailbox": addr(p.mailbox), "user": trustee(p.trustee),
                                 "access_rights": list(p.access_rights), "deny": p.deny,
                                 "is_inherited": p.is_inherited, "inheritance_type": p.inheritance_type,
                                 **({"other_sid": True} if p.other_sid else {})}
                                for p in state.mailbox_permissions],
        "management_scopes": [{"name": s.name, "guid": s.guid, "filter": s.filter, "exclusive": s.exclusive,
                               "created": s.created}
                              for s in sorted(state.scopes.values(), key=lambda s: s.name.lower()) if not s.hidden],
        "role_assignments": [_dump_assignment(state, ra, addr)
                             for ra in sorted(state.assignments.values(), key=lambda r: r.name.lower())],
        "administrative_units": [{"id": u.id, "display_name": u.display_name,
                                  "members": sorted(addr(m) for m in u.members)}
                                 for u in sorted(state.admin_units.values(), key=lambda u: u.id)],
        "application_access_policies": [_dump_policy(state, p, addr) for p in state.access_policies],
        "token_lifetime_policies": dump_policies(state),
    }
    if admin is not None:
        out["admin"] = {"client_id": admin.app_id, "object_id": admin.object_id, "display_name": admin.display_name,
                        "secret": admin.secret if include_secrets else None,
                        "certificate_pem": admin.certificate_pem, "app_roles": roles(admin),
                        "directory_roles": sorted(admin.directory_roles)}
    second = state.apps.get(state.cutover_admin_app_id) if state.cutover_admin_app_id else None
    if second is not None:
        out["cutover_admin"] = {"client_id": second.app_id, "object_id": second.object_id,
                                "display_name": second.display_name,
                                "secret": second.secret if include_secrets else None,
                                "certificate_pem": second.certificate_pem, "app_roles": roles(second),
                                "directory_roles": sorted(second.directory_roles)}
    return out


def _dump_policy(state: TenantState, p: aap.AccessPolicy, addr) -> dict:
    row = {"app_id": p.app_id, "access_right": p.access_right, "description": p.description, "created": p.created}
    if p.scope in state.recipients:
        return {**row, "scope": addr(p.scope)}
    return {**row, "scope": p.scope_name, "is_valid": False, "scope_sid": p.scope_sid,
            "scope_external_id": p.scope_external_id}


def _dump_assignment(state: TenantState, ra: RoleAssignment, addr) -> dict:
    row = {"name": ra.name, "guid": ra.guid, "role": ra.role, "app": ra.app_id, "enabled": ra.enabled,
           "created": ra.created}
    if ra.scope_kind == "custom":
        row["custom_resource_scope"] = ra.scope_ref
    elif ra.scope_kind == "group":
        row["recipient_group_scope"] = addr(ra.scope_ref)
    elif ra.scope_kind == "au":
        row["recipient_administrative_unit_scope"] = ra.scope_ref
    return row


__all__ = ["EXCHANGE_ONLINE_APP_ID", "GRAPH_APP_ID", "FixtureError", "dump_fixture", "grant_app_role", "load_fixture"]
