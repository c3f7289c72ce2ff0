"""Who could send as whom, when: the sandbox's time-stamped record and the invariant checker.

The tenant state writes three kinds of facts here whenever they change (INTERNALS.md §3):
- sendas(app, mailbox): the app's service principal holds an effective (allowed, not denied) SendAs grant;
- rbac(app, mailbox): the app holds `Application SMTP.SendAsApp` with the mailbox in scope, as configured (what
  Test-ServicePrincipalAuthorization sees); the data plane sees it `propagation_delay` seconds later;
- claim(app): the app's Entra SP holds the `SMTP.SendAsApp` app role, so tokens issued now carry the claim.
Plus a free-form change log (cmdlet and Graph calls) for the read-only debug endpoint.

`check()` proves the product's first two invariants over the whole record: no access gap for an original
(app, mailbox) pair, and no over-grant for any other pair, considering every token the app may hold (any token
issued in the last `token_lifetime`, carrying the claim state of its issue time).
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import asdict, dataclass, field

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
        self.rbac: dict[tuple[str, str], _Series] = {}
        self.claim: dict[str, _Series] = {}
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

    def set_rbac(self, t: float, app_id: str, mailbox: str, value: bool) -> None:
        self._set(self.rbac, (app_id, mailbox), t, value, "rbac")

    def set_claim(self, t: float, app_id: str, value: bool) -> None:
        self._set(self.claim, app_id, t, value, "claim")

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

    def rbac_at(self, app_id: str, mailbox: str, t: float) -> bool:
        """In scope as configured at t (Test-ServicePrincipalAuthorization's view)."""
        return self._at(self.rbac, (app_id, mailbox), t)

    def rbac_effective_at(self, app_id: str, mailbox: str, t: float) -> bool:
        """In scope as the data plane sees it at t (the configuration of t - propagation_delay)."""
        return self._at(self.rbac, (app_id, mailbox), t - self.settings.propagation_delay)

    def claim_at(self, app_id: str, t: float) -> bool:
        return self._at(self.claim, app_id, t)

    def can_send(self, app_id: str, mailbox: str, t: float, *, token_claim: bool) -> bool:
        """The data-plane rule (EXCHANGE.md §1) for a token that does or does not carry SMTP.SendAsApp."""
        sendas = self.sendas_effective_at(app_id, mailbox, t)
        rbac = self.rbac_effective_at(app_id, mailbox, t)
        if self.settings.claim_rule == "union":
            return sendas or rbac
        return sendas if token_claim else rbac

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
    gaps: list[Interval] = field(default_factory=list)
    overgrants: list[Interval] = field(default_factory=list)
    # original pairs the data plane did not serve even when the record started (say, an app with a SendAs grant
    # but no SMTP.SendAsApp claim under the documented rule): nothing later can open a gap for them.
    unserved_at_start: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.gaps and not self.overgrants

    def to_dict(self) -> dict:
        return {"ok": self.ok, "gaps": [asdict(i) for i in self.gaps],
                "overgrants": [asdict(i) for i in self.overgrants],
                "unserved_at_start": [list(p) for p in self.unserved_at_start]}


def _points(series: _Series | None, shift: float = 0.0) -> list[float]:
    return [t + shift for t in series.times] if series is not None else []


def check(timeline: Timeline, original_grants, *, until: float | None = None) -> Report:
    """Every interval in which an app could not send as a mailbox of `original_grants` (a set of
    (app_id, mailbox)), or could send as / was in RBAC scope for a mailbox outside it.

    A token issued at s lives until s + token_lifetime, so at time t the app may hold one issued anywhere in
    [t - lifetime, t]: a gap exists if any such token fails, an over-grant if any succeeds.
    `until` bounds the record; by default the state after the last change is followed to its steady end.
    An original pair the data plane did not serve at the start is listed in `unserved_at_start`, not as a gap."""
    s = timeline.settings
    life, delay, union = s.token_lifetime, s.propagation_delay, s.claim_rule == "union"
    sendas_delay = s.sendas_delay
    original = {(a.lower(), m.lower()) for a, m in original_grants}
    report = Report()
    with timeline._lock:
        pairs = sorted(original | set(timeline.sendas) | set(timeline.rbac))
        for app, mbx in pairs:
            sa, rb, cl = timeline.sendas.get((app, mbx)), timeline.rbac.get((app, mbx)), timeline.claim.get(app)
            points = {timeline.start}
            points.update(_points(sa))
            points.update(_points(sa, sendas_delay))
            points.update(_points(rb))
            points.update(_points(rb, delay))
            points.update(_points(cl))
            points.update(_points(cl, life))
            points = sorted(p for p in points if p >= timeline.start and (until is None or p < until))
            ends = points[1:] + [until if until is not None else None]
            had = (app, mbx) in original
            if had and _gap(timeline, app, mbx, timeline.start - 1.0, life, union, cl):
                report.unserved_at_start.append((app, mbx))
                continue
            current: tuple[float, str] | None = None
            out = report.gaps if had else report.overgrants
            for lo, hi in zip(points, ends):
                if hi is not None and hi <= lo:
                    continue
                mid = lo + (hi - lo) / 2 if hi is not None else lo + 1.0
                reason = _gap(timeline, app, mbx, mid, life, union, cl) if had else \
                    _over(timeline, app, mbx, mid, life, union, cl)
                if current and reason is None:
                    out.append(Interval(app, mbx, current[0], lo, current[1]))
                    current = None
                elif current and reason not in current[1].split("; then "):
                    current = (current[0], current[1] + "; then " + reason)  # one interval, every cause named
                elif reason and current is None:
                    current = (lo, reason)
            if current:
                out.append(Interval(app, mbx, current[0], until, current[1]))
    return report


def _claim_window(cl: _Series | None, start: float, t: float, life: float) -> tuple[bool, bool]:
    """(some token the app may hold at t carries the claim, some does not)."""
    lo = t - life  # before `start`, the loaded (initial) claim state holds
    if cl is None:
        return False, True
    return cl.any_true(lo, t), cl.any_false(lo, t)


def _gap(tl: Timeline, app: str, mbx: str, t: float, life: float, union: bool, cl) -> str | None:
    sendas = tl.sendas_effective_at(app, mbx, t)
    rbac = tl.rbac_effective_at(app, mbx, t)
    if union:
        return None if (sendas or rbac) else "neither a SendAs grant nor a propagated RBAC role serves the app"
    with_claim, without_claim = _claim_window(cl, tl.start, t, life)
    if with_claim and not sendas:
        return "a token carrying SMTP.SendAsApp needs the SendAs grant, which is gone"
    if without_claim and not rbac:
        return "a token without SMTP.SendAsApp needs the RBAC role in scope on the data plane, which it is not"
    return None


def _over(tl: Timeline, app: str, mbx: str, t: float, life: float, union: bool, cl) -> str | None:
    if tl.rbac_at(app, mbx, t):
        return "in RBAC scope (configuration) for a mailbox the app did not have"
    sendas = tl.sendas_effective_at(app, mbx, t)
    rbac = tl.rbac_effective_at(app, mbx, t)
    if union:
        if sendas or rbac:
            return "can send as a mailbox the app did not have"
        return None
    with_claim, without_claim = _claim_window(cl, tl.start, t, life)
    if with_claim and sendas:
        return "can send as a mailbox the app did not have (SendAs grant)"
    if without_claim and rbac:
        return "can send as a mailbox the app did not have (RBAC role still in force on the data plane)"
    return None
