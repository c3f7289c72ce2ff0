"""Who could send as whom, when: the sandbox's time-stamped record and the invariant checker.

The tenant state writes these facts here whenever they change (INTERNALS.md §3):
- sendas(app, mailbox): the app's service principal holds an effective (allowed, not denied) SendAs grant;
- fullaccess(app, mailbox): the same for an explicit FullAccess grant (Add-MailboxPermission);
- rbac(app, mailbox): the app holds `Application SMTP.SendAsApp` with the mailbox in scope, as configured (what
  Test-ServicePrincipalAuthorization sees); the data plane sees it `propagation_delay` seconds later;
- claim(app): the app's Entra SP holds the `SMTP.SendAsApp` app role, so tokens issued now carry the claim;
- imap_claim(app): the app's Entra SP holds `IMAP.AccessAsApp` or `POP.AccessAsApp`.
Both legacy grants reach the data plane `sendas_delay` seconds after they change. Plus a free-form change log
(cmdlet and Graph calls) for the read-only debug endpoint.

Reach (INTERNALS.md §3): SMTP: a token carrying SMTP.SendAsApp is served by a legacy grant, SendAs **or**
FullAccess (an app authenticates as a mailbox it holds FullAccess on); one without it by the propagated RBAC role
("documented" rule), or either path serves any token ("union"). IMAP/POP: a token carrying IMAP.AccessAsApp or
POP.AccessAsApp is served by FullAccess; nothing else serves IMAP/POP (there is no RBAC role for it).

`check()` proves the product's first two invariants over the whole record, for SMTP and for IMAP/POP apart: no
access gap for an original (app, mailbox) pair, and no over-grant for any other pair, considering every token the
app may hold (any token issued in the last `token_lifetime`, or the app's token lifetime policy, carrying the
claims the token service saw at its issue time: the SMTP.SendAsApp claim `graph_replication_delay` behind the
configuration).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import asdict, dataclass, field
from functools import partial

from migrator.sandbox.mailaccess import MailRecord, PermInterval, check_mail, interval_dicts, per_permission
from migrator.sandbox.settings import SandboxSettings


class _Series:
    """A boolean over time: its value when the fixture was loaded (`initial`, in force since long before) and the
    change points (time, value) after it, appended in time order."""

    __slots__ = ("initial", "times", "values")

    def __init__(self) -> None:
        self.initial = False
        self.times: list[float] = []
        self.values: list[bool] = []

    def set(self, t: float, value: bool, *, loading: bool = False) -> bool:
        if loading:
            changed = self.initial != value
            self.initial = value
            return changed
        current = self.values[-1] if self.values else self.initial
        if current == value:
            return False
        if self.times and t < self.times[-1]:
            t = self.times[-1]  # a clock never runs back; guard against float noise
        self.times.append(t)
        self.values.append(value)
        return True

    def at(self, t: float) -> bool:
        i = bisect.bisect_right(self.times, t) - 1
        return self.values[i] if i >= 0 else self.initial

    def any_true(self, lo: float, hi: float) -> bool:
        """True somewhere in [lo, hi]."""
        if self.at(lo):
            return True
        i = bisect.bisect_right(self.times, lo)
        j = bisect.bisect_right(self.times, hi)
        return any(self.values[i:j])

    def any_false(self, lo: float, hi: float) -> bool:
        if not self.at(lo):
            return True
        i = bisect.bisect_right(self.times, lo)
        j = bisect.bisect_right(self.times, hi)
        return not all(self.values[i:j])


@dataclass(frozen=True)
class Event:
    t: float
    kind: str  # "sendas" | "rbac" | "claim" | "token" | "change"
    data: dict


class Timeline:
    """Append-only; thread-safe. Times are Clock seconds. `start` is when the fixture was loaded: the initial state
    is taken to have been in force (and propagated) since long before."""

    def __init__(self, settings: SandboxSettings, start: float) -> None:
        self.settings = settings
        self.start = start
        self._lock = threading.RLock()
        self.sendas: dict[tuple[str, str], _Series] = {}
        self.fullaccess: dict[tuple[str, str], _Series] = {}
        self.rbac: dict[tuple[str, str], _Series] = {}
        self.claim: dict[str, _Series] = {}
        self.imap_claim: dict[str, _Series] = {}
        # app_id -> lifetime (s) of its access tokens where a token lifetime policy sets one (else the setting)
        self.lifetimes: dict[str, float] = {}
        # Graph/EWS access per permission (consent, Application Access Policy, RBAC): mailaccess.py
        self.mail = MailRecord()
        self.log: list[Event] = []
        self.loading = False  # True while TenantState.from_fixture records the initial state (not a change)

    # --- recording -------------------------------------------------------------------------------------------
    def _set(self, table: dict, key, t: float, value: bool, kind: str) -> None:
        if self.loading:  # the initial state: no lock, no log (a 100k-mailbox fixture sets ~10^5 of these)
            if value:
                series = table.get(key)
                if series is None:
                    series = table[key] = _Series()
                series.initial = True
            elif key in table:
                table[key].initial = False
            return
        with self._lock:
            series = table.get(key)
            if series is None:
                if not value:
                    return
                series = table[key] = _Series()
            if series.set(t, value, loading=self.loading) and not self.loading:
                data = {"app_id": key[0], "mailbox": key[1]} if isinstance(key, tuple) else {"app_id": key}
                self.log.append(Event(t, kind, {**data, "value": value}))

    def set_sendas(self, t: float, app_id: str, mailbox: str, value: bool) -> None:
        self._set(self.sendas, (app_id, mailbox), t, value, "sendas")

    def set_fullaccess(self, t: float, app_id: str, mailbox: str, value: bool) -> None:
        self._set(self.fullaccess, (app_id, mailbox), t, value, "fullaccess")

    def set_rbac(self, t: float, app_id: str, mailbox: str, value: bool) -> None:
        self._set(self.rbac, (app_id, mailbox), t, value, "rbac")

    def set_claim(self, t: float, app_id: str, value: bool) -> None:
        self._set(self.claim, app_id, t, value, "claim")

    def set_imap_claim(self, t: float, app_id: str, value: bool) -> None:
        self._set(self.imap_claim, app_id, t, value, "imap_claim")

    def note(self, t: float, kind: str, **data) -> None:
        """A change-log entry (a cmdlet or Graph write, a token issued)."""
        with self._lock:
            self.log.append(Event(t, kind, data))

    # --- queries ---------------------------------------------------------------------------------------------
    def _at(self, table: dict, key, t: float) -> bool:
        series = table.get(key)
        return series.at(t) if series is not None else False

    def sendas_at(self, app_id: str, mailbox: str, t: float) -> bool:
        """The grant is there at t, as configured (Get-RecipientPermission's view)."""
        return self._at(self.sendas, (app_id, mailbox), t)

    def sendas_effective_at(self, app_id: str, mailbox: str, t: float) -> bool:
        """The grant as the data plane sees it at t (the configuration of t - sendas_delay)."""
        return self._at(self.sendas, (app_id, mailbox), t - self.settings.sendas_delay)

    def fullaccess_at(self, app_id: str, mailbox: str, t: float) -> bool:
        """The FullAccess grant is there at t, as configured (Get-MailboxPermission's view)."""
        return self._at(self.fullaccess, (app_id, mailbox), t)

    def fullaccess_effective_at(self, app_id: str, mailbox: str, t: float) -> bool:
        """The FullAccess grant as the data plane sees it at t (legacy grants apply `sendas_delay` late)."""
        return self._at(self.fullaccess, (app_id, mailbox), t - self.settings.sendas_delay)

    def legacy_effective_at(self, app_id: str, mailbox: str, t: float) -> bool:
        """A legacy grant that carries SMTP (SendAs or FullAccess) as the data plane sees it at t."""
        return self.sendas_effective_at(app_id, mailbox, t) or self.fullaccess_effective_at(app_id, mailbox, t)

    def rbac_at(self, app_id: str, mailbox: str, t: float) -> bool:
        """In scope as configured at t (Test-ServicePrincipalAuthorization's view)."""
        return self._at(self.rbac, (app_id, mailbox), t)

    def rbac_effective_at(self, app_id: str, mailbox: str, t: float) -> bool:
        """In scope as the data plane sees it at t (the configuration of t - propagation_delay)."""
        return self._at(self.rbac, (app_id, mailbox), t - self.settings.propagation_delay)

    def claim_at(self, app_id: str, t: float) -> bool:
        return self._at(self.claim, app_id, t)

    def imap_claim_at(self, app_id: str, t: float) -> bool:
        return self._at(self.imap_claim, app_id, t)

    def claim_seen_at(self, app_id: str, t: float) -> bool:
        """The SMTP.SendAsApp claim a token issued at t carries: the configuration of t - graph_replication_delay
        (the token service learns of an assignment granted or deleted only once Graph has replicated it)."""
        return self._at(self.claim, app_id, t - self.settings.graph_replication_delay)

    def life(self, app_id: str) -> float:
        """Lifetime of the app's access tokens: its token lifetime policy's, else the sandbox setting."""
        return self.lifetimes.get(app_id, self.settings.token_lifetime)

    def can_send(self, app_id: str, mailbox: str, t: float, *, token_claim: bool) -> bool:
        """The SMTP rule for a token that does or does not carry SMTP.SendAsApp: legacy reach is SendAs or
        FullAccess (the claim rule says which tokens it serves), RBAC reach the propagated scope."""
        legacy = self.legacy_effective_at(app_id, mailbox, t)
        rbac = self.rbac_effective_at(app_id, mailbox, t)
        if self.settings.claim_rule == "union":
            return legacy or rbac
        return legacy if token_claim else rbac

    def can_open(self, app_id: str, mailbox: str, t: float, *, token_imap: bool) -> bool:
        """The IMAP/POP rule: a token carrying IMAP.AccessAsApp or POP.AccessAsApp, and FullAccess on the mailbox."""
        return token_imap and self.fullaccess_effective_at(app_id, mailbox, t)

    def to_dict(self, since: float | None = None) -> dict:
        with self._lock:
            events = [asdict(e) for e in self.log if since is None or e.t >= since]
        return {"start": self.start, "settings": self.settings.to_dict(), "events": events}


# --- the checker ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    app_id: str
    mailbox: str
    start: float
    end: float | None  # None: still so at the end of the record
    reason: str


@dataclass
class Report:
    gaps: list[Interval] = field(default_factory=list)  # SMTP
    overgrants: list[Interval] = field(default_factory=list)  # SMTP (and RBAC scope)
    imap_gaps: list[Interval] = field(default_factory=list)  # IMAP/POP
    imap_overgrants: list[Interval] = field(default_factory=list)
    # original pairs the data plane did not serve even when the record started (say, an app with a SendAs grant
    # but no SMTP.SendAsApp claim under the documented rule): nothing later can open a gap for them.
    unserved_at_start: list[tuple[str, str]] = field(default_factory=list)
    imap_unserved_at_start: list[tuple[str, str]] = field(default_factory=list)
    # Graph/EWS access per permission (mailaccess.check_mail): (app, permission, mailbox) intervals
    mail_gaps: list[PermInterval] = field(default_factory=list)
    mail_overgrants: list[PermInterval] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.gaps or self.overgrants or self.imap_gaps or self.imap_overgrants or self.mail_gaps
                    or self.mail_overgrants)

    def per_permission(self) -> dict[str, dict[str, int]]:
        """Graph/EWS gaps and over-grants counted per permission (only permissions with either)."""
        return per_permission(self.mail_gaps, self.mail_overgrants)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "gaps": [asdict(i) for i in self.gaps],
                "overgrants": [asdict(i) for i in self.overgrants],
                "imap_gaps": [asdict(i) for i in self.imap_gaps],
                "imap_overgrants": [asdict(i) for i in self.imap_overgrants],
                "unserved_at_start": [list(p) for p in self.unserved_at_start],
                "imap_unserved_at_start": [list(p) for p in self.imap_unserved_at_start],
                "mail_gaps": interval_dicts(self.mail_gaps), "mail_overgrants": interval_dicts(self.mail_overgrants),
                "per_permission": self.per_permission()}


