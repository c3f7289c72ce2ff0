"""Inventory in, plan out: cover -> reuse -> batches -> names -> scopes -> assignments -> grants -> Plan.

Pure: no tenant I/O. The result is checked for exactness by plan.write_plan before anything is written.

Scopes, one per distinct combination of cover sets an app uses (`MemberOfGroup -eq 'A' -or MemberOfGroup -eq
'B'`), so every app gets exactly one role assignment. Why not one scope per group and one assignment per (app,
group)? Both are exact (the role grants the union of an app's scopes), but the combination never needs more
objects: an app with k groups costs k assignments the other way and at most one scope plus one assignment this
way, and apps with the same combination share the scope. One assignment per app also makes an app's cut-over
and rollback a single object to verify. A combination longer than MAX_TERMS_PER_SCOPE terms is split into
several scopes (and assignments) to keep each filter a reasonable length; Microsoft documents no limit, so this
is a caution, not a known cap.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from migrator.errors import InputError
from migrator.model import (
    EXCHANGE_ONLINE_APP_ID,
    EXCHANGE_ONLINE_NAME,
    GRAPH_APP_ID,
    GRAPH_NAME,
    RBAC_ROLE_SMTP_SEND_AS,
    Right,
)
from migrator.planner import aap_report, naming, opath, reuse
from migrator.planner import existing as existing_rbac
from migrator.planner.batches import AppRadius, first_batch, make_batches
from migrator.planner.cover import STRATEGIES, Strategy, solve_cover
from migrator.planner.plan import (
    FORMAT,
    FUTURE_NOTE,
    KEEP,
    KIND_GRAPH_EWS,
    KIND_SMTP,
    MIGRATE,
    NEW,
    REUSE,
    ExistingAction,
    Plan,
    PlanAssignment,
    PlanBatch,
    PlanExisting,
    PlanGrant,
    PlanGroup,
    PlanMailAccess,
    PlanPolicy,
    PlanScope,
    render_filter,
    scope_kind,
)
from migrator.planner.source import Source

MAX_TERMS_PER_SCOPE = 20

# Entra application permissions that let an app send as (or act fully on) every mailbox, whatever RBAC says:
# Entra and Exchange grants are a union (docs/exchange.md §2), so scoping such an app is moot until they go.
_GRAPH = {GRAPH_NAME.lower(), GRAPH_APP_ID}
_EXCHANGE = {EXCHANGE_ONLINE_NAME.lower(), EXCHANGE_ONLINE_APP_ID}
UNSCOPED_PERMISSIONS = {
    ("graph", "mail.send"),
    ("exchange", "mail.send"),
    ("exchange", "full_access_as_app"),
}
# The Exchange Online app roles that decide what a FullAccess grant serves (INTERNALS.md §3 "Reach"): with
# SMTP.SendAsApp the app sends as every mailbox it holds FullAccess on; with IMAP.AccessAsApp or POP.AccessAsApp
# it opens those mailboxes by IMAP/POP, which nothing but FullAccess serves.
SMTP_CLAIM = "smtp.sendasapp"
IMAP_POP_CLAIMS = {"imap.accessasapp", "pop.accessasapp"}
FULLACCESS_SMTP_CHOICES = ("ask", "yes", "no")


@dataclass(frozen=True)
class PlanOptions:
    strategy: str = Strategy.MINIMAL
    pilot: int = 1
    batch_size: int = 25
    prefix: str = naming.DEFAULT_PREFIX
    allow_attribute_scopes: bool = False
    time_limit: float = 60.0
    role: str = RBAC_ROLE_SMTP_SEND_AS
    # For apps holding FullAccess whose Entra permissions the source does not give (exports without the app-role
    # file, a grants CSV): "yes" takes their FullAccess as SMTP reach (moved to RBAC), "no" as none; "ask" (the
    # default) refuses to plan and names them. Nothing is guessed.
    fullaccess_smtp: str = "ask"
    # Remove the FullAccess grants whose SMTP reach moves to RBAC, after the cut-over, for apps known to hold no
    # IMAP/POP permission (FullAccess is what IMAP/POP needs; with neither claim it serves nothing left).
    remove_fullaccess: bool = False

    def checked(self) -> PlanOptions:
        if self.strategy not in STRATEGIES:
            raise InputError(f"must be one of {', '.join(STRATEGIES)}", field="--strategy", value=self.strategy)
        if not self.time_limit > 0:
            raise InputError("must be more than 0 seconds", field="--time-limit", value=str(self.time_limit))
        if not self.role.startswith("Application "):
            raise InputError("must be an RBAC for Applications role, e.g. 'Application SMTP.SendAsApp'",
                             field="--role", value=self.role)
        if self.fullaccess_smtp not in FULLACCESS_SMTP_CHOICES:
            raise InputError(f"must be one of {', '.join(FULLACCESS_SMTP_CHOICES)}", field="--fullaccess-smtp",
                             value=self.fullaccess_smtp)
        naming.check_prefix(self.prefix)
        return self


def unscoped_permissions(app_permissions: Iterable[tuple[str, str, str]]) -> dict[str, list[str]]:
    """app id -> the unscoped Entra permissions it holds, as 'Resource/Permission' strings (sorted)."""
    found: dict[str, set[str]] = defaultdict(set)
    for app_id, resource, permission in app_permissions:
        res = resource.strip().lower()
        kind = "graph" if res in _GRAPH else "exchange" if res in _EXCHANGE else None
        if kind and (kind, permission.strip().lower()) in UNSCOPED_PERMISSIONS:
            found[app_id].add(f"{resource.strip()}/{permission.strip()}")
    return {app: sorted(perms) for app, perms in found.items()}


@dataclass(frozen=True)
class FullAccessUse:
    """What an app's FullAccess grants serve, and what the plan does with them."""

    smtp: bool  # they are SMTP reach: their mailboxes join the app's RBAC set
    imap: bool | None  # the app holds IMAP.AccessAsApp/POP.AccessAsApp (None: unknown)
    remove: bool  # removed after the cut-over (--remove-fullaccess, no IMAP/POP permission)
    why: str  # how the plan knows (or who decided)


