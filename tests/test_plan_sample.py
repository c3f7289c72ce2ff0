"""The committed plan of the bundled sample tenant (plans/contoso) must be what the tool makes today.

Regenerated here from migrator/samples/contoso/exports in a temporary folder, with the options recorded in the committed
plan.json, and compared file by file (plan.json: everything but `created`). When this fails, the plan is stale:

    migrator inventory --from-exports migrator/samples/contoso/exports --out inventory/contoso --force
    migrator plan inventory/contoso --out plans/contoso --force --batch-size 4
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from migrator.cli import main
from migrator.planner.plan import load_plan

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "plans" / "contoso"
EXPORTS = ROOT / "migrator" / "samples" / "contoso" / "exports"
REGENERATE = ("migrator inventory --from-exports migrator/samples/contoso/exports --out inventory/contoso --force && "
              "migrator plan inventory/contoso --out plans/contoso --force --batch-size 4")


def _plan_args(meta: dict) -> list[str]:
    o = meta["options"]
    args = ["--strategy", o["strategy"], "--pilot", str(o["pilot"]), "--batch-size", str(o["batch_size"]),
            "--prefix", o["prefix"], "--time-limit", str(o["time_limit"]), "--role", o["role"]]
    args += ["--fullaccess-smtp", o["fullaccess_smtp"]] + (["--remove-fullaccess"] if o["remove_fullaccess"] else [])
    return args + (["--allow-attribute-scopes"] if o["allow_attribute_scopes"] else [])


def test_committed_sample_plan_loads_and_is_exact():
    plan = load_plan(COMMITTED)  # hashes and exactness
    assert plan.meta["source"]["path"] == "inventory/contoso"
    assert plan.meta["cover"]["optimal"] is True


def test_committed_sample_plan_is_current(tmp_path, monkeypatch):
    committed_meta = json.loads((COMMITTED / "plan.json").read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)  # same relative paths as in the repository, so plan.json's source path matches
    runner = CliRunner()
    inv = runner.invoke(main, ["inventory", "--from-exports", str(EXPORTS), "--out", "inventory/contoso"])
    assert inv.exit_code == 0, inv.output
    result = runner.invoke(main, ["plan", "inventory/contoso", "--out", "plans/contoso",
                                  *_plan_args(committed_meta)])
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "plans" / "contoso"
    names = sorted(p.name for p in COMMITTED.iterdir())
    assert names == sorted(p.name for p in fresh.iterdir()), f"plans/contoso is out of date; run: {REGENERATE}"
    for name in names:
        if name == "plan.json":
            old = {k: v for k, v in committed_meta.items() if k != "created"}
            new = {k: v for k, v in json.loads((fresh / name).read_text(encoding="utf-8")).items() if k != "created"}
            assert old == new, f"plans/contoso/plan.json is out of date; run: {REGENERATE}"
        else:
            assert (COMMITTED / name).read_bytes() == (fresh / name).read_bytes(), (
                f"plans/contoso/{name} is out of date; run: {REGENERATE}")
