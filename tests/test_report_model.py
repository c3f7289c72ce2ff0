"""The report's facts, the Markdown (with its Mermaid diagram) and the diagram's summarising."""

from __future__ import annotations

import re

import pytest

from migrator.planner.plan import load_plan
from migrator.report.diagram import build_diagram
from migrator.report.markdown import md, render_markdown
from migrator.report.mermaid import escape_label, render_mermaid
from migrator.report.model import build_report
from report_plans import APP_DOLLAR, HOSTILE_APP, HOSTILE_APP2, REUSED_GROUP, hostile_plan, large_plan

NODE = re.compile(r'^    ([a-z]\d+)(\["|\(\["|\[/"|\(")((?:[^"`<>&#;\\]|#\d+;)*)("\]|"\]\)|"/\]|"\))$')
EDGE = re.compile(r"^    ([a-z]\d+) --> ([a-z]\d+)$")


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return load_plan(hostile_plan(tmp_path_factory.mktemp("plans") / "hostile"))


@pytest.fixture(scope="module")
def large(tmp_path_factory):
    return load_plan(large_plan(tmp_path_factory.mktemp("plans") / "large"))


def unescape(label: str) -> str:
    return re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), label)


def parse_mermaid(text: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Check every line against the grammar the renderer promises; return labels by id and the edges."""
    lines = text.rstrip("\n").split("\n")
    assert lines[0] == "flowchart LR"
    labels, edges = {}, []
    for line in lines[1:]:
        if m := NODE.match(line):
            assert m.group(1) not in labels, f"duplicate id {m.group(1)}"
            labels[m.group(1)] = unescape(m.group(3))
        elif m := EDGE.match(line):
            edges.append((m.group(1), m.group(2)))
        else:
            assert re.match(r"^    (classDef [a-z]+ [a-z:#0-9,\- ]+|class [a-z0-9,]+ [a-z]+)$", line), line
    for src, dst in edges:
        assert src in labels and dst in labels
    return labels, edges


def test_report_facts(hostile):
    data = build_report(hostile)
    assert data.counts["apps"] == 3 and data.counts["grants_migrate"] == 9 and data.counts["grants_keep"] == 1
    assert [b.number for b in data.batches] == [1, 2]
    b1, b2 = data.batches
    assert [a.name for a in b1.apps] == [HOSTILE_APP]
    assert b1.apps[0].sendas == 2 and b1.apps[0].kept == 1
    assert b2.reused_groups == (REUSED_GROUP,) and b2.new_groups == ()
    dollar = next(a for a in b2.apps if a.app_id == APP_DOLLAR)
    assert dollar.groups == (REUSED_GROUP,) and dollar.attributes == ("CustomAttribute1 = O'Neil $x `t \"q\"",)
    assert data.kept_reasons == (("IMAP/POP need FullAccess", 1),)
    assert data.lower_bound == 3 and data.cover_sets == 3 and "equal to the proven lower bound of 3" in data.bound_text
    assert {b.state for b in data.batches} == {"planned"}
    assert "No run yet" in data.run_note and data.timeline == ()


def test_mermaid_is_well_formed_and_labels_round_trip(hostile):
    diagram = build_diagram(hostile)
    labels, edges = parse_mermaid(render_mermaid(diagram))
    assert labels == {n.id: n.label if len(n.label) <= 60 else n.label[:59] + "…" for n in diagram.nodes}
    assert set(edges) == set(diagram.edges)
    assert HOSTILE_APP in labels.values() and REUSED_GROUP in labels.values()
    # apps -> groups -> mailboxes, exactly as the plan has them
    by_label = {v: k for k, v in labels.items()}
    assert (by_label[HOSTILE_APP], by_label["Senders O'Neil $x `t"]) in edges
    assert (by_label["Senders O'Neil $x `t"], by_label["o'neil@contoso.com"]) in edges


@pytest.mark.parametrize("text", ['a"b', "x`y`", "<b>&amp;</b>", "#35;", "new\nline", "end", "a;b|c", "```"])
def test_escape_label_leaves_no_syntax(text):
    out = escape_label(text)
    assert not re.search(r'["`<>&|\n]', out)
    assert unescape(out) == " ".join(text.split())


def test_markdown_has_the_diagram_and_escapes_cells(hostile):
    text = render_markdown(build_report(hostile))
    block = re.search(r"^```mermaid\n(.*?)^```$", text, re.S | re.M)
    assert block, "no mermaid block"
    assert "```" not in block.group(1)
    parse_mermaid(block.group(1))
    assert "<script>" not in text and "&lt;script&gt;" in text
    # every table row has as many cells as its header
    for table in re.findall(r"((?:^\|.*\n)+)", text, re.M):
        rows = [re.split(r"(?<!\\)\|", r)[1:-1] for r in table.strip("\n").split("\n")]
        assert len({len(r) for r in rows}) == 1, table
    assert md(HOSTILE_APP2) in text
    assert "\\$x" in text and "\\`whoami\\`" in text  # no math, no inline code from a name


def test_large_diagram_is_summarised(large):
    diagram = build_diagram(large, max_apps=25, max_groups=30, max_mailboxes=40)
    kinds = [n.kind for n in diagram.nodes]
    assert kinds.count("app") == 25 and "more" in kinds
    assert kinds.count("mailbox") == 0 and kinds.count("count") == kinds.count("group")
    assert all(n.label == "30 mailboxes" for n in diagram.nodes if n.kind == "count")
    assert "showing 25 of 40 apps" in diagram.note and "as a count per group" in diagram.note
    text = render_mermaid(diagram)
    parse_mermaid(text)
    assert len(text.splitlines()) < 200
    small = build_diagram(large, max_apps=100, max_groups=5, max_mailboxes=10_000)
    assert [n.label for n in small.nodes if n.kind == "more"] == ["+35 more groups"]
    assert sum(1 for n in small.nodes if n.kind == "mailbox") == len(
        set().union(*(g.members for g in large.groups[:5])))


def test_helpdesk_section_says_what_grant_does_for_each_app():
    from pathlib import Path

    from migrator.report.html import render_html

    plan = load_plan(Path(__file__).resolve().parent.parent / "plans" / "contoso")
    data = build_report(plan, with_journal=False)
    # Independently of the report: which apps' role assignments use each group.
    scope_groups = {s.key: set(s.groups) for s in plan.scopes}
    users: dict[str, set[str]] = {}
    for a in plan.assignments:
        for g in scope_groups.get(a.scope, ()):
            users.setdefault(g, set()).add(a.app_id)
    name = {g.key: g.name for g in plan.groups}
    shared_names = {name[g] for g, apps in users.items() if len(apps) > 1}
    assert shared_names and data.shared_group_count == len(shared_names)
    assert {h.app_id for h in data.helpdesk} == {a.app_id for a in plan.assignments}
    for h in data.helpdesk:
        mine = {name[g] for g, apps in users.items() if h.app_id in apps}
        assert set(h.own_groups) == {n for n in mine if n not in shared_names}
        assert set(h.shared_groups) == mine & shared_names
        if h.own_groups:
            assert h.grant.startswith(f"adds the mailbox to {sorted(h.own_groups, key=str.lower)[0]};")
        else:
            assert h.grant.startswith("creates one group")
    text = render_markdown(data)
    assert "## For the helpdesk: access changes from now on" in text and "`migrator grant APP MAILBOX" in text
    html = render_html(data)
    assert '<h2 id="helpdesk">' in html and "<code>migrator grant APP MAILBOX --profile P</code>" in html


def test_helpdesk_refuses_an_app_scoped_by_attributes(hostile):
    dollar = next(h for h in build_report(hostile).helpdesk if h.app_id == APP_DOLLAR)
    assert dollar.grant.startswith("refused: a scope of this app filters on attributes")