def fullaccess_uses(source: Source, options: PlanOptions) -> dict[str, FullAccessUse]:
    """app id -> FullAccessUse, for every app holding FullAccess grants. InputError when the apps' Entra
    permissions are unknown and the user has not decided (--fullaccess-smtp)."""
    holders = sorted({app for app, _m, right in source.grants if right == Right.FULL_ACCESS})
    if not holders:
        return {}
    inv = source.inventory
    known = source.kind == "inventory" and inv.app_permissions_known
    roles: dict[str, set[str]] = defaultdict(set)
    for app_id, resource, permission in inv.app_permissions:
        if resource.strip().lower() in _EXCHANGE:
            roles[app_id].add(permission.strip().lower())
    if not known and options.fullaccess_smtp == "ask":
        names = {sp.app_id: sp.display_name for sp in inv.service_principals}
        shown = ", ".join(f"{a}{f' ({names[a]})' if names.get(a) else ''}" for a in holders[:5])
        more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
        raise InputError(
            f"{len(holders)} app(s) hold FullAccess grants, but the source does not say which Entra permissions "
            f"they have: {shown}{more}. With SMTP.SendAsApp an app sends as every mailbox it holds FullAccess on, "
            "so the plan must move those mailboxes to RBAC too, or the cut-over cuts them off; without it they "
            "must stay out, or the plan over-grants. Give the inventory the apps' app-role assignments (a live "
            "inventory reads them; the export script writes them), or decide for all of them with "
            "--fullaccess-smtp yes (their FullAccess is SMTP reach) or --fullaccess-smtp no (it is not)",
            path=source.path)
    out: dict[str, FullAccessUse] = {}
    for app in holders:
        if known:
            smtp, imap = SMTP_CLAIM in roles[app], bool(roles[app] & IMAP_POP_CLAIMS)
            why = (f"Entra permissions: SMTP.SendAsApp {'yes' if smtp else 'no'}, "
                   f"IMAP/POP {'yes' if imap else 'no'}")
        else:
            smtp, imap = options.fullaccess_smtp == "yes", None
            why = f"--fullaccess-smtp {options.fullaccess_smtp} (the app's Entra permissions are unknown)"
        out[app] = FullAccessUse(smtp, imap, smtp and imap is False and options.remove_fullaccess, why)
    return out


