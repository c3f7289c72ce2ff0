"""--dry-run is safe by construction: every client method is marked a read or a write where it is defined
(migrator/exchange/access.py), the executor's guard asks those marks and refuses an unmarked method, and a dry run
of every batch against the sandbox sends no write (the sandbox's request log says so)."""

from __future__ import annotations

from collections import Counter

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.exchange.access import (
    BY_CMDLET,
    BY_HTTP_METHOD,
    READ,
    WRITE,
    access_of,
    by_cmdlet,
    public_methods,
    read,
    unmarked_methods,
)
from migrator.exchange.exo import ExchangeClient
from migrator.exchange.graph import GraphClient
from migrator.executor.context import Control, Guarded, Output, UnmarkedMethod

CLIENTS = (ExchangeClient, GraphClient)
WRITE_VERBS = ("new_", "add_", "remove_", "set_", "update_", "grant_", "delete_")
READ_VERBS = ("get_", "list_", "scan_", "test_", "batch_get")


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.__name__)
def test_every_public_client_method_is_a_read_or_a_marked_write(client):
    assert public_methods(client), "the walk found no method at all"
    assert unmarked_methods(client) == []


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.__name__)
def test_marks_agree_with_the_verbs(client):
    """A method named like a write is marked a write, one named like a read is marked a read (a wrong mark would
    let a dry run send a write, or stop a real run from counting it)."""
    for name in public_methods(client):
        kind = access_of(client, name)
        if name.startswith(WRITE_VERBS):
            assert kind == WRITE, name
        elif name.startswith(READ_VERBS):
            assert kind == READ, name
        else:
            assert kind in (READ, BY_CMDLET, BY_HTTP_METHOD), name


class _Recorder:
    """Stands for the wire: what reached the client."""

    def __init__(self) -> None:
        self.sent: list[str] = []


class ClientWithForgottenMark(ExchangeClient):
    """A contributor adds a write and forgets its mark."""

    def __init__(self, recorder: _Recorder) -> None:  # no session: nothing may reach the wire
        self.recorder = recorder

    def remove_every_grant(self, mailbox: str) -> None:
        self.recorder.sent.append(f"remove_every_grant {mailbox}")

    @read
    def get_mailboxes(self, properties=None):  # a marked read that does reach the wire
        self.recorder.sent.append("get_mailboxes")
        return []

    @by_cmdlet
    def invoke(self, cmdlet, params=None, select=None, *, scan=False):  # invoke without HTTP
        self.recorder.sent.append(cmdlet)
        return []


def _guarded(client, *, dry_run: bool, spec=None) -> tuple[Guarded, Counter, Output]:
    counter: Counter = Counter()
    output = Output(quiet=True)
    return Guarded(client, spec=spec, control=Control(), output=output, dry_run=dry_run, counter=counter), counter, \
        output


def test_an_unmarked_write_fails_the_walk_and_is_never_sent():
    rec = _Recorder()
    client = ClientWithForgottenMark(rec)
    assert unmarked_methods(ClientWithForgottenMark) == ["remove_every_grant"]
    for dry_run in (True, False):
        guarded, _counter, _ = _guarded(client, dry_run=dry_run)
        with pytest.raises(UnmarkedMethod, match="remove_every_grant"):
            guarded.remove_every_grant("a@contoso.com")
    assert rec.sent == []


def test_dry_run_answers_marked_writes_itself_and_sends_reads():
    rec = _Recorder()
    guarded, counter, output = _guarded(ClientWithForgottenMark(rec), dry_run=True)
    assert guarded.get_mailboxes() == []
    assert guarded.invoke("Get-Mailbox", {"Identity": "a"}) == []
    assert guarded.invoke("Remove-ServicePrincipal", {"Identity": "x"}) is None  # by_cmdlet: a write verb
    assert guarded.invoke(cmdlet="set-Mailbox") is None  # cmdlet names are case-insensitive
    assert guarded.new_management_scope("S", "(x -eq 'y')") == {"dry_run": True}
    assert rec.sent == ["get_mailboxes", "Get-Mailbox"]
    assert counter["read"] == 2 and counter["write"] == 0
    # each withheld write as the cmdlet the real client would send (its own method built it, against a recorder)
    assert output.changes == ["Remove-ServicePrincipal -Identity 'x'", "set-Mailbox",
                              "New-ManagementScope -Name 'S' -RecipientRestrictionFilter '(x -eq ''y'')'"]
    assert rec.sent == ["get_mailboxes", "Get-Mailbox"]  # the recorder stood in for the wire: nothing more sent


def test_a_fake_is_judged_by_the_real_clients_marks():
    """The executor passes the real client class as `spec`: a test fake cannot make a write look like a read."""

    class Fake:
        def __init__(self) -> None:
            self.sent: list[str] = []

        def remove_recipient_permission(self, mailbox, trustee):
            self.sent.append("remove")

        def helper_only_the_fake_has(self):
            self.sent.append("helper")

    fake = Fake()
    guarded, _counter, _ = _guarded(fake, dry_run=True, spec=ExchangeClient)
    assert guarded.remove_recipient_permission("m", "t") is None
    with pytest.raises(UnmarkedMethod):
        guarded.helper_only_the_fake_has()
    assert fake.sent == []


@pytest.mark.integration
def test_a_dry_run_of_every_batch_sends_no_write_to_the_sandbox(tmp_path):
    from migrator.sandbox.server import start_sandbox
    from sandbox_world import make_fixture, make_plan, tenant_shape

    fixture, _ = make_fixture(seed=3, mailboxes=10, apps=3, clusters=2)
    plan = make_plan(fixture, tmp_path / "plan", pilot=1, batch_size=2)
    with start_sandbox(fixture, run_dir=tmp_path / "sb") as sb:
        before = tenant_shape(sb.state)
        sb.requests.clear()
        result = CliRunner().invoke(main, ["execute", str(plan), "--profile", str(sb.profile_path), "--all",
                                           "--dry-run"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        log = sb.requests
        assert log.counts()["read"] > 0  # the dry run did read the tenant (drift check, SPs, groups)
        assert log.writes() == [] and log.counts()["write"] == 0
        assert tenant_shape(sb.state) == before
        would = [line for line in result.stdout.splitlines() if not line.startswith("#")]
        assert any(line.startswith("New-ManagementRoleAssignment ") for line in would), result.output  # it knew
        assert "0 write(s)" in result.output
        # The same log sees a write when one is sent (the proof above is not blind).
        real = CliRunner().invoke(main, ["execute", str(plan), "--profile", str(sb.profile_path), "--batch", "1",
                                         "--yes", "--propagation-wait", "30"], catch_exceptions=False)
        assert real.exit_code == 10, real.output  # set up, then waiting for propagation
        assert log.counts()["write"] > 0
        assert {e.operation for e in log.writes()} >= {"New-ManagementScope", "New-ManagementRoleAssignment"}