def _points(series: _Series | None, shift: float = 0.0) -> list[float]:
    return [t + shift for t in series.times] if series is not None else []


def _initially(table: dict, key) -> bool:
    series = table.get(key)
    return series.initial if series is not None else False


def original_reach(timeline: Timeline) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(SMTP pairs, IMAP/POP pairs) the loaded tenant granted: SendAs, FullAccess of an app whose tokens carried
    SMTP.SendAsApp (any FullAccess under the union rule), the RBAC role in scope; FullAccess of an app holding
    IMAP.AccessAsApp or POP.AccessAsApp."""
    union = timeline.settings.claim_rule == "union"
    smtp = {k for k, s in timeline.sendas.items() if s.initial}
    smtp |= {k for k, s in timeline.rbac.items() if s.initial}
    smtp |= {(a, m) for (a, m), s in timeline.fullaccess.items()
             if s.initial and (union or _initially(timeline.claim, a))}
    imap = {(a, m) for (a, m), s in timeline.fullaccess.items() if s.initial and _initially(timeline.imap_claim, a)}
    return smtp, imap


def check(timeline: Timeline, original_grants=None, *, original_imap=None, until: float | None = None) -> Report:
    """Every interval in which an app could not reach a mailbox of its original reach, or could reach (or was in
    RBAC scope for) a mailbox outside it; SMTP and IMAP/POP apart. The original reach is what the loaded tenant
    granted (original_reach) plus `original_grants` (SMTP) and `original_imap`, sets of (app_id, mailbox): the
    pairs a caller wants protected although the loaded tenant did not serve them (listed as unserved_at_start).

    A token issued at s lives until s + token_lifetime, so at time t the app may hold one issued anywhere in
    [t - lifetime, t]: a gap exists if any such token fails, an over-grant if any succeeds.
    `until` bounds the record; by default the state after the last change is followed to its steady end.
    An original pair the data plane did not serve at the start is listed in `unserved_at_start`, not as a gap."""
    s = timeline.settings
    delay, union = s.propagation_delay, s.claim_rule == "union"
    legacy_delay, claim_delay = s.sendas_delay, s.graph_replication_delay
    with timeline._lock:
        derived_smtp, derived_imap = original_reach(timeline)
        smtp = derived_smtp | {(a.lower(), m.lower()) for a, m in original_grants or ()}
        imap = derived_imap | {(a.lower(), m.lower()) for a, m in original_imap or ()}
        report = Report()
        pairs = sorted(smtp | set(timeline.sendas) | set(timeline.fullaccess) | set(timeline.rbac))
        for app, mbx in pairs:
            sa, fa = timeline.sendas.get((app, mbx)), timeline.fullaccess.get((app, mbx))
            rb, cl = timeline.rbac.get((app, mbx)), timeline.claim.get(app)
            life = timeline.life(app)
            points = {timeline.start}
            for series, shift in ((sa, 0.0), (sa, legacy_delay), (fa, 0.0), (fa, legacy_delay), (rb, 0.0),
                                  (rb, delay), (cl, claim_delay), (cl, claim_delay + life)):
                points.update(_points(series, shift))
            had = (app, mbx) in smtp
            if had and _gap(timeline, app, mbx, timeline.start - 1.0, life, union, cl):
                report.unserved_at_start.append((app, mbx))
                continue
            judge = partial(_gap if had else _over, timeline, app, mbx, life=life, union=union, cl=cl)
            _intervals(timeline, app, mbx, points, until, judge, report.gaps if had else report.overgrants)
        for app, mbx in sorted(imap | set(timeline.fullaccess)):
            fa, ic = timeline.fullaccess.get((app, mbx)), timeline.imap_claim.get(app)
            life = timeline.life(app)
            points = {timeline.start}
            for series, shift in ((fa, 0.0), (fa, legacy_delay), (ic, 0.0), (ic, life)):
                points.update(_points(series, shift))
            had = (app, mbx) in imap
            if had and _imap_gap(timeline, app, mbx, timeline.start - 1.0, life, ic):
                report.imap_unserved_at_start.append((app, mbx))
                continue
            judge = partial(_imap_gap if had else _imap_over, timeline, app, mbx, life=life, ic=ic)
            _intervals(timeline, app, mbx, points, until, judge, report.imap_gaps if had else report.imap_overgrants)
        report.mail_gaps, report.mail_overgrants = check_mail(timeline, until=until)
    return report


def _intervals(timeline: Timeline, app: str, mbx: str, points: set, until: float | None, judge, out: list) -> None:
    """Judge the middle of every stretch between change points; merge consecutive bad stretches into one
    interval that names every cause."""
    ordered = sorted(p for p in points if p >= timeline.start and (until is None or p < until))
    ends = ordered[1:] + [until if until is not None else None]
    current: tuple[float, str] | None = None
    for lo, hi in zip(ordered, ends):
        if hi is not None and hi <= lo:
            continue
        mid = lo + (hi - lo) / 2 if hi is not None else lo + 1.0
        reason = judge(mid)
        if current and reason is None:
            out.append(Interval(app, mbx, current[0], lo, current[1]))
            current = None
        elif current and reason not in current[1].split("; then "):
            current = (current[0], current[1] + "; then " + reason)  # one interval, every cause named
        elif reason and current is None:
            current = (lo, reason)
    if current:
        out.append(Interval(app, mbx, current[0], until, current[1]))


def _claim_window(cl: _Series | None, start: float, t: float, life: float,
                  claim_delay: float = 0.0) -> tuple[bool, bool]:
    """(some token the app may hold at t carries the claim, some does not). A token issued at s carries the claim
    configured at s - claim_delay (Graph replication)."""
    hi = t - claim_delay
    lo = hi - life  # before `start`, the loaded (initial) claim state holds
    if cl is None:
        return False, True
    return cl.any_true(lo, hi), cl.any_false(lo, hi)


def _gap(tl: Timeline, app: str, mbx: str, t: float, life: float, union: bool, cl) -> str | None:
    legacy = tl.legacy_effective_at(app, mbx, t)
    rbac = tl.rbac_effective_at(app, mbx, t)
    if union:
        return None if (legacy or rbac) else \
            "neither a legacy grant (SendAs or FullAccess) nor a propagated RBAC role serves the app"
    with_claim, without_claim = _claim_window(cl, tl.start, t, life, tl.settings.graph_replication_delay)
    if with_claim and not legacy:
        return "a token carrying SMTP.SendAsApp needs a SendAs or FullAccess grant, which is gone"
    if without_claim and not rbac:
        return "a token without SMTP.SendAsApp needs the RBAC role in scope on the data plane, which it is not"
    return None


def _over(tl: Timeline, app: str, mbx: str, t: float, life: float, union: bool, cl) -> str | None:
    if tl.rbac_at(app, mbx, t):
        return "in RBAC scope (configuration) for a mailbox the app did not have"
    legacy = tl.legacy_effective_at(app, mbx, t)
    rbac = tl.rbac_effective_at(app, mbx, t)
    if union:
        if legacy or rbac:
            return "can send as a mailbox the app did not have"
        return None
    with_claim, without_claim = _claim_window(cl, tl.start, t, life, tl.settings.graph_replication_delay)
    if with_claim and legacy:
        return "can send as a mailbox the app did not have (legacy grant)"
    if without_claim and rbac:
        return "can send as a mailbox the app did not have (RBAC role still in force on the data plane)"
    return None


def _imap_gap(tl: Timeline, app: str, mbx: str, t: float, life: float, ic) -> str | None:
    _with_claim, without_claim = _claim_window(ic, tl.start, t, life)
    if without_claim:
        return "a token without IMAP.AccessAsApp/POP.AccessAsApp cannot open the mailbox"
    if not tl.fullaccess_effective_at(app, mbx, t):
        return "IMAP/POP needs the FullAccess grant, which is gone (nothing else serves IMAP/POP)"
    return None


def _imap_over(tl: Timeline, app: str, mbx: str, t: float, life: float, ic) -> str | None:
    with_claim, _without = _claim_window(ic, tl.start, t, life)
    if with_claim and tl.fullaccess_effective_at(app, mbx, t):
        return "can open (IMAP/POP) a mailbox the app did not have"
    return None
