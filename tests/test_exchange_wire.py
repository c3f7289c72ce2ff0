"""Exchange's own answers through the real clients (msal, requests, tenacity) to the sandbox over HTTPS.

- the refusal of a cmdlet: 403, a NUL-byte body labelled `Content-Encoding: gzip` (requests cannot decode it): a
  clear CmdletRefused naming the cmdlet and the role to check, no network retries (only the small NUL-403 budget),
  and the fallbacks taken (the inventory is still exact);
- `@adminapi.errors` in a 200 answer fail the call with their message; `@adminapi.warnings` reach the caller;
- X-AnchorMailbox names the tenant by GUID, from the token's `tid` when the profile holds a domain.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
import tomli_w

from migrator.exchange.errors import CmdletRefused, ReplyErrors
from migrator.exchange.http import DEFAULT_BUDGETS
from migrator.exchange.profile import load_profile
from migrator.inventory.tenant import Clients, live_inventory
from migrator.sandbox.faults import FaultProfile
from migrator.sandbox.truth import ground_truth
from test_inventory_live import FIXTURE, as_set

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="thread")]

EXO_NAMES = ("Get-EXOMailbox", "Get-EXOMailboxPermission")
NUL_TRIES = DEFAULT_BUDGETS["nul403"].tries


def _profile(sb, tmp: Path, **changes) -> Path:
    data = tomllib.loads(Path(sb.profile_path).read_text(encoding="utf-8"))
    data.update(changes)
    path = tmp / "profile.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def refusing_sandbox():
    from migrator.sandbox.server import start_sandbox

    sb = start_sandbox(FIXTURE, seed=3, faults=FaultProfile(name="refuses-exo", refused_cmdlets=EXO_NAMES))
    try:
        yield sb
    finally:
        sb.stop()


def test_refused_cmdlet_is_a_clear_error_without_network_retries(refusing_sandbox):
    clients = Clients(load_profile(refusing_sandbox.profile_path))
    try:
        with pytest.raises(CmdletRefused) as info:
            clients.exo.invoke("Get-NoSuchCmdlet", {})
        assert clients.session.calls["Get-NoSuchCmdlet"] == NUL_TRIES
        assert dict(clients.session.retry_kinds) == {"nul403": NUL_TRIES - 1}  # nothing retried as a network fault
    finally:
        clients.close()
    err = info.value
    assert err.cmdlet == "Get-NoSuchCmdlet" and err.status == 403 and err.exit_code == 4
    msg = str(err)
    assert "refused the cmdlet Get-NoSuchCmdlet" in msg and "Exchange.ManageAsApp" in msg and "role" in msg
    assert "cannot reach" not in msg and "network" not in msg and "firewall" not in msg


def test_enabled_exo_names_refused_fall_back_and_the_inventory_stays_exact(refusing_sandbox, tmp_path):
    profile = _profile(refusing_sandbox, tmp_path, exo_cmdlets=True)
    inv = live_inventory(profile, tmp_path / "inv", progress=False, allow_unknown_trustees=True)
    assert as_set(inv) == ground_truth(json.loads(FIXTURE.read_text()))
    calls = inv.manifest["api_calls"]
    assert calls["Get-EXOMailbox"] == NUL_TRIES and calls["Get-EXOMailboxPermission"] == NUL_TRIES  # then refused
    assert calls["Get-Mailbox"] >= 1 and calls["Get-MailboxPermission"] >= 1  # the fallbacks
    assert inv.manifest["strategy"]["fullaccess"] == "scan: Get-MailboxPermission -ResultSize Unlimited"


def test_default_read_path_sends_no_exo_names(refusing_sandbox, tmp_path):
    inv = live_inventory(refusing_sandbox.profile_path, tmp_path / "inv", progress=False,
                         allow_unknown_trustees=True)
    assert as_set(inv) == ground_truth(json.loads(FIXTURE.read_text()))
    assert not any(c.startswith("Get-EXO") for c in inv.manifest["api_calls"])


def test_adminapi_errors_fail_the_call_and_the_inventory_writes_nothing(tmp_path):
    from migrator.sandbox.server import start_sandbox

    with start_sandbox(FIXTURE, seed=3, faults=FaultProfile(name="pipeline",
                                                            pipeline_error_cmdlets=("Get-Mailbox",))) as sb:
        clients = Clients(load_profile(sb.profile_path))
        try:
            with pytest.raises(ReplyErrors) as info:
                clients.exo.get_mailboxes()
            assert clients.session.calls["Get-Mailbox"] == 1  # an answer, not a fault: not retried
        finally:
            clients.close()
        err = info.value
        assert err.status == 200 and err.exception_type.endswith("ManagementObjectNotFoundException")
        assert "couldn't be completed for every object" in str(err) and err.exit_code == 4
        with pytest.raises(ReplyErrors):
            live_inventory(sb.profile_path, tmp_path / "inv", progress=False, allow_unknown_trustees=True)
        assert not (tmp_path / "inv").exists()


def test_warnings_reach_the_caller_and_the_anchor_is_the_tenant_guid(sandbox, tmp_path):
    profile = load_profile(_profile(sandbox, tmp_path, tenant_id="contoso.onmicrosoft.com"))
    clients = Clients(profile)
    seen: list[tuple[str, str]] = []
    clients.exo.on_warning = lambda cmdlet, text: seen.append((cmdlet, text))
    try:
        assert clients.exo.anchor_mailbox().endswith("@" + sandbox.tenant_id)  # from the token's tid
        sp = clients.exo.get_service_principals()[0]
        mailbox = clients.exo.get_mailboxes()[0]["PrimarySmtpAddress"]
        clients.exo.add_recipient_permission(mailbox, sp["ObjectId"])
        again = clients.exo.add_recipient_permission(mailbox, sp["ObjectId"])
    finally:
        clients.close()
    assert again.warnings and "already present" in again.warnings[0]
    assert seen == [("Add-RecipientPermission", again.warnings[0])]


def test_the_executor_journal_keeps_exchange_warnings(tmp_path):
    from migrator.executor import Connection
    from migrator.executor.context import Output
    from migrator.executor.journal import Journal
    from migrator.executor.runner import Runner
    from migrator.planner.plan import load_plan
    from migrator.sandbox.server import start_sandbox
    from sandbox_world import make_fixture, make_plan

    fixture, _ = make_fixture(seed=3, mailboxes=6, apps=2, clusters=1)
    plan_path = make_plan(fixture, tmp_path / "plan", pilot=1, batch_size=2)
    with start_sandbox(fixture, run_dir=tmp_path / "sb") as sb:
        conn = Connection(sb.profile_path)
        with Journal(plan_path) as journal:
            runner = Runner(load_plan(plan_path), journal, conn.exo, conn.graph, output=Output(quiet=True))
            row = next(r for r in conn.exo.scan_recipient_permissions() if "SELF" not in str(r.get("Trustee")))
            runner.exo.add_recipient_permission(row["Identity"], row["Trustee"])  # already there: a warning
            kept = json.loads(journal.get_meta("exchange_warnings") or "[]")
    assert [k["cmdlet"] for k in kept] == ["Add-RecipientPermission"] and "already present" in kept[0]["text"]
