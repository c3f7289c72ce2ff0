"""The ground truth of a tenant fixture: which grants an app holds directly and effectively (what a correct
inventory must find), computed from the fixture itself, not through any client. Used by tests and benchmarks."""

from __future__ import annotations


def ground_truth(data: dict) -> set[tuple[str, str, str]]:
    """(app_id, mailbox, right) an app holds directly and effectively (no Deny for the same pair)."""
    def grants(rows, who, right, is_deny):
        allow: set[tuple[str, str, str]] = set()
        deny: set[tuple[str, str, str]] = set()
        for r in rows:
            t = r[who]
            if "app" not in t or r.get("is_inherited"):
                continue
            if right not in r.get("access_rights", []):
                continue
            key = (t["app"].lower(), r["mailbox"].lower(), right)
            (deny if is_deny(r) else allow).add(key)
        return allow - deny

    return (grants(data.get("recipient_permissions", []), "trustee", "SendAs",
                   lambda r: r.get("access_control_type") == "Deny")
            | grants(data.get("mailbox_permissions", []), "user", "FullAccess", lambda r: bool(r.get("deny"))))