@contextlib.contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector for the duration.

    Planning a tenant allocates millions of small objects that all stay alive until the plan is written; the
    collector would rescan them again and again (measured: a third of the CPU time on 1M grants). The planner
    makes no reference cycles worth collecting, so nothing is lost by pausing it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# Seconds kept back from --time-limit for what follows the solver (groups, scopes, assignments, checks, writing
# the folder): measured about 10 µs per grant on the tenant-scale benchmark, 1 s for start-up and output; and at
# least three times as long as reading the input took (on a loaded machine everything is slower alike: on 2 cores
# 566k grants took 4.5 s to read and 8 s after the solver at load 9, 5.5 s and 19 s at load 11).
RESERVE_SECONDS = 1.0
RESERVE_PER_GRANT = 12e-6
RESERVE_READ_FACTOR = 3.0


def solver_time_limit(options: PlanOptions, grants: int, started: float | None) -> float:
    """The solver's share of --time-limit when it is the whole command's wall clock (`started`: perf_counter() at
    the command's start; None: the whole limit goes to the solver)."""
    if started is None:
        return options.time_limit
    spent = time.perf_counter() - started
    left = options.time_limit - spent - RESERVE_SECONDS - max(RESERVE_PER_GRANT * grants, RESERVE_READ_FACTOR * spent)
    return max(0.05, left)


