"""The diagram as inline SVG, laid out here (no JavaScript, no external assets): three columns, apps -> groups ->
mailboxes, each column ordered by the mean position of its neighbours (a barycentre sweep) to cut crossings."""

from __future__ import annotations

from collections import defaultdict
from html import escape

from migrator.report.diagram import Diagram, Node

NODE_W, NODE_H, GAP = 300, 26, 8
COL_X = (20, 460, 900)
WIDTH = COL_X[-1] + NODE_W + 20
TOP = 64
CHARS = 40  # label characters that fit in a node at 12px
COLOURS = {  # fill, stroke
    "app": ("#dbeafe", "#1d4ed8"),
    "group": ("#dcfce7", "#15803d"),
    "reused": ("#ccfbf1", "#0f766e"),
    "attribute": ("#fef9c3", "#a16207"),
    "mailbox": ("#f1f5f9", "#64748b"),
    "count": ("#f1f5f9", "#64748b"),
    "more": ("#ffffff", "#94a3b8"),
}
LEGEND = (("app", "App"), ("group", "New group"), ("reused", "Existing group, reused"),
          ("attribute", "Attribute filter"), ("mailbox", "Mailbox / count"))


def _order(diagram: Diagram) -> list[list[Node]]:
    cols = [diagram.column(i) for i in range(3)]
    up: dict[str, list[str]] = defaultdict(list)
    down: dict[str, list[str]] = defaultdict(list)
    for src, dst in diagram.edges:
        down[src].append(dst)
        up[dst].append(src)

    def sweep(col: list[Node], neighbours: dict[str, list[str]], pos: dict[str, int]) -> list[Node]:
        def key(item):
            index, node = item
            near = [pos[n] for n in neighbours[node.id] if n in pos]
            return (sum(near) / len(near) if near else float(index), index)
        return [n for _i, n in sorted(enumerate(col), key=key)]

    def positions(col: list[Node]) -> dict[str, int]:
        return {n.id: i for i, n in enumerate(col)}

    # groups by their apps, apps by their groups, groups again, then mailboxes by their groups
    cols[1] = sweep(cols[1], up, positions(cols[0]))
    cols[0] = sweep(cols[0], down, positions(cols[1]))
    cols[1] = sweep(cols[1], up, positions(cols[0]))
    cols[2] = sweep(cols[2], up, positions(cols[1]))
    return cols


def _label(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CHARS else text[:CHARS - 1] + "…"


def render_svg(diagram: Diagram) -> str:
    cols = _order(diagram)
    tallest = max((len(c) for c in cols), default=0)
    height = TOP + max(tallest, 1) * (NODE_H + GAP) + 20
    where: dict[str, tuple[float, float, str]] = {}
    for c, col in enumerate(cols):
        offset = (tallest - len(col)) * (NODE_H + GAP) / 2  # centre shorter columns
        for i, node in enumerate(col):
            where[node.id] = (COL_X[c], TOP + offset + i * (NODE_H + GAP), node.kind)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" viewBox="0 0 {WIDTH} {height:.0f}" '
           f'width="{WIDTH}" height="{height:.0f}" role="img" aria-labelledby="diagram-title">',
           '<title id="diagram-title">Apps, the groups their role assignments are scoped to, and the mailboxes '
           'in those groups</title>']
    for i, (kind, text) in enumerate(LEGEND):
        fill, stroke = COLOURS[kind]
        lx = 20 + i * 230
        out.append(f'<rect x="{lx}" y="12" width="16" height="16" rx="3" fill="{fill}" stroke="{stroke}"/>'
                   f'<text x="{lx + 22}" y="25" class="legend">{escape(text)}</text>')
    for c, title in enumerate(("Apps", "Groups and filters", "Mailboxes")):
        out.append(f'<text x="{COL_X[c]}" y="52" class="colhead">{title}</text>')
    out.append('<g class="edges" fill="none" stroke-opacity="0.55" stroke-width="1.2">')
    for src, dst in diagram.edges:
        if src not in where or dst not in where:
            continue
        x1, y1, kind = where[src]
        x2, y2, _k = where[dst]
        x1, y1, y2 = x1 + NODE_W, y1 + NODE_H / 2, y2 + NODE_H / 2
        mid = (x1 + x2) / 2
        out.append(f'<path d="M{x1:.0f},{y1:.1f} C{mid:.0f},{y1:.1f} {mid:.0f},{y2:.1f} {x2:.0f},{y2:.1f}" '
                   f'stroke="{COLOURS[kind][1]}"/>')
    out.append("</g>")
    for col in cols:
        for node in col:
            x, y, kind = where[node.id]
            fill, stroke = COLOURS[kind]
            dash = ' stroke-dasharray="4 2"' if kind in ("count", "more") else ""
            out.append(f'<g class="node {kind}" id="node-{node.id}"><title>{escape(node.title or node.label)}</title>'
                       f'<rect x="{x}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="6" fill="{fill}" '
                       f'stroke="{stroke}"{dash}/>'
                       f'<text x="{x + 8}" y="{y + 17:.1f}">{escape(_label(node.label))}</text></g>')
    out.append("</svg>")
    return "\n".join(out)
