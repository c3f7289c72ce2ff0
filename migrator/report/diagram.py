"""The apps -> groups -> mailboxes graph of a plan, summarised so it stays readable at any size.

Columns: 0 apps, 1 groups and attribute terms (what a scope matches), 2 mailboxes. Beyond the thresholds, the
extra apps and groups fold into one "+N more" node each, and mailboxes fold into one "N mailboxes" node per group.
Node ids are generated (`a1`, `g1`, `t1`, `m1`, `c1`, `x1`), never derived from names, so every renderer can use them
as identifiers without escaping; labels are raw text that each renderer escapes for its own syntax.
"""

from __future__ import annotations

from dataclasses import dataclass

from migrator.planner.plan import REUSE

MAX_APPS = 25
MAX_GROUPS = 30
MAX_MAILBOXES = 40


@dataclass(frozen=True)
class Node:
    id: str
    kind: str      # app | group (new) | reused (existing group) | attribute | mailbox | count | more
    label: str
    column: int
    title: str = ""  # longer text for a tooltip


@dataclass(frozen=True)
class Diagram:
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]
    note: str      # how the diagram was summarised ("" when everything is shown)

    def column(self, index: int) -> list[Node]:
        return [n for n in self.nodes if n.column == index]


Target = tuple[str, str]  # ("group", key) | ("attribute", "A=v")


class _Targets:
    """What each app's role assignments reach (groups and attribute terms) and the mailboxes each one holds."""

    def __init__(self, plan) -> None:
        self.groups = {g.key: g for g in plan.groups}
        scopes = {s.key: s for s in plan.scopes}
        self.names: dict[str, str] = {}
        self.uses: dict[str, list[Target]] = {}   # app -> its targets, in scope order
        for a in plan.assignments:
            self.names.setdefault(a.app_id, a.app_name)
            s = scopes.get(a.scope)
            if s is None:
                continue
            mine = self.uses.setdefault(a.app_id, [])
            for key in s.groups:
                if ("group", key) not in mine:
                    mine.append(("group", key))
            for attr, value in s.attributes:
                if ("attribute", f"{attr}={value}") not in mine:
                    mine.append(("attribute", f"{attr}={value}"))
        self.attr_members: dict[str, set[str]] = {}
        for attr, value, mailbox in getattr(plan, "attributes", ()):
            self.attr_members.setdefault(f"{attr}={value.casefold()}", set()).add(mailbox)  # OPATH -eq ignores case

    def members(self, target: Target) -> set[str]:
        kind, ref = target
        if kind == "group":
            return set(self.groups[ref].members) if ref in self.groups else set()
        attr, _, value = ref.partition("=")
        return self.attr_members.get(f"{attr}={value.casefold()}", set())


def build_diagram(plan, *, max_apps: int = MAX_APPS, max_groups: int = MAX_GROUPS,
                  max_mailboxes: int = MAX_MAILBOXES) -> Diagram:
    batch_of = {a: b.number for b in plan.batches for a in b.apps}
    tg = _Targets(plan)
    apps = sorted(tg.uses, key=lambda a: (batch_of.get(a, 0), tg.names.get(a, "").lower(), a))
    shown_apps, hidden_apps = apps[:max_apps], apps[max_apps:]
    targets: list[Target] = []
    for a in shown_apps:
        for t in tg.uses[a]:
            if t not in targets:
                targets.append(t)
    shown_targets, hidden_targets = targets[:max_groups], targets[max_groups:]

    nodes: list[Node] = []
    app_ids = {}
    for i, a in enumerate(shown_apps, start=1):
        app_ids[a] = f"a{i}"
        title = f"{tg.names.get(a, '')} ({a}), batch {batch_of.get(a, '?')}"
        nodes.append(Node(f"a{i}", "app", tg.names.get(a, "") or a, 0, title))
    target_ids = _target_nodes(tg, shown_targets, nodes)
    more_groups_id = None
    if hidden_targets:
        more_groups_id = "x2"
        nodes.append(Node("x2", "more", f"+{len(hidden_targets)} more groups", 1,
                          f"{len(hidden_targets)} groups or attribute terms not drawn"))
    edges: list[tuple[str, str]] = []
    for a in shown_apps:
        for t in tg.uses[a]:
            dst = target_ids.get(t, more_groups_id)
            if dst and (app_ids[a], dst) not in edges:
                edges.append((app_ids[a], dst))
    if hidden_apps:
        nodes.append(Node("x1", "more", f"+{len(hidden_apps)} more apps", 0, f"{len(hidden_apps)} apps not drawn"))
        for a in hidden_apps:
            for t in tg.uses[a]:
                dst = target_ids.get(t, more_groups_id)
                if dst and ("x1", dst) not in edges:
                    edges.append(("x1", dst))

    notes = []
    if hidden_apps:
        notes.append(f"showing {len(shown_apps)} of {len(apps)} apps")
    if hidden_targets:
        notes.append(f"showing {len(shown_targets)} of {len(targets)} groups and attribute terms")
    notes += _mailbox_nodes(tg, shown_targets, target_ids, max_mailboxes, nodes, edges)
    return Diagram(tuple(nodes), tuple(edges), "; ".join(notes))


def _target_nodes(tg: _Targets, shown: list[Target], nodes: list[Node]) -> dict[Target, str]:
    """A node per group or attribute term drawn (appended to `nodes`); returns the node id of each target."""
    target_ids: dict[Target, str] = {}
    g_n = t_n = 0
    for t in shown:
        kind, ref = t
        if kind == "group":
            g_n += 1
            g = tg.groups.get(ref)
            target_ids[t] = f"g{g_n}"
            label = g.name if g else ref
            status = "existing group, reused" if g and g.status == REUSE else "new group"
            kind = "reused" if g and g.status == REUSE else "group"
            nodes.append(Node(f"g{g_n}", kind, label, 1, f"{label} ({ref}, {status}, {len(tg.members(t))} members)"))
        else:
            t_n += 1
            target_ids[t] = f"t{t_n}"
            attr, _, value = ref.partition("=")
            nodes.append(Node(f"t{t_n}", "attribute", f"{attr} = {value}", 1,
                              f"attribute filter {attr} -eq '{value}' ({len(tg.members(t))} mailboxes today)"))
    return target_ids


def _mailbox_nodes(tg: _Targets, shown: list[Target], target_ids: dict[Target, str], max_mailboxes: int,
                   nodes: list[Node], edges: list[tuple[str, str]]) -> list[str]:
    """The mailbox column: one node per mailbox, or a count per target when there are too many to draw.
    Appends to `nodes` and `edges`; returns the note to add (if any)."""
    all_mailboxes = sorted(set().union(*(tg.members(t) for t in shown)) if shown else set())
    if len(all_mailboxes) <= max_mailboxes:
        mailbox_ids = {m: f"m{i}" for i, m in enumerate(all_mailboxes, start=1)}
        nodes += [Node(mailbox_ids[m], "mailbox", m, 2, m) for m in all_mailboxes]
        for t in shown:
            edges += [(target_ids[t], mailbox_ids[m]) for m in sorted(tg.members(t))]
        return []
    for i, t in enumerate(shown, start=1):
        count = len(tg.members(t))
        nodes.append(Node(f"c{i}", "count", f"{count} mailbox{'es' if count != 1 else ''}", 2,
                          f"{count} mailboxes in {t[1]}"))
        edges.append((target_ids[t], f"c{i}"))
    return [f"{len(all_mailboxes)} mailboxes shown as a count per group"]
