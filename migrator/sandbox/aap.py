"""Application Access Policies of the sandbox tenant and what they let an app reach (docs/exchange.md §8).

A policy names one app and one scope recipient (a mail-enabled security group, or a mailbox/mail user: security
principals only) with AccessRight RestrictAccess or DenyAccess. Its members are taken *with nesting*: a group inside
the scope group counts (unlike RBAC for Applications, which sees direct members only). Microsoft's evaluation order,
for an app and a target mailbox:
1. a DenyAccess policy of the app that contains the mailbox denies (it wins over any RestrictAccess);
2. a RestrictAccess policy of the app that contains the mailbox grants;
3. an app with RestrictAccess policies none of which contains the mailbox is denied;
4. an app with no matching policy is granted (the Entra permission is tenant-wide).
The fence applies to the Entra permissions of `model.AAP_PERMISSIONS` only (not SMTP, IMAP or POP).

What the policies allow is the *configuration*; `Test-ApplicationAccessPolicy` reads it at once, the Graph/EWS data
plane `settings.access_policy_delay` seconds later (Microsoft: "can take longer than 1 hour").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from migrator.sandbox.state import Recipient, TenantState

RESTRICT = "RestrictAccess"
DENY = "DenyAccess"
ACCESS_RIGHTS = (RESTRICT, DENY)
# Microsoft: the policies share a fixed amount of space, about 300 of them with a one-space description.
MAX_POLICIES = 300
# Scope recipients a policy accepts: security principals (RecipientTypeDetails).
SCOPE_TYPES = ("UserMailbox", "MailUser", "MailUniversalSecurityGroup")


@dataclass
class AccessPolicy:
    app_id: str
    scope: str  # recipient guid of the scope group (or mailbox); may be gone (the policy then shows IsValid False)
    access_right: str  # RESTRICT | DENY
    description: str = ""
    created: float = 0.0
    # what the scope showed at creation: Exchange keeps the SID and object id in the policy's identity
    scope_sid: str = ""
    scope_external_id: str = ""
    scope_name: str = ""


def scope_type_ok(rec: Recipient) -> bool:
    """A recipient a policy may be scoped to (Microsoft lists security principals; distribution lists, Microsoft
    365 groups and shared, room or equipment mailboxes are refused)."""
    if rec.is_group:
        return rec.group_type == "Security"
    return rec.recipient_type_details in SCOPE_TYPES


def nested_mailboxes(state: TenantState, guid: str) -> frozenset[str]:
    """Mailbox guids in a recipient, following nested groups (cycle-safe); a mailbox is its own member."""
    out: set[str] = set()
    seen: set[str] = set()
    stack = [guid]
    while stack:
        g = stack.pop()
        if g in seen:
            continue
        seen.add(g)
        rec = state.recipients.get(g)
        if rec is None:
            continue
        if rec.is_group:
            stack.extend(rec.members)
        elif rec.kind == "mailbox":
            out.add(g)
    return frozenset(out)


def policies_of(state: TenantState, app_id: str) -> list[AccessPolicy]:
    return [p for p in state.access_policies if p.app_id == app_id]


def allowed_mailboxes(state: TenantState, app_id: str) -> frozenset[str] | None:
    """Mailbox addresses the app's policies let its Entra permissions reach, as configured; None: every mailbox
    (no policy)."""
    pols = policies_of(state, app_id)
    if not pols:
        return None
    members = {id(p): nested_mailboxes(state, p.scope) for p in pols}
    denied: set[str] = set().union(*(members[id(p)] for p in pols if p.access_right == DENY))
    restricts = [p for p in pols if p.access_right == RESTRICT]
    if restricts:
        guids = set().union(*(members[id(p)] for p in restricts)) - denied
    else:
        guids = {g for g, r in state.recipients.items() if r.kind == "mailbox"} - denied
    return frozenset(state.recipients[g].primary_smtp for g in guids)


def access_check(state: TenantState, app_id: str, mailbox_guid: str) -> bool:
    """Microsoft's rules for one app and one target recipient (Test-ApplicationAccessPolicy's answer)."""
    pols = policies_of(state, app_id)
    inside = [p for p in pols if mailbox_guid in nested_mailboxes(state, p.scope) or p.scope == mailbox_guid]
    if any(p.access_right == DENY for p in inside):
        return False
    if any(p.access_right == RESTRICT for p in inside):
        return True
    return not any(p.access_right == RESTRICT for p in pols)
