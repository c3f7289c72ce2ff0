"""`migrator report` (Markdown and HTML for a change ticket) and `migrator export-ps1` (a batch as PowerShell)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import click

from migrator.errors import InputError
from migrator.planner.plan import load_plan


def _write_atomic(path: Path, data: bytes) -> None:
    """Write beside the target and rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.command("report")
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for report.md and report.html (default: PLAN/report).")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "both"]), default="both", show_default=True,
              help="md: Markdown with a Mermaid diagram (renders in tickets and pull requests); html: one "
                   "self-contained page with the diagram as SVG; both.")
def report_command(plan_path: Path, out: Path | None, fmt: str) -> None:
    """Write a report of PLAN for a change ticket: summary, batches, groups against the proven lower bound,
    the run's timeline (from the journal, once a batch has run), a diagram of apps, groups and mailboxes, and a page
    for the helpdesk (how to change an app's access from now on, and what `migrator grant` does for each app)."""
    from migrator.report.html import render_html
    from migrator.report.markdown import render_markdown
    from migrator.report.model import build_report

    data = build_report(load_plan(plan_path))
    out = out or plan_path / "report"
    written = []
    if fmt in ("md", "both"):
        _write_atomic(out / "report.md", render_markdown(data).encode("utf-8"))
        written.append(out / "report.md")
    if fmt in ("html", "both"):
        _write_atomic(out / "report.html", render_html(data).encode("utf-8"))
        written.append(out / "report.html")
    for path in written:
        click.echo(f"Wrote {path}")


@click.command("export-ps1")
@click.argument("plan_path", metavar="PLAN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--batch", "batch", type=click.IntRange(min=1), required=True, help="The batch to export.")
@click.option("--out", "out", type=str, default=None,
              help="Script file to write (default: PLAN/powershell/batch-N.ps1); `-` prints it instead.")
def export_ps1_command(plan_path: Path, batch: int, out: str | None) -> None:
    """Export one batch of PLAN as an idempotent PowerShell script (ExchangeOnlineManagement V3 and
    Microsoft.Graph), for admins who must run changes themselves: same order, checks and waits as `execute`."""
    from migrator.powershell.export import export_batch

    script = export_batch(load_plan(plan_path), batch)
    if out == "-":
        click.echo(script, nl=False)
        return
    target = Path(out) if out else plan_path / "powershell" / f"batch-{batch}.ps1"
    if target.is_dir():
        raise InputError("is a folder; give a file name", path=str(target))
    # UTF-8 with a BOM: Windows PowerShell 5.1 reads a script without one as ANSI and garbles non-ASCII names.
    _write_atomic(target, b"\xef\xbb\xbf" + script.encode("utf-8"))
    click.echo(f"Wrote {target}. Run it with: pwsh -File {target} -Organization <tenant>.onmicrosoft.com")


commands = [report_command, export_ps1_command]
