"""`verify-smtp`: prove a batch by signing in over SMTP as its apps, for the apps whose credentials the admin holds.

For each such app of the batch: a sample of the mailboxes it must reach (its planned set) and a sample of mailboxes
it must not (others in the plan), each probed with STARTTLS + AUTH XOAUTH2 + MAIL FROM + RSET (nothing is sent).
An in-set pair answered `535 5.7.3` is tried again, spaced, until `retry_for` seconds have passed: a change that has
not propagated yet fails exactly like a real denial (up to 2 hours, Microsoft says). The result per pair is
`ok`, `gap` (in set, still refused), `over-grant` (out of set, accepted), `smtp-auth-disabled` or `error`.

Pure planning of the sample is apart from the probing, so the sample can be tested without a tenant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from migrator.exchange.auth import TokenProvider
from migrator.exchange.profile import Credential, Profile
from migrator.planner.plan import Plan
from migrator.smtp.probe import DENIED, DISABLED, ERROR, GRANTED, ProbeAnswer, probe

OK, GAP, OVER_GRANT = "ok", "gap", "over-grant"


@dataclass(frozen=True)
class Pair:
    app_id: str
    app_name: str
    mailbox: str
    expected: bool  # True: the app must be able to send as the mailbox


@dataclass(frozen=True)
class PairResult:
    pair: Pair
    answer: ProbeAnswer
    attempts: int
    verdict: str  # OK | GAP | OVER_GRANT | DISABLED | ERROR

    def to_dict(self) -> dict:
        return {"app_id": self.pair.app_id, "app_name": self.pair.app_name, "mailbox": self.pair.mailbox,
                "expected": "granted" if self.pair.expected else "denied", "outcome": self.answer.outcome,
                "code": self.answer.code, "reply": self.answer.text, "stage": self.answer.stage,
                "attempts": self.attempts, "verdict": self.verdict}


def app_sets(plan: Plan) -> dict[str, frozenset[str]]:
    """Each app's SMTP reach as the plan states it: the mailboxes of its grants with a batch (SendAs, and FullAccess
    of an app holding SMTP.SendAsApp), which its RBAC scope covers."""
    sets: dict[str, set[str]] = {}
    for g in plan.grants:
        if g.batch is not None:
            sets.setdefault(g.app_id, set()).add(g.mailbox)
    return {app: frozenset(mbxs) for app, mbxs in sets.items()}


def sample_pairs(plan: Plan, batch: int, app_ids: Iterable[str], *, per_app: int = 5) -> list[Pair]:
    """In-set and out-of-set pairs for the given apps of `batch`: up to `per_app` of each, the same on every run
    (seeded by the app id), out-of-set mailboxes taken from the plan's other mailboxes."""
    batch_apps = next((b.apps for b in plan.batches if b.number == batch), None)
    if batch_apps is None:
        raise ValueError(f"the plan has no batch {batch}")
    names = {g.app_id: g.app_name for g in plan.grants}
    sets = app_sets(plan)
    everyone = sorted({g.mailbox for g in plan.grants})
    pairs: list[Pair] = []
    for app in sorted(set(app_ids) & set(batch_apps)):
        rng = random.Random(int(hashlib.sha256(app.encode()).hexdigest()[:16], 16))
        inside = sorted(sets.get(app, ()))
        outside = [m for m in everyone if m not in sets.get(app, ())]
        for mbx in rng.sample(inside, min(per_app, len(inside))):
            pairs.append(Pair(app, names.get(app, app), mbx, True))
        for mbx in rng.sample(outside, min(per_app, len(outside))):
            pairs.append(Pair(app, names.get(app, app), mbx, False))
    return pairs


def verdict_of(pair: Pair, answer: ProbeAnswer) -> str:
    if answer.outcome == DISABLED:
        return DISABLED
    if answer.outcome == ERROR:
        return ERROR
    granted = answer.outcome == GRANTED
    if granted == pair.expected:
        return OK
    return GAP if pair.expected else OVER_GRANT


Prober = Callable[[str, str], ProbeAnswer]  # (mailbox, token) -> answer


def verify_pairs(pairs: list[Pair], token_for: Callable[[str], str], prober: Prober, *, retry_for: float = 0.0,
                 retry_every: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                 now: Callable[[], float] = time.monotonic,
                 progress: Callable[[PairResult], None] | None = None) -> list[PairResult]:
    """Probe every pair; retry in-set pairs refused with 535 5.7.3 every `retry_every` s for up to `retry_for` s,
    with a fresh token each time (a token issued before a change may not reflect it)."""
    results: list[PairResult] = []
    pending: list[tuple[Pair, ProbeAnswer, int]] = []
    for pair in pairs:
        answer = prober(pair.mailbox, token_for(pair.app_id))
        if pair.expected and answer.outcome == DENIED and retry_for > 0:
            pending.append((pair, answer, 1))
            continue
        results.append(_done(pair, answer, 1, progress))
    deadline = now() + retry_for
    while pending:
        if now() + retry_every > deadline:
            break
        sleep(retry_every)
        still: list[tuple[Pair, ProbeAnswer, int]] = []
        for pair, _, tries in pending:
            answer = prober(pair.mailbox, token_for(pair.app_id))
            if answer.outcome == DENIED:
                still.append((pair, answer, tries + 1))
            else:
                results.append(_done(pair, answer, tries + 1, progress))
        pending = still
    results.extend(_done(pair, answer, tries, progress) for pair, answer, tries in pending)
    order = {id(p): i for i, p in enumerate(pairs)}
    return sorted(results, key=lambda r: order[id(r.pair)])


def _done(pair: Pair, answer: ProbeAnswer, tries: int, progress) -> PairResult:
    result = PairResult(pair, answer, tries, verdict_of(pair, answer))
    if progress:
        progress(result)
    return result


class AppTokens:
    """Access tokens for the apps themselves (client credentials), through msal like the admin's own tokens."""

    def __init__(self, profile: Profile, credentials: Mapping[str, Credential]) -> None:
        self._providers = {app: TokenProvider(dataclasses.replace(profile, client_id=app, credential=cred))
                           for app, cred in credentials.items()}
        self._resource = profile.exchange_resource

    def token(self, app_id: str) -> str:
        return self._providers[app_id].token(self._resource, force_refresh=True)

    def close(self) -> None:
        for provider in self._providers.values():
            provider.close()


def run_verify(plan: Plan, batch: int, profile: Profile, credentials: Mapping[str, Credential], *,
               per_app: int = 5, retry_for: float = 0.0, retry_every: float = 60.0,
               progress: Callable[[PairResult], None] | None = None) -> list[PairResult]:
    """Sample the batch's apps that have credentials and probe every pair against the profile's SMTP host."""
    pairs = sample_pairs(plan, batch, credentials, per_app=per_app)
    tokens = AppTokens(profile, {p.app_id: credentials[p.app_id] for p in pairs})
    ca = profile.ca_bundle or None
    try:
        return verify_pairs(
            pairs, tokens.token,
            lambda mailbox, token: probe(profile.smtp_host, profile.smtp_port, mailbox, token, ca_bundle=ca),
            retry_for=retry_for, retry_every=retry_every, progress=progress)
    finally:
        tokens.close()
