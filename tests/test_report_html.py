"""The HTML report: self-contained (no script, no external asset), every value escaped, the SVG well-formed,
and the run's timeline read from the executor's journal."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.executor.journal import Journal
from migrator.planner.plan import load_plan
from migrator.report.html import render_html
from migrator.report.model import build_report
from report_plans import HOSTILE_APP2, REUSED_GROUP, hostile_plan


class Collector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def plan(tmp_path):
    return load_plan(hostile_plan(tmp_path / "hostile"))


def parse(html: str) -> Collector:
    c = Collector()
    c.feed(html)
    return c


def test_self_contained_and_escaped(plan):
    html = render_html(build_report(plan))
    doc = parse(html)
    assert "script" not in doc.tags and "link" not in doc.tags and "img" not in doc.tags
    for tag, key, value in doc.attrs:
        assert not key.startswith("on"), (tag, key)
        if key in ("src", "href", "xlink:href", "action"):
            assert not re.match(r"\s*(https?:|//|javascript:)", value), (tag, key, value)
    assert ("meta", "http-equiv", "Content-Security-Policy") in doc.attrs
    assert "url(" not in html and "@import" not in html
    text = "\n".join(doc.text)
    assert HOSTILE_APP2 in text and REUSED_GROUP in text
    assert "wave 1 <script>alert(1)</script>" in text  # shown as text, never as markup


def test_svg_is_well_formed_and_complete(plan):
    data = build_report(plan)
    html = render_html(data)
    svg = re.search(r"<svg.*?</svg>", html, re.S).group(0)
    root = ET.fromstring(svg)  # an escaping slip would make this XML invalid
    ns = "{http://www.w3.org/2000/svg}"
    nodes = [g for g in root.iter(f"{ns}g") if "node" in (g.get("class") or "").split()]
    assert len(nodes) == len(data.diagram.nodes)
    titles = {g.find(f"{ns}title").text for g in nodes}
    assert any(HOSTILE_APP2 in t for t in titles)
    assert len(list(root.iter(f"{ns}path"))) == len(data.diagram.edges)


def test_timeline_from_the_journal(plan, tmp_path):
    clock = iter(float(1_800_000_000 + 60 * i) for i in range(100))
    with Journal(plan.path, clock=lambda: next(clock)) as journal:
        journal.start_run("execute", 1, {})
        journal.set_step(1, 1, "execute", "groups", "done")
        journal.set_step(1, 1, "execute", "scopes", "done")
        journal.set_step(1, 1, "execute", "propagation_wait", "waiting", not_before=1_800_007_200.0)
        journal.set_batch_state(1, "waiting", 1)
        journal.end_run("waiting")
    data = build_report(load_plan(plan.path))
    assert [e.step for e in data.timeline] == ["groups", "scopes", "propagation_wait"]
    assert data.batches[0].state == "waiting until 2027-01-15 10:00:00 UTC"
    assert data.batches[1].state == "planned"
    assert "1 run(s), 3 step record(s)" in data.run_note
    html = render_html(data)
    assert "2027-01-15 10:00:00 UTC" in html  # the propagation wait's end, 1_800_007_200
    result = CliRunner().invoke(main, ["report", str(plan.path), "--format", "md", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "| propagation\\_wait | waiting | 2027-01-15 10:00:00 UTC |" in md
    assert not (tmp_path / "r" / "report.html").exists()


def test_cli_writes_both_into_the_plan_folder(plan):
    result = CliRunner().invoke(main, ["report", str(plan.path)])
    assert result.exit_code == 0, result.output
    assert (plan.path / "report" / "report.md").read_text(encoding="utf-8").startswith("# Migration plan: hostile")
    assert "<svg" in (plan.path / "report" / "report.html").read_text(encoding="utf-8")
    load_plan(plan.path)  # the report folder does not disturb the plan's hashes


def test_cli_on_a_tampered_plan_fails_cleanly(plan, tmp_path):
    grants = plan.path / "grants.csv"
    grants.write_text(grants.read_text(encoding="utf-8").replace("o'neil", "o'neal"), encoding="utf-8")
    result = CliRunner().invoke(main, ["report", str(plan.path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "grants.csv" in result.output
    assert not (tmp_path / "r").exists()


def test_report_of_a_real_executor_run(tmp_path):
    """The executor (against the in-memory tenant) writes the journal; the report tells the same story."""
    from exec_helpers import execute
    from fakes import make_world
    from migrator.executor.steps import EXECUTE_STEPS

    apps = {"11111111-0000-0000-0000-000000000001": {"a@contoso.com", "b@contoso.com"},
            "11111111-0000-0000-0000-000000000002": {"c@contoso.com"}}
    first, second = sorted(apps)
    tenant, plan_path = make_world(tmp_path, apps, [[first], [second]])
    assert execute(tenant, plan_path, [1]).outcomes[0].status == "done"
    assert execute(tenant, plan_path, [2], wait=False).outcomes[0].status == "waiting"
    from datetime import UTC, datetime

    data = build_report(load_plan(plan_path), now=datetime.fromtimestamp(tenant.clock.now(), UTC))
    assert data.batches[0].state.split(";")[0] == "applied"
    assert "still requests SMTP.SendAsApp" in data.batches[0].state  # the cut-over's registration warning
    assert data.batches[1].state.startswith("waiting until ")
    batch1 = [e.step for e in data.timeline if e.batch == 1]
    assert batch1 == [name for name, _fn in EXECUTE_STEPS]  # every step, in the order they ran
    assert all(e.status == "done" for e in data.timeline if e.batch == 1)
    assert [e.status for e in data.timeline if e.batch == 2][-1] == "waiting"
    assert len(data.runs) == 2
    html = render_html(data)
    assert html.count('<span class="state-done">') >= len(EXECUTE_STEPS) + 1
    assert '<span class="state-waiting">' in html
