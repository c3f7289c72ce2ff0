"""Sends as evidence: while a migration runs, sign in over SMTP as the apps, again and again, and keep every answer.

The witness holds each app's token as a relay would (one token, renewed when it expires on the tenant's clock), so
tokens issued before a cut-over are still used after it, as in real life. For each app it probes mailboxes the app
reached when the witness started (each must keep answering 235: no gap) and mailboxes it did not (each must keep
answering 535: no over-grant). A pair whose first answer already differs (an app that could not send at the start,
say) is reported as such and not judged. The answers are compared afterwards with what the tenant's timeline says
(sandbox only), so the protocol and the model must agree.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from migrator.smtp.probe import GRANTED, ProbeAnswer, probe

Prober = Callable[[str, str], ProbeAnswer]
EXPIRED_RETRIES = 5  # new tokens tried when the last one expired before the server answered


@dataclass(frozen=True)
class WitnessPair:
    app_id: str
    mailbox: str
    expected: bool  # True: in the app's reach when the witness started


@dataclass
class WitnessReport:
    probes: int = 0
    granted: int = 0
    denied: int = 0
    errors: list[str] = field(default_factory=list)
    gaps: list[tuple[str, str, float]] = field(default_factory=list)  # (app, mailbox, clock time)
    overgrants: list[tuple[str, str, float]] = field(default_factory=list)
    unjudged: list[tuple[str, str]] = field(default_factory=list)  # first answer already unlike the expectation

    @property
    def ok(self) -> bool:
        """No gap and no over-grant. A probe that failed for another reason (a timeout, say) tells nothing either
        way: it is listed in `errors`, not judged."""
        return not self.gaps and not self.overgrants

    def to_dict(self) -> dict:
        return {"probes": self.probes, "granted": self.granted, "denied": self.denied,
                "gaps": [list(g) for g in self.gaps[:20]], "overgrants": [list(o) for o in self.overgrants[:20]],
                "errors": self.errors[:20], "unjudged": len(self.unjudged), "ok": self.ok}


def token_expiry(token: str) -> float:
    """The `exp` claim of a JWT (read, not verified: the witness only needs to know when to ask for a new one)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims.get("exp", 0))
    except (IndexError, ValueError):
        return 0.0


def choose_pairs(reach: Mapping[str, Iterable[str]], mailboxes: Iterable[str], *, inside: int = 3,
                 outside: int = 2) -> list[WitnessPair]:
    """Per app, the first `inside` mailboxes of its reach and the first `outside` others (sorted: stable runs)."""
    everyone = sorted(set(mailboxes))
    pairs: list[WitnessPair] = []
    for app in sorted(reach):
        mine = sorted(set(reach[app]))
        pairs += [WitnessPair(app, m, True) for m in mine[:inside]]
        others = [m for m in everyone if m not in set(mine)]
        pairs += [WitnessPair(app, m, False) for m in others[:outside]]
    return pairs


