"""A change plan in words: what `migrator grant`/`revoke` shows before asking, and prints with --dry-run."""

from __future__ import annotations


def change_text(plan) -> str:
    s = plan.meta["change"]
    groups = {g.key: g for g in plan.groups}
    by_lower = {lower: groups[key] for lower, key in s["group_keys"].items() if key in groups}
    verb = "Grant" if s["kind"] == "grant" else "Revoke"
    lines = [f"{verb} {len(s['effective'])} mailbox(es) {'to' if s['kind'] == 'grant' else 'from'} "
             f"{s['app_name']} [{s['app_id']}] ({s['strategy']}); change plan: {plan.path}"]
    if s["effective"]:
        lines.append(f"  mailboxes: {', '.join(s['effective'][:20])}{' ...' if len(s['effective']) > 20 else ''}")
    if s["unchanged"]:
        why = "already reached" if s["kind"] == "grant" else "not reached through RBAC"
        lines.append(f"  {why}, nothing to do: {', '.join(s['unchanged'][:20])}")
    for note in s["notes"]:
        lines.append(f"  {note}")
    for label, ops in (("add member(s) to", s["member_adds"]), ("remove member(s) from", s["member_removes"])):
        per: dict[str, list[str]] = {}
        for lower, mailbox in ops:
            per.setdefault(lower, []).append(mailbox)
        for lower, mailboxes in sorted(per.items()):
            name = by_lower[lower].name if lower in by_lower else lower
            lines.append(f"  {label} group {name!r}: {', '.join(mailboxes[:10])}")
    for key in s["new_groups"]:
        lines.append(f"  create group {groups[key].name!r} ({len(groups[key].members)} member(s), hidden, closed)")
    for scope in plan.scopes:
        if scope.key in s["new_scopes"]:
            lines.append(f"  create scope {scope.name!r}: {scope.filter}")
    for a in plan.assignments:
        if a.key in s["new_assignments"]:
            lines.append(f"  create role assignment {a.name!r} ({a.role}) for the app")
    for name in s["removed_assignment_names"]:
        lines.append(f"  after verification and the propagation wait: remove the app's role assignment {name!r}")
    for name in s.get("removed_scope_names", []):
        lines.append(f"  last: remove the old scope {name!r} (no role assignment uses it any more; kept if the tenant "
                     "then shows one on it)")
    lines.append("  not changed: every other app's reach, groups other apps use, scopes other assignments use, legacy "
                 "grants, Entra")
    return "\n".join(lines)