def build_plan(source: Source, options: PlanOptions = PlanOptions(), *, created: str | None = None,
               started: float | None = None) -> Plan:
    options = options.checked()
    inv = source.inventory
    app_names = {sp.app_id: sp.display_name for sp in inv.service_principals}
    uses = fullaccess_uses(source, options)
    # An app's set is its whole SMTP reach: SendAs, and FullAccess when the app's tokens carry SMTP.SendAsApp.
    reach: dict[str, set[str]] = defaultdict(set)
    for app, mailbox, right in source.grants:
        if right == Right.SEND_AS or uses[app].smtp:
            reach[app].add(mailbox)
    app_sets = {app: frozenset(s) for app, s in reach.items()}
    grant_apps = {row[0] for row in source.grants}
    # Graph/EWS access fenced by Application Access Policies (planner/aap_report.py): the apps it says migrate get
    # `Application <permission>` roles on exactly the mailboxes their policies allow today, from the same cover
    mail_reports = _mail_reports(inv, app_names)
    mail_sets = {r.app_id: r.reach for r in mail_reports if r.status == aap_report.MIGRATE and r.reach}
    flagged = _not_migrated(unscoped_permissions(inv.app_permissions), mail_reports, mail_sets)

    # 0. existing RBAC for Applications (planner/existing.py): an app already served keeps what it has, and only
    # the rest of its reach is covered; an app whose existing reach is beyond its legacy grants, or not exactly
    # known, is left as it is
    rbac = existing_rbac.classify(inv.rbac, options.role, app_sets) if inv.rbac_known else {}
    left = {app: r for app, r in rbac.items() if r.status in existing_rbac.LEFT}
    planned = {app: s - rbac[app].reach if app in rbac else s for app, s in app_sets.items() if app not in left}

    # 1. the cover, preferring sets the tenant already has (an exact group, or an attribute value)
    found = reuse.candidates(inv.groups, inv.mailboxes, allow_attributes=options.allow_attribute_scopes)
    to_cover = {app: s for app, s in planned.items() if s}
    to_cover.update({_mail_key(app): s for app, s in mail_sets.items()})  # an app's mail reach is a set of its own
    preferred = reuse.useful(found, to_cover.values())
    solve_limit = solver_time_limit(options, len(source.grants), started)
    cover = solve_cover(to_cover, strategy=options.strategy, time_limit=solve_limit, preferred=preferred)
    app_groups: dict[str, tuple[int, ...]] = {app: cover.app_groups.get(app, ()) for app in planned}
    mail_groups: dict[str, tuple[int, ...]] = {app: cover.app_groups.get(_mail_key(app), ()) for app in mail_sets}
    elements = list(cover.groups)
    existing = [found.get(e) for e in elements]
    is_new = [x is None for x in existing]

    # 2. batches: smallest blast radius first; an app's SMTP and Graph/EWS parts move in the same batch
    batched = list(planned) + sorted(set(mail_sets) - set(planned))
    uses_of = {app: tuple(sorted(set(app_groups.get(app, ())) | set(mail_groups.get(app, ())))) for app in batched}
    radius = [AppRadius(app, len(app_sets.get(app, frozenset()) | mail_sets.get(app, frozenset())),
                        sum(1 for i in uses_of[app] if is_new[i])) for app in batched]
    batches = make_batches(radius, pilot=options.pilot, batch_size=options.batch_size)
    batch_of = {app: n for n, apps in enumerate(batches, start=1) for app in apps}
    position = {app: i for i, app in enumerate(a for apps in batches for a in apps)}
    first = first_batch(batches, uses_of)
    first_app: dict[int, int] = {}
    for app in sorted(batched, key=position.__getitem__):
        for i in uses_of[app]:
            first_app.setdefault(i, position[app])
    apps_using: dict[int, int] = defaultdict(int)
    for idx in uses_of.values():
        for i in idx:
            apps_using[i] += 1

    # 3. groups (new or reused) get keys in the order batches first need them; attribute values get none
    taken = naming.taken_names(inv.mailboxes, inv.groups) | {a.name.lower() for a in inv.rbac} | {
        a.scope.lower() for a in inv.rbac if a.scope}
    namer = naming.Namer(options.prefix, taken, naming.group_domain(m.address for m in inv.mailboxes))
    elem_hash = {i: naming.members_hash(elements[i]) for i in range(len(elements))}
    groups, key_of, term_of = _plan_groups(elements, existing, first, first_app, apps_using, namer, elem_hash)
    groups_by_key = {g.key: g for g in groups}

    # 4. scopes (one per distinct combination of an app's sets) and one assignment per app (per chunk)
    mail_roles = {r.app_id: sorted({t.role for t in r.targets}) for r in mail_reports if r.app_id in mail_sets}
    scopes, assignments, scope_of_elem = _plan_scopes(batches, app_groups, key_of, term_of, groups_by_key,
                                                      batch_of, app_names, options.role, namer, elem_hash,
                                                      mail_groups, mail_roles)

    # 5. grants: SendAs migrate (with the set that carries it), FullAccess keep; app by app, so the
    # mailbox -> reason map is one app's at a time (1M grants), and equal reasons share one string
    plan_grants = _plan_grants(source.grants, app_names, flagged, options.role, app_groups, elements, key_of,
                               term_of, scope_of_elem, batch_of, uses, rbac)

    # 6. batch rows
    mail_access, mail_policies = _plan_mail(mail_reports, mail_sets, batch_of, app_names)
    plan_batches = _plan_batches(batches, app_sets, flagged, groups, scopes, assignments, pilot=bool(options.pilot),
                                 mail_sets=mail_sets, mail_access=mail_access, mail_policies=mail_policies)

    used_terms = sorted({t for s in scopes for t in s.attributes})
    meta = {
        "format": FORMAT,
        "created": created or _now(),
        "source": {"path": source.path, "kind": source.kind, "sha256": source.sha256},
        "role": options.role,
        "options": asdict(options),
        "cover": {"strategy": cover.strategy, "sets": len(elements), "lower_bound": cover.lower_bound,
                  "optimal": cover.optimal, "gap": cover.gap, "cut": cover.stats.get("cut")},
        "flagged_apps": [{"app_id": a, "app_name": app_names.get(a, ""), "permissions": flagged[a]}
                         for a in sorted(flagged) if a in grant_apps],
        # How each app's FullAccess grants were treated, and why (the plan's grants.csv says it row by row)
        "fullaccess": {"app_permissions": "known" if source.kind == "inventory" and inv.app_permissions_known
                       else "unknown",
                       "apps": [{"app_id": a, "app_name": app_names.get(a, ""), "smtp_reach": u.smtp,
                                 "imap_pop": u.imap, "removed": u.remove, "why": u.why}
                                for a, u in sorted(uses.items())]},
    }
    meta["existing_rbac"] = _existing_meta(inv, rbac, app_names)
    meta["mail_access"] = _mail_meta(inv, mail_reports, mail_sets, batch_of)
    return Plan(meta, tuple(plan_grants), tuple(groups), tuple(scopes), tuple(assignments), tuple(plan_batches),
                tuple(reuse.attribute_holders(inv.mailboxes, used_terms)),
                existing=_plan_existing(rbac, app_names, batch_of), mail_access=mail_access,
                mail_reach=dict(mail_sets) if mail_access else {}, policies=mail_policies)


