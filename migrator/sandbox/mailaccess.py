"""Graph/EWS mailbox access per permission: the record over time, the data plane and the checker.

For every app and every permission of `model.AAP_PERMISSIONS` (Mail.Read, Mail.Send, Calendars.ReadWrite,
full_access_as_app, ...) the sandbox records three facts as they change (configuration view):
- claim(app, P): the app's service principal holds P as an Entra application permission (admin-consented), so its
  tokens for the resource issued now carry P (the token service sees it `graph_replication_delay` later);
- policy(app): the mailboxes the app's Application Access Policies let its Entra permissions reach (None: every
  mailbox, the app has no policy); the data plane sees it `access_policy_delay` later;
- rbac(app, P): the mailboxes in scope of the app's enabled `Application ...` role assignments serving P (direct
  members only); the data plane sees it `propagation_delay` later.

Data plane: app A may use P on mailbox M at t with a token issued at s (s <= t < s + lifetime) when
  (the token carries P and the policy seen at t allows M) or (the RBAC scope seen at t holds M).
Entra and RBAC are a union, so a token that carries P is served by either path, one without P by RBAC only.

`check_mail()` proves, per permission, no gap (an original (app, P, mailbox) not served by some token the app may
hold) and no over-grant (any other triple served, or in RBAC scope as configured), like timeline.check for SMTP.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING

from migrator.model import AAP_PERMISSIONS

if TYPE_CHECKING:
    from migrator.sandbox.timeline import Interval, Timeline, _Series

Reach = frozenset[str] | None  # None: every mailbox


class SetSeries:
    """A mailbox set over time: its value at load (`initial`) and the change points after it."""

    __slots__ = ("initial", "times", "values")

    def __init__(self, initial: Reach = frozenset()) -> None:
        self.initial: Reach = initial
        self.times: list[float] = []
        self.values: list[Reach] = []

    def current(self) -> Reach:
        return self.values[-1] if self.values else self.initial

    def set(self, t: float, value: Reach, *, loading: bool = False) -> bool:
        if loading:
            changed = self.initial != value
            self.initial = value
            return changed
        if _same(self.current(), value):
            return False
        if self.times and t < self.times[-1]:
            t = self.times[-1]
        self.times.append(t)
        self.values.append(value)
        return True

    def at(self, t: float) -> Reach:
        i = bisect.bisect_right(self.times, t) - 1
        return self.values[i] if i >= 0 else self.initial

    def all_values(self) -> list[Reach]:
        return [self.initial, *self.values]


def _same(a: Reach, b: Reach) -> bool:
    if a is None or b is None:
        return a is b
    return a is b or a == b


def contains(reach: Reach, mailbox: str) -> bool:
    return True if reach is None else mailbox in reach


class MailRecord:
    """The three facts per app and permission (see the module docstring). Lives in `Timeline.mail`; written under
    the tenant state's lock."""

    def __init__(self) -> None:
        self.claim: dict[tuple[str, str], _Series] = {}
        self.policy: dict[str, SetSeries] = {}
        self.rbac: dict[tuple[str, str], SetSeries] = {}
        self.universe: frozenset[str] = frozenset()  # every mailbox address of the tenant

    def tracked(self, app_id: str) -> set[str]:
        """Permissions followed for the app (ever consented or ever served by RBAC)."""
        return {p for a, p in self.claim if a == app_id} | {p for a, p in self.rbac if a == app_id}

    def record(self, tl: Timeline, t: float, app_id: str, *, claims: set[str], policy: Reach,
               rbac: dict[str, frozenset[str]]) -> None:
        from migrator.sandbox.timeline import _Series

        loading = tl.loading
        perms = self.tracked(app_id) | claims | {p for p, s in rbac.items() if s}
        if not perms and app_id not in self.policy:
            return
        series = self.policy.get(app_id)
        if series is None:  # first seen: before it, the app had no policy (the default)
            series = self.policy[app_id] = SetSeries(None)
        if series.set(t, policy, loading=loading) and not loading:
            tl.note(t, "mail_policy", app_id=app_id, mailboxes=_size(policy))
        for perm in sorted(perms):
            key = (app_id, perm)
            cl = self.claim.get(key)
            if cl is None:
                cl = self.claim[key] = _Series()
            if cl.set(t, perm in claims, loading=loading) and not loading:
                tl.note(t, "mail_claim", app_id=app_id, permission=perm, value=perm in claims)
            rb = self.rbac.get(key)
            if rb is None:
                rb = self.rbac[key] = SetSeries(frozenset())
            if rb.set(t, rbac.get(perm, frozenset()), loading=loading) and not loading:
                tl.note(t, "mail_rbac", app_id=app_id, permission=perm, mailboxes=len(rbac.get(perm, ())))

    # --- data plane --------------------------------------------------------------------------------------------
    def claim_seen_at(self, tl: Timeline, app_id: str, perm: str, t: float) -> bool:
        """Whether a token issued at t carries P: the consent of t - graph_replication_delay."""
        series = self.claim.get((app_id, perm))
        return series.at(t - tl.settings.graph_replication_delay) if series is not None else False

    def policy_effective_at(self, tl: Timeline, app_id: str, t: float) -> Reach:
        series = self.policy.get(app_id)
        return series.at(t - tl.settings.access_policy_delay) if series is not None else None

    def rbac_effective_at(self, tl: Timeline, app_id: str, perm: str, t: float) -> frozenset[str]:
        series = self.rbac.get((app_id, perm))
        value = series.at(t - tl.settings.propagation_delay) if series is not None else frozenset()
        return value or frozenset()

    def can_use(self, tl: Timeline, app_id: str, perm: str, mailbox: str, t: float, *, token_has: bool) -> bool:
        if mailbox in self.rbac_effective_at(tl, app_id, perm, t):
            return True
        return token_has and contains(self.policy_effective_at(tl, app_id, t), mailbox)


