"""Exchange's answers to a member already there / not there (docs/exchange.md §3), through the real clients over HTTPS
to the sandbox:

1. The sandbox answers Add-DistributionGroupMember on a member already there and Remove-DistributionGroupMember on a
   member not there as Exchange does (MemberAlreadyExistsException / MemberNotFoundException with Exchange's text);
   the real Exchange client types them (MemberAlreadyExists is an AlreadyExists, MemberNotFound a NotFound), while a
   missing group or recipient stays a plain NotFound.
2. The executor relies on that typing: a grant (member added) and a revoke (member removed) each crash right after
   their member write was answered, and are resumed at once while admin reads still show the state from before the
   write (read-after-write lag). The resumed run sends the same write again, takes Exchange's member answer as done,
   waits for its write to show and finishes; the group ends with the member exactly once / not at all.
"""

from __future__ import annotations

import functools

import pytest

from change_world import migrated, rbac_reach, request
from migrator.exchange.errors import AlreadyExists, ApiError, MemberAlreadyExists, MemberNotFound, NotFound

pytestmark = [pytest.mark.integration]

LAG = 60.0  # s of the sandbox clock; the executor's replication_timeout (900 s) outlasts it
SETTLE = 4000.0  # s: past the sandbox's propagation delay and token lifetime (as test_change_sandbox.py)


def test_the_sandboxs_member_answers_are_typed_by_the_real_client(tmp_path):
    from migrator.exchange.profile import load_profile
    from migrator.inventory.tenant import Clients
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from sandbox_world import make_fixture

    fixture, _ = make_fixture(seed=3, mailboxes=4, apps=1, per_app=(1, 2))
    a, b = (m["primary_smtp"] for m in fixture["mailboxes"][:2])
    clock = Clock.manual()
    with start_sandbox(fixture, clock=clock, run_dir=tmp_path / "sb", smtp=False) as sb:
        clients = Clients(load_profile(sb.profile_path))
        try:
            exo = clients.exo
            exo.new_distribution_group("Member Answers", "member-answers")
            clock.advance(60)  # directory replication: a new group is found by Get-* only after a while
            exo.add_group_member("Member Answers", a)
            with pytest.raises(MemberAlreadyExists) as added:
                exo.add_group_member("Member Answers", a)
            assert isinstance(added.value, AlreadyExists)
            assert added.value.exception_type.endswith(".MemberAlreadyExistsException")
            assert "is already a member of the group" in added.value.text and added.value.status == 400
            with pytest.raises(MemberNotFound) as removed:
                exo.remove_group_member("Member Answers", b)
            assert isinstance(removed.value, NotFound)
            assert removed.value.exception_type.endswith(".MemberNotFoundException")
            assert "isn't a member of the group" in removed.value.text
            # a group or a recipient that does not exist is not a member answer: never taken as "already done"
            with pytest.raises(NotFound) as no_group:
                exo.remove_group_member("No Such Group", a)
            assert not isinstance(no_group.value, MemberNotFound)
            with pytest.raises(NotFound) as no_recipient:
                exo.add_group_member("Member Answers", "nobody@nowhere.example")
            assert not isinstance(no_recipient.value, (MemberNotFound, MemberAlreadyExists))
            assert [m.address for m in exo.group_members("Member Answers")] == [a.lower()]
        finally:
            clients.close()


class Crash(BaseException):
    """The process dies right after a write was answered (as a SIGKILL would, before anything is recorded)."""


def _crash_after_first(monkeypatch, method: str) -> dict:
    """The real client's `method`, sent to the sandbox every time; the first call 'dies' once answered. Records the
    typed errors later calls raised."""
    from migrator.exchange.exo import ExchangeClient

    real = getattr(ExchangeClient, method)
    seen: dict = {"calls": 0, "errors": []}

    @functools.wraps(real)  # keeps the method's read/write mark (exchange/access.py)
    def call(self, *args, **kwargs):
        if "invoke" in vars(self):  # the run log's rendering of the command (powershell/commands.py): not sent
            return real(self, *args, **kwargs)
        seen["calls"] += 1
        try:
            out = real(self, *args, **kwargs)
        except ApiError as exc:
            seen["errors"].append(exc)
            raise
        if seen["calls"] == 1:
            raise Crash(method)
        return out

    monkeypatch.setattr(ExchangeClient, method, call)
    return seen


def _crashed_then_resumed(world, kind: str, app: str, mailbox: str):
    """A grant/revoke as the CLI runs it, whose run dies after the crash point; run again at once on its folder."""
    from change_world import exec_settings
    from migrator.change.incremental import OWN_GROUP
    from migrator.change.request import observer, prepare
    from migrator.executor.change import apply_change
    from migrator.executor.context import Output
    from migrator.executor.session import RunOptions

    observe = observer(world.sb.profile_path)
    prepared = prepare(kind, app, [mailbox], observe, root=world.root)
    assert prepared.folder is not None and prepared.change.strategy == OWN_GROUP  # only a member write
    options = RunOptions(exec_settings(), wait=True, output=Output(quiet=True), now=world.clock.now,
                         sleep=world.clock.advance)
    with pytest.raises(Crash):
        apply_change(prepared.folder, world.sb.profile_path, options, observe=observe)
    assert world.sb.state.read_lag.visible_by() > world.clock.now()  # the write is still hidden from every read
    return apply_change(prepared.folder, world.sb.profile_path, options, observe=observe)


def _members(world, name: str) -> list[str]:
    groups = {g["name"]: [m.lower() for m in g["members"]] for g in world.sb.state.to_fixture()["groups"]}
    return groups[name]


def test_a_member_write_resent_after_a_crash_is_taken_as_done(tmp_path, monkeypatch):
    world = migrated(tmp_path)
    try:
        plan = world.plan
        app = sorted(a.app_id for a in plan.assignments)[0]
        reach = rbac_reach(world)[app]
        first, mailbox = sorted({g.mailbox for g in plan.grants} - reach)[:2]
        # a first grant gives the app a group of its own (its groups are shared): the next ones only add members
        _prepared, result = request(world, "grant", app, [first])
        assert result is not None and result.exit_code == 0, result.outcomes
        world.clock.advance(SETTLE)
        own = {g["name"] for g in world.sb.state.to_fixture()["groups"]} - {g.name for g in plan.groups}
        assert len(own) == 1
        group = own.pop()

        world.sb.state.read_lag.configure(LAG)  # from now on, reads show a write only LAG s after it
        added = _crash_after_first(monkeypatch, "add_group_member")
        result = _crashed_then_resumed(world, "grant", app, mailbox)
        assert result.exit_code == 0, result.outcomes
        assert added["calls"] == 2  # sent again by the resumed run (its read did not show the first one yet)
        assert [type(e) for e in added["errors"]] == [MemberAlreadyExists]
        assert _members(world, group).count(mailbox.lower()) == 1

        world.clock.advance(SETTLE)
        removed = _crash_after_first(monkeypatch, "remove_group_member")
        result = _crashed_then_resumed(world, "revoke", app, mailbox)
        assert result.exit_code == 0, result.outcomes
        assert removed["calls"] == 2
        assert [type(e) for e in removed["errors"]] == [MemberNotFound]
        assert mailbox.lower() not in _members(world, group) and first.lower() in _members(world, group)
    finally:
        world.close()