def _mail_key(app: str) -> str:
    """The cover's key for an app's Graph/EWS reach (its SMTP reach is keyed by the app id)."""
    return f"{app}|graph-ews"


def _mail_reports(inv, app_names: dict[str, str]) -> tuple[aap_report.AppAccessReport, ...]:
    access = inv.mail_access
    if not (access.policies_read or access.permissions_read):
        return ()  # an inventory taken before these reads (or a grants CSV): nothing is known, nothing planned
    return aap_report.report_apps(access, frozenset(m.address for m in inv.mailboxes), tuple(inv.groups),
                                  names=app_names)


def _not_migrated(flagged: dict[str, list[str]], reports, mail_sets: dict[str, frozenset[str]]) -> dict[str, list[str]]:
    """The unscoped-permission flags, less the permissions the plan moves to RBAC (their consent is removed in the
    app's batch, so they stop reaching beyond the app's set there)."""
    moved = {(r.app_id, f"{t.resource}/{t.permission}".lower()) for r in reports if r.app_id in mail_sets
             for t in r.targets}
    out = {app: [p for p in perms if (app, p.lower()) not in moved] for app, perms in flagged.items()}
    return {app: perms for app, perms in out.items() if perms}


def _plan_mail(reports, mail_sets: dict[str, frozenset[str]], batch_of: dict[str, int], app_names: dict[str, str]
               ) -> tuple[tuple[PlanMailAccess, ...], tuple[PlanPolicy, ...]]:
    access: list[PlanMailAccess] = []
    policies: list[PlanPolicy] = []
    for r in reports:
        if r.app_id not in mail_sets:
            continue
        name = r.app_name or app_names.get(r.app_id, "")
        access += [PlanMailAccess(r.app_id, name, t.permission, t.resource, t.role, batch_of[r.app_id])
                   for t in r.targets]
        policies += [PlanPolicy(p.identity, r.app_id, name, p.access_right, p.scope, batch_of[r.app_id])
                     for p in sorted(r.policies, key=lambda p: p.identity.lower())]
    return tuple(access), tuple(policies)


def _mail_meta(inv, reports, mail_sets: dict[str, frozenset[str]], batch_of: dict[str, int]) -> dict:
    """plan.json `mail_access`: what the inventory read, and every app an access policy or a fenced permission
    concerns: migrated here (with its batch), or reported only, with what an admin could do."""
    out: dict = {"read": inv.mail_access.manifest(), "summary": aap_report.summary(reports), "apps": []}
    for r in reports:
        planned = r.app_id in mail_sets
        note = r.why or " ".join(r.advice)
        if r.status == aap_report.MIGRATE and not planned:
            note = "its policies allow no mailbox: nothing to scope; the consent reaches nothing today"
        out["apps"].append({
            "app_id": r.app_id, "app_name": r.app_name, "status": r.status, "planned": planned,
            "batch": batch_of.get(r.app_id) if planned else None,
            "mailboxes": None if r.reach is None else len(r.reach),
            "permissions": [f"{t.resource}/{t.permission}" for t in r.targets],
            "roles": sorted({t.role for t in r.targets}) if planned else [],
            "policies": [{"identity": p.identity, "access_right": p.access_right, "scope": p.scope}
                         for p in r.policies],
            "reuse_group": r.reuse_group, "shared_with": list(r.shared_with), "note": note})
    return out


def _existing_meta(inv, rbac: dict[str, existing_rbac.AppRbac], app_names: dict[str, str]) -> dict:
    """plan.json `existing_rbac`: whether the inventory read them at all, and the verdict per app holding one."""
    if not inv.rbac_known:
        return {"read": False, "note": "The inventory did not read existing RBAC for Applications assignments "
                                       "(exports without the Get-ManagementRoleAssignment file): an app already "
                                       "moved by hand would be planned as if it had none"}
    return {"read": True, "apps": [{"app_id": a, "app_name": app_names.get(a, ""), "status": r.status,
                                    "assignments": [x.name for x in r.assignments], "note": r.note}
                                   for a, r in sorted(rbac.items())]}


