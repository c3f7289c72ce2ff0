"""How long the migrated apps' access tokens may live: the token wait after a cut-over (and after a rollback's
re-grant) must outlast every token issued before it.

Entra access tokens live 60-90 minutes by default; a token lifetime policy (Graph `/policies/tokenLifetimePolicies`,
`definition` = JSON strings with `TokenLifetimePolicy.AccessTokenLifetime` as "h:mm:ss" or "d.hh:mm:ss") can make
them live up to a day. A policy applies when it is the organisation default or is assigned to the app's service
principal (its `appliesTo`). The wait is the longest lifetime that may apply plus a margin; a policy the tool cannot
read is reported and stops the cut-over unless the user states the longest lifetime (`--token-lifetime`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from migrator.errors import MigratorError
from migrator.exchange.errors import Forbidden
from migrator.model import norm_id

DEFAULT_ACCESS_TOKEN_LIFETIME = 5400.0  # s: Entra's default access tokens live 60-90 minutes
_TIMESPAN = re.compile(r"^\s*(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.\d+)?\s*$")


def parse_timespan(text: str) -> float:
    """`[d.]h:mm:ss[.fff]` (a .NET TimeSpan) -> seconds; ValueError for anything else."""
    m = _TIMESPAN.match(str(text or ""))
    if not m or int(m.group(3)) > 59 or int(m.group(4)) > 59:
        raise ValueError(f"AccessTokenLifetime {text!r} is not a time span like 4:00:00")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)


def access_token_lifetime(policy: dict) -> float | None:
    """The AccessTokenLifetime a policy sets, in seconds; None when it sets none. ValueError when unreadable."""
    found = None
    definition = policy.get("definition")
    if not isinstance(definition, list):
        raise ValueError("its definition is not a list of JSON strings")
    for entry in definition:
        try:
            data = json.loads(entry) if isinstance(entry, str) else entry
        except ValueError as exc:
            raise ValueError(f"its definition is not JSON ({exc})") from None
        body = data.get("TokenLifetimePolicy") if isinstance(data, dict) else None
        if not isinstance(body, dict):
            raise ValueError("its definition has no TokenLifetimePolicy object")
        if "AccessTokenLifetime" in body:
            life = parse_timespan(body["AccessTokenLifetime"])
            found = life if found is None else max(found, life)
    return found


@dataclass
class TokenLifetimes:
    """What the tenant's token lifetime policies say about the given apps."""

    longest: float | None = None  # longest AccessTokenLifetime of a policy that applies (None: no policy sets one)
    applied: list[dict] = field(default_factory=list)  # {id, name, lifetime, applies_to: "organisation" | [app ids]}
    unreadable: list[str] = field(default_factory=list)  # what could not be read, and why

    def to_dict(self) -> dict:
        return {"longest": self.longest, "applied": self.applied, "unreadable": self.unreadable}


def read_token_lifetimes(graph, sps: dict[str, str], *, extra_sp_ids: tuple[str, ...] = ()) -> TokenLifetimes:
    """Read the policies that may set the lifetime of the apps' tokens. `sps`: app id -> SP object id;
    `extra_sp_ids`: other service principals whose policy counts (the Exchange Online resource's).

    A refusal (403) is reported in `unreadable`, never taken as "no policy"; any other failed read raises."""
    out = TokenLifetimes()
    try:
        policies = graph.list_token_lifetime_policies()
    except Forbidden as exc:
        out.unreadable.append(f"the tenant's token lifetime policies (GET /policies/tokenLifetimePolicies): {exc}; "
                              "grant the migrator app Policy.Read.All")
        return out
    wanted = {norm_id(v) for v in sps.values()} | {norm_id(a) for a in sps} | {norm_id(s) for s in extra_sp_ids}
    by_key = {norm_id(v): a for a, v in sps.items()} | {norm_id(a): a for a in sps}
    for policy in policies:
        name = f"{policy.get('displayName') or ''} ({policy.get('id')})"
        if policy.get("isOrganizationDefault"):
            applies: str | list[str] = "organisation"
        else:
            try:
                targets = graph.token_lifetime_policy_applies_to(policy.get("id") or "")
            except Forbidden as exc:
                out.unreadable.append(f"which objects token lifetime policy {name} applies to: {exc}")
                continue
            keys = {norm_id(t.get(k)) for t in targets for k in ("id", "appId") if t.get(k)}
            if not keys & wanted:
                continue  # assigned to other apps only
            applies = sorted({by_key[k] for k in keys if k in by_key}) or ["Office 365 Exchange Online"]
        try:
            life = access_token_lifetime(policy)
        except ValueError as exc:
            out.unreadable.append(f"token lifetime policy {name}: {exc}")
            continue
        if life is None:
            continue
        out.applied.append({"id": policy.get("id"), "name": policy.get("displayName") or "", "lifetime": life,
                            "applies_to": applies})
        out.longest = life if out.longest is None else max(out.longest, life)
    return out


def token_wait(settings, lifetimes: TokenLifetimes) -> dict:
    """The wait after a cut-over or re-grant: {"seconds", "lifetime", "margin", "why"}. MigratorError when a policy
    could not be read and the user stated no lifetime (nothing is assumed away)."""
    stated = settings.token_lifetime
    if lifetimes.unreadable and stated is None:
        raise MigratorError("cannot tell how long the apps' access tokens live: " + "; ".join(lifetimes.unreadable)
                            + ". Fix the read, or state the longest access-token lifetime in your tenant with "
                              "--token-lifetime SECONDS; nothing was changed")
    base = DEFAULT_ACCESS_TOKEN_LIFETIME if stated is None else float(stated)
    life = max(base, lifetimes.longest or 0.0)
    if lifetimes.longest is not None and lifetimes.longest >= base:
        why = "the longest lifetime a token lifetime policy sets (" + ", ".join(
            f"{p['name'] or p['id']}: {p['lifetime']:g} s" for p in lifetimes.applied) + ")"
    elif stated is not None:
        why = "the stated token lifetime (--token-lifetime)"
    else:
        why = "Entra's default access-token lifetime (60-90 minutes); no token lifetime policy sets a longer one"
    if lifetimes.unreadable:
        why += "; unread: " + "; ".join(lifetimes.unreadable)
    margin = float(settings.token_margin)
    return {"seconds": life + margin, "lifetime": life, "margin": margin, "why": why}
