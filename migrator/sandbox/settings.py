"""Behaviour switches of the sandbox tenant (INTERNALS.md §3). Documented-but-unverified behaviours are settings."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

CLAIM_RULES = ("documented", "union")
TRUSTEE_DISPLAYS = ("display_name", "object_id")
ROLE_ASSIGNEE_NAMES = ("object_id", "display_name")


@dataclass(frozen=True)
class SandboxSettings:
    # Seconds before the data plane (sending) sees an RBAC change. Microsoft: 30 min to 2 h. Small by default so a
    # rehearsal does not wait hours; tests set what they need on a manual clock.
    propagation_delay: float = 60.0
    # Lifetime in seconds of the access tokens issued to the apps (Entra: 60-90 minutes): the tokens whose
    # SMTP.SendAsApp claim the data plane and the timeline checker follow. Tests and the demo make it seconds.
    token_lifetime: float = 3600.0
    # Lifetime in seconds of the access tokens issued to the admin app (the migrator's own client, fixture key
    # "admin", whose tokens call InvokeCommand and Graph). Kept apart from `token_lifetime`: the admin sends no
    # mail, so its tokens play no part in the claim model, and a few-second lifetime would only make msal (which
    # treats a token within 5 minutes of expiry as expired) fetch a new token before nearly every call.
    admin_token_lifetime: float = 3600.0
    # "documented": a token carrying SMTP.SendAsApp needs the per-mailbox SendAs grant, one without it needs the
    # RBAC role in scope. "union": either path serves any token.
    claim_rule: str = "documented"
    # How Get-RecipientPermission / Get-MailboxPermission show a service-principal trustee (UNVERIFIED live).
    trustee_display: str = "display_name"
    # Seconds a just-created group stays invisible to Get-* (directory replication).
    replication_delay: float = 0.0
    # Seconds before the data plane sees a legacy grant (SendAs, FullAccess) added or removed. Exchange caches
    # mailbox permissions too: removals are reported to take up to about 90 minutes to apply, and how long a
    # restored grant takes is UNVERIFIED. Non-zero by default so a rollback that re-grants the claim before the
    # restored grants apply shows its gap on the timeline.
    sendas_delay: float = 30.0
    # Seconds before an Entra app-role assignment granted or deleted reaches the token service (Graph replicates
    # them with delay): tokens issued meanwhile still carry the old claim state, and a read of the SP's
    # appRoleAssignments in that window may answer from a replica that has not seen the change yet.
    graph_replication_delay: float = 10.0
    # What Get-ManagementRoleAssignment shows in RoleAssignee/RoleAssigneeName for an app: its SP ObjectId (reported
    # live, docs/exchange.md §7) or its display name (what some community scripts expect). UNVERIFIED: a setting.
    role_assignee_name: str = "object_id"
    # Seconds before Graph/EWS calls see an Application Access Policy created, removed or whose group changed
    # (Microsoft: "can take longer than 1 hour", while Test-ApplicationAccessPolicy answers at once). UNVERIFIED.
    access_policy_delay: float = 60.0

    def __post_init__(self) -> None:
        if self.claim_rule not in CLAIM_RULES:
            raise ValueError(f"claim_rule must be one of {CLAIM_RULES}, not {self.claim_rule!r}")
        if self.role_assignee_name not in ROLE_ASSIGNEE_NAMES:
            raise ValueError(f"role_assignee_name must be one of {ROLE_ASSIGNEE_NAMES}, "
                             f"not {self.role_assignee_name!r}")
        if self.trustee_display not in TRUSTEE_DISPLAYS:
            raise ValueError(f"trustee_display must be one of {TRUSTEE_DISPLAYS}, not {self.trustee_display!r}")
        for name in ("propagation_delay", "token_lifetime", "admin_token_lifetime", "replication_delay",
                     "sendas_delay", "graph_replication_delay", "access_policy_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @classmethod
    def from_dict(cls, data: dict | None) -> SandboxSettings:
        """Build from a dict (a faults profile's `settings` table, say); unknown keys are an error."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown sandbox settings: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def with_(self, **changes) -> SandboxSettings:
        return replace(self, **changes)