def _plan_existing(rbac: dict[str, existing_rbac.AppRbac], app_names: dict[str, str],
                   batch_of: dict[str, int]) -> tuple[PlanExisting, ...]:
    """existing.csv rows: every assignment of the plan's role an app already holds, and what the plan does with it."""
    out = []
    for app, r in sorted(rbac.items()):
        action = (ExistingAction.REUSE if r.status in existing_rbac.PLANNED else
                  ExistingAction.LEFT if r.status in existing_rbac.LEFT else ExistingAction.NONE)
        for a in r.assignments:
            reused = action == ExistingAction.REUSE
            out.append(PlanExisting(app, app_names.get(app, ""), a.name, a.role, a.scope, a.filter, action,
                                    batch_of[app] if reused else None, a.mailboxes if reused else frozenset(),
                                    r.note))
    return tuple(out)


def _plan_groups(elements: list[frozenset[str]], existing: list, first: Mapping, first_app: dict[int, int],
                 apps_using: dict[int, int], namer: naming.Namer, elem_hash: dict[int, str]
                 ) -> tuple[list[PlanGroup], dict[int, str], dict[int, tuple[str, str]]]:
    """The plan's groups (new, or an existing one reused), keyed in the order batches first need them; returns
    them, each cover element's group key and each attribute element's (attribute, value)."""
    group_elems = sorted((i for i, x in enumerate(existing) if x is None or x.kind == "group"),
                         key=lambda i: (first_app[i], -len(elements[i]), sorted(elements[i])))
    width = max(4, len(str(len(group_elems))))
    key_of = {i: f"G{n:0{width}d}" for n, i in enumerate(group_elems, start=1)}
    term_of = {i: x.attribute for i, x in enumerate(existing)
               if x is not None and x.kind == "attribute" and x.attribute is not None}
    groups: list[PlanGroup] = []
    for i in group_elems:
        key = key_of[i]
        meets = existing[i]
        reused = meets.group if meets is not None else None  # group_elems: None or kind "group"
        if reused is None:
            name = namer.name(key, elem_hash[i])
            alias = namer.alias(name)
            groups.append(PlanGroup(key, name, NEW, "", elements[i], alias, namer.address(alias), first[i],
                                    apps_using[i]))
        else:
            # alias left empty: the inventory does not record an existing group's alias, and nothing creates it
            groups.append(PlanGroup(key, reused.name, REUSE, reused.dn, elements[i], "", reused.address, first[i],
                                    apps_using[i]))
    return groups, key_of, term_of


