"""The HTML report in a real headless browser (Debian's chromium): it renders (a screenshot that is not blank) and
its DOM holds the key content. Chromium missing is a failure, not a skip: run scripts/install-browser."""

from __future__ import annotations

import shutil
import subprocess
from html import escape
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.planner.plan import load_plan
from png_pixels import read_png
from report_plans import HOSTILE_APP2, aap_plan, hostile_plan, large_plan

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HEADER_BLUE = (15, 61, 110)  # html.py's header background, #0f3d6e
TIMEOUT = 60
ROOT = Path(__file__).resolve().parent.parent


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("chromium is not installed: run scripts/install-browser (CI runs it from .ci/run)")
    return path


def run(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=TIMEOUT, check=False)


def report(plan_dir, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(main, ["report", str(plan_dir), "--format", "html", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "report.html"


def sample_plan(out):
    """plans/contoso, the plan of the bundled sample tenant (read in place: the report goes to tmp_path)."""
    return ROOT / "plans" / "contoso"


@pytest.mark.parametrize("make_plan", [hostile_plan, large_plan, sample_plan, aap_plan],
                         ids=["hostile", "large", "contoso", "graph-ews"])
def test_report_renders_in_chromium(make_plan, tmp_path):
    page = report(make_plan(tmp_path / "plan"), tmp_path)
    shot = tmp_path / "report.png"
    # One run writes the screenshot and prints the DOM. 1280x2000 CSS pixels at scale 0.5: the full layout, in few
    # enough pixels to decode in pure Python.
    proc = run([f"--screenshot={shot}", "--dump-dom", "--window-size=1280,2000", "--force-device-scale-factor=0.5",
                page.as_uri()], tmp_path)
    assert shot.exists(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    pixels = read_png(shot)[:, :, :3]
    height, width, _ = pixels.shape
    assert (width, height) == (640, 1000)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"only {len(colours)} colours: the page looks blank"
    assert (pixels[:20] == HEADER_BLUE).all(axis=2).mean() > 0.5, "the header did not render"
    # the diagram (green group boxes) is on the first screen
    green = (pixels == (220, 252, 231)).all(axis=2).sum()
    assert green > 200, "no group boxes of the diagram on screen"

    dom = proc.stdout
    assert f"Migration plan: {'contoso' if make_plan is sample_plan else 'plan'}" in dom
    assert dom.count('class="node ') >= 6
    assert "<script" not in dom
    if make_plan is hostile_plan:
        assert "wave 1 &lt;script&gt;alert(1)&lt;/script&gt;" in dom
        assert HOSTILE_APP2.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in dom
        assert "No run yet" in dom
    elif make_plan is aap_plan:  # the Graph/EWS section: the moved app, then the apps reported only
        section = dom[dom.index('id="mail-access"'):dom.index('id="helpdesk"')]
        assert section.count("<tr>") == 1 + 1 + 1 + 4  # two header rows, one moved app, four reported
        assert "Mail Archiver" in section and "DenyAccess policy: RBAC has no deny" in section
        assert HOSTILE_APP2.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in section
    elif make_plan is large_plan:
        assert "+15 more apps" in dom and "30 mailboxes" in dom
    else:
        for name in {a.app_name for a in load_plan(ROOT / "plans" / "contoso").assignments}:
            assert escape(name, quote=False) in dom, name
