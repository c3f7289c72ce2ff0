"""PowerShell checked with a real grammar (tree-sitter-powershell): every exported script and a dry run's whole
output parse with zero error nodes; the dry run lists, as cmdlets, exactly the writes the real run then sends
(compared on the sandbox against the run log and the sandbox's own request log); every write lands in the run log.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.executor.runlog import read_run_log
from migrator.planner.plan import load_plan
from migrator.powershell.export import export_batch
from ps_grammar import commands, syntax_errors
from report_plans import hostile_plan
from sandbox_world import make_fixture, make_plan, tenant_shape

ROOT = Path(__file__).resolve().parent.parent


def test_the_grammar_finds_errors_it_is_given():
    assert syntax_errors("New-ManagementScope -Name 'x' -RecipientRestrictionFilter 'a''b'\n") == []
    assert syntax_errors("New-ManagementScope -Name 'x\n")  # an unterminated literal
    assert syntax_errors("if ($x { Write-Host 'y' }\n")  # a missing parenthesis
    assert syntax_errors("$a = @('x', 'y'\n")


@pytest.mark.parametrize("which", ["sample", "hostile"])
def test_every_exported_script_parses_with_zero_error_nodes(which, tmp_path):
    plan = load_plan(ROOT / "plans" / "contoso") if which == "sample" else load_plan(hostile_plan(tmp_path / "h"))
    for batch in plan.batches:
        script = export_batch(plan, int(batch.number))
        assert syntax_errors(script) == [], (which, batch.number)
        names = {name for name, _ in commands(script)}
        assert {"New-DistributionGroup", "New-ManagementScope", "New-ManagementRoleAssignment",
                "Remove-RecipientPermission", "Remove-MgServicePrincipalAppRoleAssignment"} <= names


@pytest.fixture
def world(tmp_path):
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, grants = make_fixture(seed=5, mailboxes=10, apps=3, clusters=2)
    plan = make_plan(fixture, tmp_path / "plan", pilot=1, batch_size=2)
    settings = SandboxSettings(propagation_delay=0.0, token_lifetime=1.0, replication_delay=0.0, sendas_delay=0.0,
                               graph_replication_delay=0.0)
    with start_sandbox(fixture, run_dir=tmp_path / "sb", settings=settings) as sb:
        yield sb, plan, grants


def _graph_cmdlet(operation: str) -> str:
    method = operation.split(" ", 1)[0]
    return {"POST": "New-MgServicePrincipalAppRoleAssignment",
            "DELETE": "Remove-MgServicePrincipalAppRoleAssignment"}[method]


def _unquote(text: str) -> str:
    return text[1:-1].replace("''", "'") if text.startswith("'") and text.endswith("'") else text


@pytest.mark.integration
def test_dry_run_prints_parseable_powershell_listing_every_write_the_real_run_sends(world):
    sb, plan, _grants = world
    before = tenant_shape(sb.state)
    sb.requests.clear()
    dry = CliRunner().invoke(main, ["execute", str(plan), "--profile", str(sb.profile_path), "--all", "--dry-run",
                                    "--concurrency", "1"], catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    script = dry.stdout
    assert syntax_errors(script) == [], script
    assert script.startswith("# migrator execute --dry-run: tenant ")
    assert "# Nothing was changed: no write was sent to the tenant." in script
    assert script.rstrip().endswith("# Dry run finished: nothing was changed.")
    assert sb.requests.counts()["write"] == 0 and tenant_shape(sb.state) == before
    assert not (plan / "run-log.jsonl").exists() and not (plan / "journal.db").exists()
    printed = [(name, params) for name, params in commands(script)]
    assert printed, script
    app_names = {a.app_id: a.app_name for a in load_plan(plan).assignments}
    removals = [p for name, p in printed if name == "Remove-RecipientPermission"]
    assert removals and all(p["Confirm"] == "$false" for p in removals)
    assert any(f"# app {name}" in script for name in app_names.values())  # ids are named

    real = CliRunner().invoke(main, ["execute", str(plan), "--profile", str(sb.profile_path), "--all", "--yes",
                                     "--wait", "--propagation-wait", "0.3", "--token-lifetime", "1.1",
                                     "--token-margin", "0.2", "--readback-spacing", "0.1",
                                     "--concurrency", "1"], catch_exceptions=False)
    assert real.exit_code == 0, real.output
    sent = [e for e in sb.requests.writes()]
    sent_cmdlets = Counter(e.operation if e.service == "exchange" else _graph_cmdlet(e.operation) for e in sent)
    assert Counter(name for name, _ in printed) == sent_cmdlets  # every write, and only those, in kind and number

    log = read_run_log(plan)
    assert [e["outcome"] for e in log] == ["ok"] * len(sent)  # every write sent is in the run log
    assert Counter(e["cmdlet"] for e in log) == sent_cmdlets
    assert all(set(e) == {"time", "run", "phase", "batch", "step", "cmdlet", "target", "outcome"} for e in log)
    secret = sb.client_secret
    assert secret not in (plan / "run-log.jsonl").read_text(encoding="utf-8")
    # the same objects: names created and grants removed, as the dry run printed them
    for cmdlet, key in (("New-DistributionGroup", "Name"), ("New-ManagementScope", "Name"),
                        ("New-ManagementRoleAssignment", "Name")):
        dry_names = sorted(_unquote(p[key]) for name, p in printed if name == cmdlet)
        real_names = sorted(e["target"].split("Name=", 1)[1].split(" ")[0] for e in log if e["cmdlet"] == cmdlet)
        assert dry_names == real_names, cmdlet
    dry_removed = sorted((_unquote(p["Identity"]), _unquote(p["Trustee"])) for p in removals)
    real_removed = sorted(tuple(part.split("=", 1)[1] for part in e["target"].split(" ")[:2])
                          for e in log if e["cmdlet"] == "Remove-RecipientPermission")
    assert dry_removed == real_removed
    steps = [e["step"] for e in log]
    assert steps.index("groups") < steps.index("remove_legacy")  # in the executor's order
    assert json.loads(json.dumps(log))  # plain JSON lines