def _plan_scopes(batches: list[tuple[str, ...]], app_groups: dict[str, tuple[int, ...]], key_of: dict[int, str],
                 term_of: dict[int, tuple[str, str]], groups_by_key: dict[str, PlanGroup], batch_of: dict[str, int],
                 app_names: dict[str, str], role: str, namer: naming.Namer, elem_hash: dict[int, str],
                 mail_groups: dict[str, tuple[int, ...]] | None = None, mail_roles: dict[str, list[str]] | None = None
                 ) -> tuple[list[PlanScope], list[PlanAssignment], dict[tuple[str, int], str]]:
    """One scope per distinct combination of an app's sets (at most MAX_TERMS_PER_SCOPE terms each) and one
    assignment per app and scope, in batch order; returns them and the scope that carries each (app, element).
    An app's Graph/EWS reach is a combination of its own: one assignment per Application role on its scopes
    (shared with any app, SMTP or not, whose combination is the same)."""
    scopes: list[PlanScope] = []
    scope_by_sig: dict[tuple, PlanScope] = {}
    assignments: list[PlanAssignment] = []
    scope_of_elem: dict[tuple[str, int], str] = {}
    mail_groups, mail_roles = mail_groups or {}, mail_roles or {}
    ordered_apps = [a for apps in batches for a in apps]
    tracks: list[tuple[str, str, tuple[int, ...], tuple[str, ...]]] = [
        (app, KIND_SMTP, app_groups[app], (role,)) for app in ordered_apps if app in app_groups]
    tracks += [(app, KIND_GRAPH_EWS, mail_groups[app], tuple(mail_roles[app])) for app in ordered_apps
               if app in mail_groups]
    order = {app: n for n, app in enumerate(ordered_apps)}
    tracks.sort(key=lambda t: order[t[0]])  # stable: an app's SMTP track before its Graph/EWS one
    s_width = max(4, len(str(len(tracks))))
    a_width = max(5, len(str(sum(len(t[3]) for t in tracks))))
    for app, kind, idx, roles in tracks:
        gterms = sorted((i for i in idx if i in key_of), key=lambda i: key_of[i])
        aterms = sorted((i for i in idx if i in term_of), key=lambda i: term_of[i])
        terms = gterms + aterms
        for start in range(0, len(terms), MAX_TERMS_PER_SCOPE):
            chunk = terms[start:start + MAX_TERMS_PER_SCOPE]
            sig = tuple(chunk)
            scope = scope_by_sig.get(sig)
            if scope is None:
                gkeys = tuple(key_of[i] for i in chunk if i in key_of)
                attrs = tuple(term_of[i] for i in chunk if i in term_of)
                key = f"S{len(scopes) + 1:0{s_width}d}"
                name = namer.name(key, naming.short_hash(*(elem_hash[i] for i in chunk)))
                note = (f"{FUTURE_NOTE}: " + "; ".join(f"{a} = {opath.quote(v)}" for a, v in attrs)) if attrs else ""
                scope = PlanScope(key, name, render_filter(gkeys, attrs, groups_by_key), gkeys,
                                  scope_kind(gkeys, attrs), attrs, batch_of[app], note)
                scope_by_sig[sig] = scope
                scopes.append(scope)
            if kind == KIND_SMTP:
                for i in chunk:
                    scope_of_elem[(app, i)] = scope.key
            for r in roles:
                key = f"A{len(assignments) + 1:0{a_width}d}"
                # the SMTP name's hash input is unchanged (names of existing plans stay the same)
                name = namer.name(key, naming.short_hash(app, scope.name) if kind == KIND_SMTP
                                  else naming.short_hash(app, scope.name, r))
                assignments.append(PlanAssignment(key, app, app_names.get(app, ""), r, scope.key, batch_of[app],
                                                  name, kind))
    return scopes, assignments, scope_of_elem


def _plan_batches(batches: list[tuple[str, ...]], app_sets: dict[str, frozenset[str]], flagged: dict[str, list[str]],
                  groups: list[PlanGroup], scopes: list[PlanScope], assignments: list[PlanAssignment], *,
                  pilot: bool, mail_sets: Mapping[str, frozenset[str]] | None = None,
                  mail_access: tuple[PlanMailAccess, ...] = (), mail_policies: tuple[PlanPolicy, ...] = ()
                  ) -> list[PlanBatch]:
    """batches.csv rows: apps, counts and a note (pilot or wave, unscoped permissions, open attribute scopes,
    Graph/EWS access moved off access policies)."""
    mail_sets = mail_sets or {}
    plan_batches: list[PlanBatch] = []
    for n, apps in enumerate(batches, start=1):
        notes = ["pilot: smallest blast radius first" if (n == 1 and pilot) else "wave"]
        moot = [a for a in apps if a in flagged]
        if moot:
            notes.append(f"{len(moot)} app(s) hold unscoped Entra permissions, scoping is moot until removed: "
                         + ", ".join(f"{a} ({', '.join(flagged[a])})" for a in moot))
        open_scopes = [s.key for s in scopes if s.batch == n and s.attributes]
        if open_scopes:
            notes.append(f"attribute scope(s) {', '.join(open_scopes)}: {FUTURE_NOTE}")
        mail_apps = [a for a in apps if a in mail_sets]
        if mail_apps:
            perms = sum(1 for m in mail_access if m.batch == n)
            pols = sum(1 for p in mail_policies if p.batch == n)
            notes.append(f"Graph/EWS: {len(mail_apps)} app(s), {perms} permission(s) moved to Application roles; "
                         f"consent removed, then {pols} access polic{'y' if pols == 1 else 'ies'} after the token "
                         "wait")
        none: frozenset[str] = frozenset()
        mailboxes = set().union(*(app_sets.get(a, none) | mail_sets.get(a, none) for a in apps)) if apps else set()
        plan_batches.append(PlanBatch(n, tuple(apps), sum(len(app_sets.get(a, none)) for a in apps), "; ".join(notes),
                                      len(mailboxes), sum(1 for g in groups if g.batch == n and g.status == NEW),
                                      sum(1 for s in scopes if s.batch == n),
                                      sum(1 for a in assignments if a.batch == n)))
    return plan_batches


