"""The committed plans of the bundled sample tenants (plans/contoso, plans/northwind) must be what the tool makes
today.

Each is regenerated here from its exports (migrator/samples/<name>/exports) in a temporary folder, with the options
recorded in the committed plan.json, and compared file by file (plan.json: everything but `created`). When this
fails, the plan is stale: run the command the failure prints (`regenerate` below).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.planner.plan import load_plan

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ("contoso", "northwind")
PLAN_OPTIONS = {"contoso": " --batch-size 4", "northwind": ""}


def regenerate(name: str) -> str:
    return (f"migrator inventory --from-exports migrator/samples/{name}/exports --out inventory/{name} --force && "
            f"migrator plan inventory/{name} --out plans/{name} --force{PLAN_OPTIONS[name]}")


def _plan_args(meta: dict) -> list[str]:
    o = meta["options"]
    args = ["--strategy", o["strategy"], "--pilot", str(o["pilot"]), "--batch-size", str(o["batch_size"]),
            "--prefix", o["prefix"], "--time-limit", str(o["time_limit"]), "--role", o["role"]]
    args += ["--fullaccess-smtp", o["fullaccess_smtp"]] + (["--remove-fullaccess"] if o["remove_fullaccess"] else [])
    return args + (["--allow-attribute-scopes"] if o["allow_attribute_scopes"] else [])


@pytest.mark.parametrize("name", SAMPLES)
def test_committed_sample_plan_loads_and_is_exact(name):
    plan = load_plan(ROOT / "plans" / name)  # hashes and exactness
    assert plan.meta["source"]["path"] == f"inventory/{name}"
    assert plan.meta["cover"]["optimal"] is True


def test_the_northwind_plan_moves_its_restricted_graph_ews_apps_and_reports_the_others():
    plan = load_plan(ROOT / "plans" / "northwind")
    assert {m.app_name for m in plan.mail_access} == {"EXO SP for Northwind Mail Archiver", "Northwind Contracts"}
    statuses = {a["app_name"]: (a["status"], a["planned"]) for a in plan.meta["mail_access"]["apps"]}
    assert statuses["EXO SP for Northwind EWS Sync"] == ("deny", False)
    assert statuses["Northwind Room Booker"] == ("tenant_wide", False)
    assert {a.kind for a in plan.assignments} == {"smtp", "graph-ews"}


@pytest.mark.parametrize("name", SAMPLES)
def test_committed_sample_plan_is_current(name, tmp_path, monkeypatch):
    committed = ROOT / "plans" / name
    committed_meta = json.loads((committed / "plan.json").read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)  # same relative paths as in the repository, so plan.json's source path matches
    runner = CliRunner()
    exports = ROOT / "migrator" / "samples" / name / "exports"
    inv = runner.invoke(main, ["inventory", "--from-exports", str(exports), "--out", f"inventory/{name}"])
    assert inv.exit_code == 0, inv.output
    result = runner.invoke(main, ["plan", f"inventory/{name}", "--out", f"plans/{name}", *_plan_args(committed_meta)])
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "plans" / name
    names = sorted(p.name for p in committed.iterdir())
    stale = f"plans/{name} is out of date; run: {regenerate(name)}"
    assert names == sorted(p.name for p in fresh.iterdir()), stale
    for file in names:
        if file == "plan.json":
            old = {k: v for k, v in committed_meta.items() if k != "created"}
            new = {k: v for k, v in json.loads((fresh / file).read_text(encoding="utf-8")).items() if k != "created"}
            assert old == new, f"{file}: {stale}"
        else:
            assert (committed / file).read_bytes() == (fresh / file).read_bytes(), f"{file}: {stale}"


@pytest.mark.integration
def test_the_northwind_exports_are_what_the_sandbox_serves(tmp_path):
    """The committed export files are the Northwind fixture as the export script reads it (through the sandbox)."""
    spec = importlib.util.spec_from_file_location("make_northwind", ROOT / "samples" / "make_northwind.py")
    assert spec is not None and spec.loader is not None
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    fresh = tmp_path / "exports"
    make.generate(fresh)
    assert make.differences(fresh, ROOT / "migrator" / "samples" / "northwind" / "exports") == [], \
        "migrator/samples/northwind/exports is stale: run python samples/make_northwind.py"
