"""The question before the first change, and runs that change nothing leaving the plan folder byte-identical.

Through the CLI (CliRunner) and the real clients against the sandbox: execute and rollback show the tenant, the
batch, its apps by name and the counts, and ask; "n" changes nothing in the tenant or the plan folder; without a
terminal and without --yes they refuse (exit 6); a failed sign-in, an unknown batch and drift leave the folder
byte-identical (no journal.db, no journal.lock, no run log).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from migrator.cli import confirm, main
from sandbox_world import make_fixture, make_plan, tenant_shape

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tmp_path):
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, _ = make_fixture(seed=3, mailboxes=10, apps=3, clusters=2)
    plan = make_plan(fixture, tmp_path / "plan", pilot=1, batch_size=2)
    settings = SandboxSettings(propagation_delay=0.5, token_lifetime=1.0, replication_delay=0.3)
    with start_sandbox(fixture, run_dir=tmp_path / "sb", settings=settings) as sb:
        yield sb, plan, fixture


@pytest.fixture
def terminal(monkeypatch):
    """Act as if a person sat at a terminal (CliRunner's stdin is not one)."""
    monkeypatch.setattr(confirm, "stdin_is_terminal", lambda: True)


def run(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input, catch_exceptions=False)


def folder(path):
    """Every file of the plan folder with its bytes."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _names(fixture) -> dict[str, str]:
    return {a["app_id"]: a["display_name"] for a in fixture["apps"]}


def test_execute_without_yes_shows_the_change_and_a_no_changes_nothing(world, terminal):
    sb, plan, fixture = world
    before_tenant, before_folder = tenant_shape(sb.state), folder(plan)
    result = run("execute", plan, "--profile", sb.profile_path, "--batch", 2, input="n\n")
    assert result.exit_code == 12, result.output
    from migrator.planner.plan import load_plan

    batch = next(b for b in load_plan(plan).batches if int(b.number) == 2)
    names = _names(fixture)
    apps = "".join(f"  {names[a]}  [{a}]  {sum(1 for g in load_plan(plan).grants if g.app_id == a)} mailbox(es) to "
                   "move to RBAC\n" for a in batch.apps)
    expected = (f"Tenant: {sb.tenant_id} (profile sandbox)\n"
                f"Apply batch 2 of {plan}: {len(batch.apps)} app(s)\n"
                f"{apps}"
                "  create or check 2 group(s) (reuse 0), 2 scope(s), 2 role assignment(s)\n"
                "  after the propagation wait: remove 2 Entra SMTP.SendAsApp assignment(s) (the cut-over)\n"
                f"  after the token wait: remove {batch.grants} legacy SendAs grant(s)\n"
                "Steps to run: sp pointers, groups, scopes, assignments, verify, propagation wait, cutover, token wait, "
                "remove legacy, final verify\n"
                "Apply batch 2? [y/N]: n\n"
                "Batch 2: not confirmed; nothing was changed.\n")
    assert expected in result.output
    assert tenant_shape(sb.state) == before_tenant
    assert folder(plan) == before_folder


def test_rollback_without_yes_asks_and_a_no_changes_nothing(world, terminal):
    sb, plan, fixture = world
    first = run("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes", "--propagation-wait", 60)
    assert first.exit_code == 10, first.output  # set up, verified, now waiting for propagation
    before_tenant, before_folder = tenant_shape(sb.state), folder(plan)
    result = run("rollback", plan, "--profile", sb.profile_path, "--batch", 1, input="n\n")
    assert result.exit_code == 12, result.output
    (app,) = __import__("migrator.planner.plan", fromlist=["load_plan"]).load_plan(plan).batches[0].apps
    expected = (f"Tenant: {sb.tenant_id} (profile sandbox)\n"
                f"Roll back batch 1 of {plan}: 1 app(s)\n"
                f"  {_names(fixture)[app]}  [{app}]  0 SendAs grant(s) to restore\n"
                "  restore 0 SendAs and 0 FullAccess grant(s) this batch removed\n"
                "  remove 1 role assignment(s), 1 scope(s), 1 group(s), 0 service-principal pointer(s) this tool "
                "created\n"
                "Steps to run: restore grants, grants wait, regrant, token wait, remove assignments, remove scopes, "
                "remove groups, "
                "remove pointers\n"
                "Roll back batch 1? [y/N]: n\n"
                "Batch 1: not confirmed; nothing was changed.\n")
    assert expected in result.output
    assert tenant_shape(sb.state) == before_tenant
    assert folder(plan) == before_folder
    # and a yes does roll it back
    yes = run("rollback", plan, "--profile", sb.profile_path, "--batch", 1, input="y\n")
    assert yes.exit_code == 0, yes.output
    assert len(tenant_shape(sb.state)["groups"]) < len(before_tenant["groups"])


def test_without_a_terminal_and_without_yes_it_refuses_and_changes_nothing(world):
    sb, plan, _ = world
    before_tenant, before_folder = tenant_shape(sb.state), folder(plan)
    for command in ("execute", "rollback"):
        if command == "rollback":  # something to roll back first
            assert run("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes").exit_code == 10
            before_tenant, before_folder = tenant_shape(sb.state), folder(plan)
        result = run(command, plan, "--profile", sb.profile_path, "--batch", 1)
        assert result.exit_code == 6, result.output
        assert (f"Error: {command} changes the tenant and there is no terminal to ask on: nothing was changed. "
                "Review the changes above (or run with --dry-run) and run the same command with --yes to go ahead"
                in result.output)
        assert tenant_shape(sb.state) == before_tenant
        assert folder(plan) == before_folder


def test_a_failed_sign_in_leaves_the_plan_folder_byte_identical(world, tmp_path):
    sb, plan, _ = world
    secret = tmp_path / "wrong-secret"
    secret.write_text("not-the-secret")
    profile = tmp_path / "wrong.toml"
    profile.write_text(sb.profile_path.read_text().replace(
        next(line for line in sb.profile_path.read_text().splitlines() if "secret_file" in line),
        f"secret_file = {str(secret)!r}"))
    before = folder(plan)
    result = run("execute", plan, "--profile", profile, "--batch", 1, "--yes")
    assert result.exit_code == 4, result.output
    assert folder(plan) == before and not (plan / "journal.lock").exists()


@pytest.mark.parametrize("case", ["unknown batch", "drift"])
def test_a_refused_batch_leaves_the_plan_folder_byte_identical(world, case):
    sb, plan, fixture = world
    # a journal from an earlier run must be left as it is, too
    assert run("execute", plan, "--profile", sb.profile_path, "--batch", 1, "--yes").exit_code == 10
    if case == "drift":
        state = sb.state
        app = fixture["apps"][0]["app_id"]
        taken = {p["mailbox"] for p in fixture["recipient_permissions"] if p["trustee"].get("app") == app}
        target = next(f"user{i:05d}@contoso.com" for i in range(10) if f"user{i:05d}@contoso.com" not in taken)
        state.invoke("Add-RecipientPermission", {"Identity": target, "Trustee": app, "AccessRights": "SendAs",
                                                 "Confirm": False}, caller=state.admin_caller())
    before = folder(plan)
    args = ["--batch", 99] if case == "unknown batch" else ["--all"]
    result = run("execute", plan, "--profile", sb.profile_path, *args, "--yes")
    assert result.exit_code == (2 if case == "unknown batch" else 3), result.output
    assert folder(plan) == before


def test_execute_json_says_waiting_with_exit_10_and_the_journal_state(world):
    import json

    sb, plan, _ = world
    result = CliRunner().invoke(main, ["execute", str(plan), "--profile", str(sb.profile_path), "--batch", "1",
                                       "--yes", "--json"], catch_exceptions=False)
    assert result.exit_code == 10, result.output
    data = json.loads(result.stdout)  # the JSON alone on stdout; progress went to stderr
    assert data["command"] == "execute" and data["exit_code"] == 10 and data["dry_run"] is False
    (outcome,) = data["outcomes"]
    assert outcome["batch"] == 1 and outcome["status"] == "waiting" and outcome["until"]
    batch = data["state"]["batches"][0]
    assert batch["condition"] == "waiting" and batch["waiting_until"] == outcome["until"]
    assert data["state"]["totals"]["migrated"] == 0 and data["api_calls"]["write"] > 0