def _plan_grants(grants, app_names, flagged, role, app_groups, elements, key_of, term_of, scope_of_elem,
                 batch_of, uses: dict[str, FullAccessUse], rbac: dict[str, existing_rbac.AppRbac]) -> list[PlanGrant]:
    """grants.csv rows from the source's sorted (app_id, mailbox, right) tuples. SendAs: migrate, in the app's
    batch. FullAccess that is SMTP reach: keep (IMAP/POP) or migrate (--remove-fullaccess), in the app's batch
    (its mailbox is in the app's RBAC set); FullAccess that is not: keep, no batch."""
    out: list[PlanGrant] = []
    add, new = out.append, tuple.__new__
    start, n = 0, len(grants)
    while start < n:
        app = grants[start][0]
        end = start
        while end < n and grants[end][0] == app:
            end += 1
        name = app_names.get(app, "")
        flag = (f"; app also holds unscoped {', '.join(flagged[app])}: RBAC scoping does not limit it"
                if app in flagged else "")
        use = uses.get(app)
        keep_reason = (f"kept: no SMTP reach to move ({use.why}); FullAccess stays for IMAP/POP, which has no RBAC "
                       f"role{flag}") if use is not None else ""
        via: dict[str, str] = {}
        held = rbac.get(app)
        if held is not None and held.status in existing_rbac.LEFT:  # left as it is: every grant kept, no batch
            for _app, mailbox, right in grants[start:end]:
                add(new(PlanGrant, (app, name, mailbox, right, KEEP, held.note + flag, None)))
            start = end
            continue
        for a in held.assignments if held is not None else ():  # served already: removal only, after verification
            reason = (f"{role} already held through existing assignment {a.name!r}"
                      f"{f' (scope {a.scope})' if a.scope else ''}: legacy grant removed after verification{flag}")
            via.update(dict.fromkeys(a.mailboxes - via.keys(), reason))
        if app in app_groups:
            idx = sorted(app_groups[app], key=lambda i: (i not in key_of, key_of.get(i, ""), term_of.get(i, ("", ""))))
            for i in idx:
                label = key_of[i] if i in key_of else f"{term_of[i][0]} = {opath.quote(term_of[i][1])}"
                reason = f"{role} in scope {scope_of_elem[(app, i)]} via {label}{flag}"
                via.update(dict.fromkeys(elements[i] - via.keys(), reason))  # first set wins; C loops
        batch = batch_of.get(app)
        for _app, mailbox, right in grants[start:end]:  # tuple.__new__: no Python frame per row (1M rows)
            if right == Right.SEND_AS:
                add(new(PlanGrant, (app, name, mailbox, right, MIGRATE, via[mailbox], batch)))
            elif use is None or not use.smtp:  # (every FullAccess holder has a FullAccessUse)
                add(new(PlanGrant, (app, name, mailbox, right, KEEP, keep_reason, None)))
            elif use.remove:
                add(new(PlanGrant, (app, name, mailbox, right, MIGRATE,
                                    f"SMTP reach: {via[mailbox]}; FullAccess removed after the cut-over "
                                    f"(--remove-fullaccess; {use.why})", batch)))
            else:
                imap = "IMAP/POP" if use.imap else "IMAP/POP if the app uses it"
                add(new(PlanGrant, (app, name, mailbox, right, KEEP,
                                    f"SMTP reach: {via[mailbox]}; FullAccess kept for {imap}, which has no RBAC "
                                    f"role ({use.why})", batch)))
        start = end
    return out
