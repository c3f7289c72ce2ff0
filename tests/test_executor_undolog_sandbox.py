"""The undo log through the real clients (msal, requests, InvokeCommand, Graph) against the sandbox: journal.db
deleted after a batch removed its legacy grants, `rollback --from-undo-log` restores them exactly; a full disk in
a subprocess run stops it with nothing lost and the rerun converges. Checked by the sandbox's own timeline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.executor.undolog import UNDO_LOG_NAME
from sandbox_world import make_fixture, make_plan, tenant_shape

pytestmark = pytest.mark.integration

FAST = ["--propagation-wait", 0.6, "--token-lifetime", 1.2, "--token-margin", 0.2, "--readback-spacing", 0.2,
        "--wait"]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def world(tmp_path):
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, grants = make_fixture(seed=5, mailboxes=10, apps=3, clusters=2)
    plan = make_plan(fixture, tmp_path / "plan", pilot=1, batch_size=2)
    settings = SandboxSettings(propagation_delay=0.0, token_lifetime=1.0, replication_delay=0.0, sendas_delay=0.1,
                               graph_replication_delay=0.1)
    with start_sandbox(fixture, run_dir=tmp_path / "sb", settings=settings) as sb:
        yield sb, plan, grants


def test_journal_deleted_after_removal_rollback_from_undo_log_restores_exactly(world):
    sb, plan, grants = world
    before = tenant_shape(sb.state)
    done = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", *FAST)
    assert done.exit_code == 0, done.output
    assert tenant_shape(sb.state)["recipient_permissions"] != before["recipient_permissions"]  # grants removed
    for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
        (plan / name).unlink(missing_ok=True)
    refused = cli("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes")
    assert refused.exit_code == 1 and "--from-undo-log" in refused.output
    status = cli("status", plan)
    assert "journal.db is missing but undo-log.jsonl records" in status.output
    back = cli("rollback", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", "--from-undo-log",
               "--grant-wait", 0.2, "--token-lifetime", 1.2, "--token-margin", 0.2, "--readback-spacing", 0.2, "--wait")
    assert back.exit_code == 0, back.output
    assert "Rebuilt journal.db from the undo log" in back.output
    assert tenant_shape(sb.state) == before  # grants, claims, pointers, groups, scopes, assignments
    report = sb.state.check(grants)
    assert report.gaps == [] and report.overgrants == [], report.to_dict()
    secret = sb.client_secret
    assert secret not in (plan / UNDO_LOG_NAME).read_text()


RUNNER = """
import errno, sys
from migrator.executor.undolog import UndoLog
nth = int(sys.argv[1])
real = UndoLog._write
count = [0]
def full(self, text):
    count[0] += 1
    if count[0] >= nth:
        raise OSError(errno.ENOSPC, "No space left on device")
    return real(self, text)
UndoLog._write = full
from migrator.cli import main
main(sys.argv[2:], prog_name="migrator")
"""


def test_full_disk_in_a_subprocess_run_loses_nothing_and_the_rerun_converges(world):
    sb, plan, grants = world
    args = ["execute", str(plan), "--profile", str(sb.profile_path), "--all", "--yes",
            *map(str, FAST), "--concurrency", "2"]
    first = cli(*args[:3], str(sb.profile_path), "--batch", 1, "--yes", "--propagation-wait", 0.6,
                "--token-lifetime", 1.2, "--token-margin", 0.2)
    assert first.exit_code == 10, first.output  # batch 1 set up, now in its propagation wait (exit 10)
    lines_before = len((plan / UNDO_LOG_NAME).read_text().splitlines())
    proc = subprocess.run([sys.executable, "-c", RUNNER, "3", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 12, proc.stdout + proc.stderr
    assert "cannot write the undo log undo-log.jsonl" in proc.stdout + proc.stderr
    log = [json.loads(line) for line in (plan / UNDO_LOG_NAME).read_text().splitlines()]
    assert len(log) > lines_before
    logged = {r["key"] for r in log if r["record"] == "removal" and r["kind"] == "sendas"}
    still = {(p["trustee"]["app"], p["mailbox"]) for p in sb.state.snapshot()["recipient_permissions"]
             if "app" in p["trustee"]}
    removed = {f"{a}|{m}" for a, m in grants if (a, m) not in still}
    assert removed <= logged  # every grant gone from the tenant has its prior state on disk
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert not {(p["trustee"].get("app"), p["mailbox"]) for p in sb.state.snapshot()["recipient_permissions"]
                if "app" in p["trustee"]}
    report = sb.state.check(grants)
    assert report.gaps == [] and report.overgrants == [], report.to_dict()
    assert json.loads(cli("status", plan, "--json").stdout)["warnings"] == []
