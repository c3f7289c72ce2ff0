"""How long the report and the PowerShell export take on a large plan (synthetic: one group per app).

    .venv/bin/python bench/report_scale.py [APPS] [MAILBOXES_PER_APP] [APPS_PER_BATCH]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from migrator.planner.plan import load_plan
from migrator.powershell.export import export_batch
from migrator.report.html import render_html
from migrator.report.markdown import render_markdown
from migrator.report.model import build_report
from report_plans import large_plan


def timed(label: str, fn):
    start = time.perf_counter()
    value = fn()
    print(f"{label:<28} {time.perf_counter() - start:7.2f} s")
    return value


def main() -> None:
    defaults = [2000, 60, 250]
    given = [int(a) for a in sys.argv[1:4]]
    apps, per_app, per_batch = given + defaults[len(given):]
    with tempfile.TemporaryDirectory() as tmp:
        folder = timed(f"write plan ({apps} apps)", lambda: large_plan(Path(tmp) / "big", apps, per_app, per_batch))
        plan = timed("load_plan", lambda: load_plan(folder))
        print(f"{'grants':<28} {len(plan.grants):7d}")
        data = timed("build_report", lambda: build_report(plan))
        md = timed("render_markdown", lambda: render_markdown(data))
        html = timed("render_html", lambda: render_html(data))
        ps1 = timed("export_batch (batch 2)", lambda: export_batch(plan, 2))
        print(f"{'sizes (md, html, ps1)':<28} {len(md):,} / {len(html):,} / {len(ps1):,} characters")


if __name__ == "__main__":
    main()