def _size(reach: Reach) -> int | str:
    return "all" if reach is None else len(reach)


# --- the checker ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PermInterval:
    app_id: str
    permission: str
    mailbox: str
    start: float
    end: float | None
    reason: str


def original_mail_reach(tl: Timeline) -> dict[tuple[str, str], Reach]:
    """Per (app, permission): the mailboxes the loaded tenant served (consent fenced by the policy, or RBAC in
    scope); None: every mailbox (a consented app without policy)."""
    rec = tl.mail
    out: dict[tuple[str, str], Reach] = {}
    for (app, perm), rb in rec.rbac.items():
        cl = rec.claim.get((app, perm))
        served: frozenset[str] = rb.initial or frozenset()
        reach: Reach = served
        if cl is not None and cl.initial:
            pol = rec.policy.get(app)
            allowed = pol.initial if pol is not None else None
            reach = None if allowed is None else served | allowed
        out[(app, perm)] = reach
    return out


def check_mail(tl: Timeline, *, until: float | None = None) -> tuple[list[PermInterval], list[PermInterval]]:
    """(gaps, over-grants) per app, permission and mailbox over the whole record.

    Mailboxes that belong to the same sets (every policy and RBAC value the record holds, and the original reach)
    are judged alike, so each such class is judged once: a tenant-wide app in a 100k-mailbox tenant costs one
    judgement, not 100k."""
    rec, s = tl.mail, tl.settings
    originals = original_mail_reach(tl)
    gaps: list[PermInterval] = []
    overs: list[PermInterval] = []
    for app, perm in sorted(rec.rbac):
        cl, rb, pol = rec.claim.get((app, perm)), rec.rbac[(app, perm)], rec.policy.get(app)
        life = tl.life(app)
        points = {tl.start}
        if cl is not None:
            points.update(t + s.graph_replication_delay for t in cl.times)
            points.update(t + s.graph_replication_delay + life for t in cl.times)
        if pol is not None:
            points.update(t + s.access_policy_delay for t in pol.times)
        points.update(rb.times)
        points.update(t + s.propagation_delay for t in rb.times)
        had = originals[(app, perm)]
        values = [*(pol.all_values() if pol is not None else [None]), *rb.all_values(), had]
        explicit = list(dict.fromkeys(v for v in values if v is not None))
        inside: set[str] = set().union(*explicit)
        classes: dict[tuple[bool, ...], list[str]] = {}
        for mbx in sorted(inside):
            classes.setdefault((contains(had, mbx), *(mbx in v for v in explicit)), []).append(mbx)
        stretch = partial(_stretch, tl, app, perm, cl, life, {})
        for members in classes.values():
            _judge_class(tl, app, perm, members[0], contains(had, members[0]), members, points, until, stretch,
                         (gaps, overs))
        if any(v is None for v in values):  # every other mailbox: in no explicit set, judged as one, listed if bad
            _judge_class(tl, app, perm, OUTSIDE, had is None, (rec.universe, inside), points, until, stretch,
                         (gaps, overs))
    return gaps, overs