class SmtpWitness:
    """Probe `pairs` round after round in a background thread until stopped (or `max_probes` is reached)."""

    def __init__(self, pairs: list[WitnessPair], fetch_token: Callable[[str], str], prober: Prober, *,
                 now: Callable[[], float] = time.time, interval: float = 0.2, max_probes: int = 5000) -> None:
        self.pairs, self.fetch_token, self.prober, self.now = pairs, fetch_token, prober, now
        self.interval, self.max_probes = interval, max_probes
        self.report = WitnessReport()
        self._tokens: dict[str, tuple[str, float]] = {}
        self._first: dict[WitnessPair, bool] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="smtp-witness", daemon=True)

    def _token(self, app_id: str) -> str:
        held = self._tokens.get(app_id)
        if held is None or held[1] <= self.now() + 1:  # renewed once it expires, as a relay does
            token = self.fetch_token(app_id)
            held = self._tokens[app_id] = (token, token_expiry(token))
        return held[0]

    def probe_once(self, pair: WitnessPair) -> None:
        for _ in range(EXPIRED_RETRIES):
            at = self.now()
            token = self._token(pair.app_id)
            answer = self.prober(pair.mailbox, token)
            if answer.outcome == GRANTED or token_expiry(token) > self.now():
                break
            # The token ran out during the probe (short lifetimes, a loaded machine, a tenant clock that jumps): a
            # relay signs in again with a new one. A refusal of an expired token says nothing about access.
            self._tokens.pop(pair.app_id, None)
        else:
            self.report.errors.append(f"{pair.app_id} as {pair.mailbox}: every token expired before its answer")
            return
        if answer.outcome not in ("granted", "denied"):
            self._tokens.pop(pair.app_id, None)
            self.report.errors.append(f"{pair.app_id} as {pair.mailbox}: {answer.code} {answer.text[:80]}")
            return
        self.report.probes += 1
        granted = answer.outcome == GRANTED
        if granted:
            self.report.granted += 1
        else:
            self.report.denied += 1
        first = self._first.setdefault(pair, granted)
        if first != pair.expected:
            if (pair.app_id, pair.mailbox) not in self.report.unjudged:
                self.report.unjudged.append((pair.app_id, pair.mailbox))
            return
        if granted != pair.expected:
            (self.report.gaps if pair.expected else self.report.overgrants).append((pair.app_id, pair.mailbox, at))

    def round(self) -> None:
        for pair in self.pairs:
            if self._stop.is_set() or self.report.probes >= self.max_probes:
                return
            self.probe_once(pair)

    def _loop(self) -> None:
        while not self._stop.is_set() and self.report.probes < self.max_probes:
            self.round()
            self._stop.wait(self.interval)

    def start(self) -> SmtpWitness:
        self.round()  # the first answers are taken before anything changes
        self._thread.start()
        return self

    def stop(self) -> WitnessReport:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.round_after_stop()
        return self.report

    def round_after_stop(self) -> None:
        """One last full round once the run is over: the end state is witnessed too."""
        self._stop.clear()
        for pair in self.pairs:
            self.probe_once(pair)
        self._stop.set()


def sandbox_witness(sb, secrets: Mapping[str, str], folder, *, now: Callable[[], float],
                    inside: int = 3, outside: int = 2, interval: float = 0.2) -> SmtpWitness:
    """A witness against a running sandbox whose apps hold `secrets` (app_id -> secret), with tokens from its
    token endpoint through msal and SMTP through its submission endpoint. Secrets go to 0600 files in `folder`."""
    import dataclasses
    from pathlib import Path

    from migrator.exchange.auth import TokenProvider
    from migrator.exchange.profile import Credential, load_profile
    from migrator.sandbox.profile import write_secret_file

    admin = load_profile(sb.profile_path)
    providers = {}
    for app_id, secret in secrets.items():
        path = write_secret_file(Path(folder) / f"witness-{app_id}.secret", secret)
        providers[app_id] = TokenProvider(dataclasses.replace(
            admin, client_id=app_id, credential=Credential(kind="secret", secret_file=str(path))))
    reach: dict[str, set[str]] = {}
    for app_id, mailbox in sb.original_reach:  # SMTP reach: SendAs, and FullAccess with the claim
        if app_id in providers:
            reach.setdefault(app_id, set()).add(mailbox)
    mailboxes = {m for _, m in sb.original_reach}
    pairs = choose_pairs({a: reach.get(a, set()) for a in providers}, mailboxes, inside=inside, outside=outside)
    host, port = sb.smtp_address
    ca = str(sb.ca_bundle)
    return SmtpWitness(
        pairs, lambda app: providers[app].token(admin.exchange_resource, force_refresh=True),
        lambda mailbox, token: probe(host, port, mailbox, token, ca_bundle=ca, timeout=10), now=now,
        interval=interval)
