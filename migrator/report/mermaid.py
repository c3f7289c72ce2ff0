"""The diagram as Mermaid `flowchart LR` text, for Markdown that GitHub, GitLab and Azure DevOps render.

Node ids come from diagram.py (`a1`, `g1`, ...), so they are safe identifiers. Labels are double-quoted, and every
character outside a small safe set is written as a Mermaid entity code (`#39;` for `'`), so no name can close the
quotes, start Markdown-in-Mermaid (backticks), inject HTML (`<`, `&`) or end the Markdown code fence.
"""

from __future__ import annotations

from migrator.report.diagram import Diagram

_SAFE_PUNCT = set(" .,_@:/()+-=!?*")
_SHAPES = {  # Mermaid node shapes per kind
    "app": ('["', '"]'),
    "group": ('(["', '"])'),
    "reused": ('(["', '"])'),
    "attribute": ('[/"', '"/]'),
    "mailbox": ('("', '")'),
    "count": ('("', '")'),
    "more": ('["', '"]'),
}
_STYLES = {
    "app": "fill:#dbeafe,stroke:#1d4ed8,color:#0f172a",
    "group": "fill:#dcfce7,stroke:#15803d,color:#0f172a",
    "reused": "fill:#ccfbf1,stroke:#0f766e,color:#0f172a,stroke-width:3px",
    "attribute": "fill:#fef9c3,stroke:#a16207,color:#0f172a",
    "mailbox": "fill:#f1f5f9,stroke:#64748b,color:#0f172a",
    "count": "fill:#f1f5f9,stroke:#64748b,color:#0f172a,stroke-dasharray:4 2",
    "more": "fill:#ffffff,stroke:#94a3b8,color:#475569,stroke-dasharray:4 2",
}
MAX_LABEL = 60


def escape_label(text: str) -> str:
    """A label safe inside Mermaid double quotes: letters, digits and plain punctuation kept, the rest `#code;`."""
    text = " ".join(str(text).split())  # no line breaks
    if len(text) > MAX_LABEL:
        text = text[:MAX_LABEL - 1] + "…"
    return "".join(ch if (ch.isalnum() and ord(ch) < 0x2000) or ch in _SAFE_PUNCT else f"#{ord(ch)};"
                   for ch in text)


def render_mermaid(diagram: Diagram) -> str:
    lines = ["flowchart LR"]
    for node in diagram.nodes:
        left, right = _SHAPES[node.kind]
        lines.append(f"    {node.id}{left}{escape_label(node.label)}{right}")
    for src, dst in diagram.edges:
        lines.append(f"    {src} --> {dst}")
    for kind, style in _STYLES.items():
        ids = [n.id for n in diagram.nodes if n.kind == kind]
        if ids:
            lines.append(f"    classDef {kind} {style}")
            lines.append(f"    class {','.join(ids)} {kind}")
    return "\n".join(lines) + "\n"