OUTSIDE = "\x00outside"  # a mailbox name no explicit set holds: stands for the mailboxes in none of them


def _judge_class(tl: Timeline, app: str, perm: str, probe: str, mine: bool,
                 members: list[str] | tuple[frozenset[str], set[str]], points: set, until: float | None, stretch,
                 into: tuple[list, list]) -> None:
    """Judge one mailbox standing for its class (`mine`: in the original reach); on a bad verdict, the same
    intervals for every member. `members`: a list, or (universe, inside) for the mailboxes in no explicit set."""
    from migrator.sandbox.timeline import _intervals

    out: list[Interval] = []
    judge = partial(_judge_gap if mine else _judge_over, stretch, probe, perm)
    _intervals(tl, app, probe, points, until, judge, out)
    if not out:
        return
    names = members if isinstance(members, list) else sorted(members[0] - members[1])
    target = into[0] if mine else into[1]
    for mbx in names:
        target.extend(PermInterval(app, perm, mbx, i.start, i.end, i.reason) for i in out)


def _stretch(tl: Timeline, app: str, perm: str, cl, life: float, cache: dict, t: float):
    """(some token carries P, some token lacks P, policy reach seen, RBAC reach seen, RBAC configured) at t."""
    hit = cache.get(t)
    if hit is None:
        from migrator.sandbox.timeline import _claim_window

        with_p, without_p = _claim_window(cl, tl.start, t, life, tl.settings.graph_replication_delay)
        rec = tl.mail
        rb = rec.rbac.get((app, perm))
        hit = cache[t] = (with_p, without_p, rec.policy_effective_at(tl, app, t),
                          rec.rbac_effective_at(tl, app, perm, t), (rb.at(t) if rb is not None else None) or
                          frozenset())
    return hit


def _judge_gap(stretch, mbx: str, perm: str, t: float) -> str | None:
    with_p, without_p, policy, rbac, _cfg = stretch(t)
    if without_p and mbx not in rbac:
        return f"a token without {perm} needs the RBAC role in scope on the data plane, which it is not"
    if with_p and mbx not in rbac and not contains(policy, mbx):
        return f"a token carrying {perm} is served neither by the consent (the access policy excludes the " \
               "mailbox) nor by RBAC"
    return None


def _judge_over(stretch, mbx: str, perm: str, t: float) -> str | None:
    with_p, _without_p, policy, rbac, cfg = stretch(t)  # RBAC serves a token with or without P
    if mbx in cfg:
        return f"in RBAC scope (configuration) for {perm} on a mailbox the app did not reach"
    if with_p and contains(policy, mbx):
        return f"can use {perm} on a mailbox the app did not reach (Entra consent, the access policy allows it)"
    if mbx in rbac:
        return f"can use {perm} on a mailbox the app did not reach (RBAC role in force on the data plane)"
    return None


def per_permission(gaps: list[PermInterval], overs: list[PermInterval]) -> dict[str, dict[str, int]]:
    """{permission: {"gaps": n, "overgrants": n}} for the permissions with either."""
    out: dict[str, dict[str, int]] = {}
    for kind, rows in (("gaps", gaps), ("overgrants", overs)):
        for i in rows:
            out.setdefault(i.permission, {"gaps": 0, "overgrants": 0})[kind] += 1
    return dict(sorted(out.items()))


def interval_dicts(rows: list[PermInterval]) -> list[dict]:
    return [asdict(i) for i in rows]


__all__ = ["AAP_PERMISSIONS", "MailRecord", "PermInterval", "SetSeries", "check_mail", "contains",
           "original_mail_reach", "per_permission"]
