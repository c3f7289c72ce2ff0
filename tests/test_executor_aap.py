"""The executor's Graph/EWS track (issue 16) through the real clients (msal, requests, InvokeCommand, Graph) against
the sandbox, on the real planner's plan of a live inventory (aap_plan.py): a batch moving an app fenced by a
RestrictAccess policy on a nested group, a mixed app (SendAs and Graph Mail.Send) and an SMTP app to RBAC for
Applications, each consent removed before its policy; rollback back to the exact prior state; drift in a policy or a
consent stops the run before any write; a dry run writes nothing; a crash right after each new kind of write
resumes; a consent that comes back keeps the policy (or, once it is gone, is warned about). Each checked per
permission by the sandbox's timeline (0 gaps, 0 over-grants), with the DenyAccess and policy-less apps untouched.
The sandbox clock is real time fast-forwarded through the executor's waits (Clock.sleep)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aap_plan import mixed_fixture, planned
from aap_tenant import ARCHIVE_SET, ARCHIVER, EWSAPP, MAILBOXES, OPEN
from migrator.executor.aap import CONSENT, POLICY
from migrator.executor.context import ExecSettings, Output
from migrator.executor.journal import Journal
from migrator.executor.rollback import RollbackRunner
from migrator.executor.runner import Runner
from migrator.planner.plan import load_plan
from sandbox_tenant import BILLING, CRM

pytestmark = pytest.mark.integration

SANDBOX = {"sendas_delay": 0.0, "graph_replication_delay": 5.0, "propagation_delay": 100.0,
           "access_policy_delay": 50.0, "token_lifetime": 300.0}
EXEC = {"propagation_wait": 200.0, "token_lifetime": 300.0, "token_margin": 60.0, "readback_spacing": 5.0,
        "grant_apply_wait": 60.0, "policy_apply_wait": 120.0, "replication_poll": 1.0, "verify_retry_delay": 1.0,
        "replication_timeout": 60.0}
FENCED = ("Mail.Read", "Mail.Send")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """The planner's plan of the tenant, made once: the sandbox's ids (object ids, SIDs in the policies'
    identities) are the same for every start of the same fixture."""
    from migrator.sandbox.server import start_sandbox

    tmp = tmp_path_factory.mktemp("aap-plan")
    with start_sandbox(mixed_fixture(), run_dir=tmp / "sb", smtp=False) as sb:
        return planned(sb.profile_path, tmp / "plan")


@pytest.fixture
def world(tmp_path, template):
    import shutil

    from migrator.executor.session import connect
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    clock = Clock()  # real time, moved forward by the executor's sleeps
    with start_sandbox(mixed_fixture(), clock=clock, settings=SandboxSettings(**SANDBOX), run_dir=tmp_path / "sb",
                       smtp=False) as sb:
        plan = Path(shutil.copytree(template, tmp_path / "plan"))
        conn = connect(sb.profile_path, preflight=False)
        try:
            yield sb, conn, plan, clock
        finally:
            conn.session.close()


def run(world, *, rollback: bool = False, dry_run: bool = False, wait: bool = True, **settings):
    _sb, conn, plan_path, clock = world
    plan = load_plan(plan_path)
    cls = RollbackRunner if rollback else Runner
    with Journal(plan_path, readonly=dry_run, clock=clock.now) as journal:
        runner = cls(plan, journal, conn.exo, conn.graph, settings=ExecSettings(**{**EXEC, **settings}), wait=wait,
                     dry_run=dry_run, output=Output(quiet=True), now=clock.now, sleep=clock.sleep)
        result = runner.run([1])
    result.output = runner.output
    return result


def policies(sb) -> list[dict]:
    rows = sb.state.invoke("Get-ApplicationAccessPolicy", {}, caller=sb.state.admin_caller())
    return sorted(({k: v for k, v in r.items() if k != "ObjectState"} for r in rows), key=lambda r: r["Identity"])


def consents(sb) -> dict[str, list[tuple[str, str]]]:
    return {a["app_id"]: sorted((r["resource"], r["permission"]) for r in a.get("app_roles", []))
            for a in sb.state.snapshot()["apps"]}


def rbac_objects(sb) -> dict:
    fx = sb.state.snapshot()
    return {"groups": sorted(g["name"] for g in fx.get("groups", [])),
            "scopes": sorted(s["name"] for s in fx.get("management_scopes", [])),
            "assignments": sorted(r["name"] for r in fx.get("role_assignments", []))}


def assert_clean(sb) -> None:
    report = sb.check()
    assert report.per_permission() == {}, report.to_dict()["per_permission"]
    assert report.mail_gaps == [] and report.mail_overgrants == []
    assert report.ok, report.to_dict()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_execute_moves_the_fenced_app_consent_first_then_policy_and_rollback_restores_it(world, concurrency):
    sb, _conn, plan_path, _clock = world
    before_policies, before_consents, before_rbac = policies(sb), consents(sb), rbac_objects(sb)
    result = run(world, concurrency=concurrency)
    assert [o.status for o in result.outcomes] == ["done"], result.outcomes[0].message
    assert_clean(sb)
    # the two migrated apps' policies are gone, the others' are not (DenyAccess; CRM's, which fences nothing it holds)
    after = policies(sb)
    moved = (ARCHIVER, BILLING)
    assert after == [p for p in before_policies if p["AppId"] not in moved]
    assert {p["AppId"] for p in after} == {EWSAPP, CRM}
    # the fenced consents are gone (and the SMTP claims); the other apps' Entra roles are as they were
    now = consents(sb)
    assert now[ARCHIVER] == [] and now[BILLING] == [] and now[CRM] == []
    assert {a: r for a, r in now.items() if a not in (*moved, CRM)} == {
        a: r for a, r in before_consents.items() if a not in (*moved, CRM)}
    assert now[OPEN] == [("Microsoft Graph", "Calendars.ReadWrite")]
    assert now[EWSAPP] == [("Office 365 Exchange Online", "full_access_as_app")]
    # RBAC serves exactly each policy's (flattened) reach per permission
    reach = sb.mail_access([ARCHIVER, BILLING])
    assert {p: set(reach[ARCHIVER][p]) for p in FENCED} == {p: set(ARCHIVE_SET) for p in FENCED}
    assert set(reach[BILLING]["Mail.Send"]) == {"adele.vance@contoso.com", "bob.obrien@contoso.com"}
    with Journal(plan_path, readonly=True) as j:
        acts = {(a.kind, a.key, a.op): a.status for a in j.actions(batch=1) if a.kind in (CONSENT, POLICY)}
        priors = {a.key: a.prior for a in j.actions(batch=1) if a.kind == POLICY}
    identity = {p["AppId"]: p["Identity"] for p in before_policies if p["AppId"] in moved}
    assert acts == {(CONSENT, f"{ARCHIVER}|Mail.Read", "delete"): "verified",
                    (CONSENT, f"{ARCHIVER}|Mail.Send", "delete"): "verified",
                    (CONSENT, f"{BILLING}|Mail.Send", "delete"): "verified",
                    (POLICY, identity[ARCHIVER].lower(), "remove"): "verified",
                    (POLICY, identity[BILLING].lower(), "remove"): "verified"}
    assert priors[identity[BILLING].lower()] == next(p for p in before_policies if p["AppId"] == BILLING) | {
        "ObjectState": "Unchanged"}
    # the registrations still request the removed permissions (the sandbox's default): warned, with the fix
    assert "Mail.Read, Mail.Send (requiredResourceAccess)" in result.outcomes[0].message
    with Journal(plan_path, readonly=True) as j:
        from migrator.executor.status import batch_statuses

        warnings = batch_statuses(load_plan(plan_path), j)[0].warnings
    assert [w for w in warnings if ARCHIVER in w and "Mail.Read, Mail.Send" in w and "EVERY" in w], warnings

    back = run(world, rollback=True, concurrency=concurrency)
    assert [o.status for o in back.outcomes] == ["done"], back.outcomes[0].message
    assert policies(sb) == before_policies  # the same rows: identity, scope, AccessRight, Description
    assert consents(sb) == before_consents
    assert rbac_objects(sb) == before_rbac
    assert_clean(sb)
    assert {m for m in MAILBOXES if sb.state.can_use_mailbox(ARCHIVER, "Mail.Read", m)} == ARCHIVE_SET
    # executed again after the rollback (a new generation): the restored policies and consents are no drift
    again = run(world, concurrency=concurrency)
    assert [o.status for o in again.outcomes] == ["done"], again.outcomes[0].message
    assert {p["AppId"] for p in policies(sb)} == {EWSAPP, CRM}
    assert_clean(sb)


def test_dry_run_writes_nothing_and_shows_the_consent_and_policy_writes(world):
    sb, _conn, plan_path, _clock = world
    before = (policies(sb), consents(sb), rbac_objects(sb))
    result = run(world, dry_run=True)
    assert [o.status for o in result.outcomes] == ["done"]
    assert (policies(sb), consents(sb), rbac_objects(sb)) == before
    text = "\n".join(result.output.changes)
    assert "Remove-ApplicationAccessPolicy" in text and "Application Mail.Send" in text
    assert text.count("DELETE") + text.count("Remove-MgServicePrincipalAppRoleAssignment") >= 2, text
    assert not (plan_path / "journal.db").exists() or not Journal(plan_path, readonly=True).actions()


@pytest.mark.parametrize("tamper", ["policy removed", "policy added", "consent added", "consent removed",
                                    "nested member added", "member removed"])
def test_drift_in_a_policy_or_consent_stops_the_run_before_any_write(world, tamper):
    from migrator.errors import DriftError

    sb, conn, plan_path, clock = world
    exo, graph = conn.exo, conn.graph
    archiver_sp = graph.get_service_principal_by_app_id(ARCHIVER)["id"]
    graph_sp = graph.get_resource_service_principal("00000003-0000-0000-c000-000000000000")
    role = {r["value"]: r["id"] for r in graph_sp["appRoles"]}
    if tamper == "policy removed":
        exo.remove_application_access_policy(next(p["Identity"] for p in policies(sb) if p["AppId"] == ARCHIVER))
        needle = "not found"
    elif tamper == "policy added":  # a DenyAccess on one mailbox of its reach
        exo.new_application_access_policy(ARCHIVER, "carol.diaz@contoso.com", "DenyAccess")
        needle = "added since the plan"
    elif tamper == "consent added":
        graph.grant_app_role(archiver_sp, graph_sp["id"], role["Calendars.Read"])
        needle = "Calendars.Read"
    elif tamper == "consent removed":
        row = next(a for a in graph.list_app_role_assignments(archiver_sp) if a["appRoleId"] == role["Mail.Send"])
        graph.delete_app_role_assignment(archiver_sp, row["id"])
        needle = "Mail.Send"
    elif tamper == "nested member added":  # Sales Senders sits inside Archive Scope: erin now reached through it
        exo.add_group_member("sales-senders@contoso.com", "erin.li@contoso.com")
        needle = "now reaches erin.li@contoso.com"
    else:
        exo.remove_group_member("archive-scope@contoso.com", "carol.diaz@contoso.com")
        needle = "no longer reaches carol.diaz@contoso.com"
    clock.sleep(10)  # past Graph's replication
    before = (policies(sb), consents(sb), rbac_objects(sb))
    with pytest.raises(DriftError) as err:
        run(world)
    assert needle in str(err.value) and "nothing was written" in str(err.value)
    assert (policies(sb), consents(sb), rbac_objects(sb)) == before
    with Journal(plan_path, readonly=True) as j:
        assert j.actions(batch=1) == []


class Crash(BaseException):
    """Stands for SIGKILL right after a write was answered: nothing in the executor catches it."""


class CrashAfter:
    """A client whose `method` crashes the run right after the tenant applied it (once, when `when(*args)`)."""

    def __init__(self, client, method: str, when=lambda *a: True) -> None:
        self._client, self._method, self._when, self.fired = client, method, when, False

    def __getattr__(self, name):
        target = getattr(self._client, name)
        if name != self._method:
            return target

        def call(*args, **kwargs):
            result = target(*args, **kwargs)
            if not self.fired and self._when(*args):
                self.fired = True
                raise Crash(name)
            return result
        return call


def run_with(world, exo=None, graph=None, *, rollback: bool = False):
    _sb, conn, plan_path, clock = world
    plan = load_plan(plan_path)
    cls = RollbackRunner if rollback else Runner
    with Journal(plan_path, clock=clock.now) as journal:
        return cls(plan, journal, exo or conn.exo, graph or conn.graph, settings=ExecSettings(**EXEC), wait=True,
                   output=Output(quiet=True), now=clock.now, sleep=clock.sleep).run([1])


@pytest.mark.parametrize("where", ["delete consent", "remove policy", "restore policy", "grant consent"])
def test_a_crash_right_after_each_new_write_resumes_without_duplicates(world, where):
    sb, conn, plan_path, _clock = world
    before = (policies(sb), consents(sb), rbac_objects(sb))
    archiver_sp = conn.graph.get_service_principal_by_app_id(ARCHIVER)["id"]
    client, method = {"delete consent": ("graph", "delete_app_role_assignment"),
                      "remove policy": ("exo", "remove_application_access_policy"),
                      "restore policy": ("exo", "new_application_access_policy"),
                      "grant consent": ("graph", "grant_app_role")}[where]
    crashing = CrashAfter(getattr(conn, client), method,
                          when=lambda *a: archiver_sp in str(a[0]) or ARCHIVER in str(a[0]))
    rollback = where in ("restore policy", "grant consent")
    if rollback:
        assert run_with(world).outcomes[0].status == "done"
    with pytest.raises(Crash):
        run_with(world, **{client: crashing}, rollback=rollback)
    assert crashing.fired
    again = run_with(world, rollback=rollback)
    assert [o.status for o in again.outcomes] == ["done"], again.outcomes[0].message
    with Journal(plan_path, readonly=True) as j:
        acts = [(a.kind, a.key, a.op, a.status) for a in j.actions(batch=1) if a.kind in (CONSENT, POLICY)]
    assert len(acts) == len({a[:3] for a in acts}) and all(a[3] == "verified" for a in acts), acts
    expected_ops = {"delete", "remove"} | ({"restore", "grant"} if rollback else set())
    assert {a[2] for a in acts} == expected_ops
    assert_clean(sb)
    if rollback:
        assert (policies(sb), consents(sb), rbac_objects(sb)) == before
    else:
        assert ARCHIVER not in {p["AppId"] for p in policies(sb)}


def test_a_consent_back_during_the_token_wait_keeps_the_policy(world):
    sb, conn, _plan_path, clock = world
    graph = conn.graph
    first = run(world, wait=False)  # stops at the propagation wait
    assert first.outcomes[0].status == "waiting"
    clock.sleep(EXEC["propagation_wait"] + 1)
    second = run(world, wait=False)  # cut-over done, stops at the token wait
    assert second.outcomes[0].status == "waiting" and "token wait" in second.outcomes[0].message
    archiver_sp = graph.get_service_principal_by_app_id(ARCHIVER)["id"]
    graph_sp = graph.get_resource_service_principal("00000003-0000-0000-c000-000000000000")
    graph.grant_app_role(archiver_sp, graph_sp["id"],
                         next(r["id"] for r in graph_sp["appRoles"] if r["value"] == "Mail.Send"))  # re-consented
    clock.sleep(EXEC["token_lifetime"] + EXEC["token_margin"] + 1)
    third = run(world, wait=False)
    assert third.outcomes[0].status == "failed"
    assert "Mail.Send is present again" in third.outcomes[0].message
    assert ARCHIVER in {p["AppId"] for p in policies(sb)}  # the policy stays: the consent is fenced by it
    assert_clean(sb)


def _regrant(conn, perm: str) -> None:
    graph = conn.graph
    archiver_sp = graph.get_service_principal_by_app_id(ARCHIVER)["id"]
    graph_sp = graph.get_resource_service_principal("00000003-0000-0000-c000-000000000000")
    graph.grant_app_role(archiver_sp, graph_sp["id"], next(r["id"] for r in graph_sp["appRoles"] if r["value"] == perm))


def test_a_consent_back_after_the_batch_is_done_is_reported_by_execute_and_status(world):
    from migrator.executor.status import claims_back

    _sb, conn, plan_path, clock = world
    assert run(world).outcomes[0].status == "done"
    _regrant(conn, "Mail.Read")
    clock.sleep(10)
    again = run(world)
    assert again.outcomes[0].status == "skipped"
    assert "Mail.Read is back" in again.outcomes[0].message and "EVERY" in again.outcomes[0].message
    with Journal(plan_path, readonly=True) as j:
        warnings = claims_back(load_plan(plan_path), j, conn.graph)
    assert [w for w in warnings if ARCHIVER in w and "Mail.Read" in w and "EVERY" in w], warnings


def test_without_an_entra_writer_the_consent_removal_and_regrant_are_handed_over(world):
    from migrator.executor.entra import EntraWrites

    sb, conn, plan_path, clock = world
    before = (policies(sb), consents(sb))
    plan = load_plan(plan_path)

    def go(cls):
        with Journal(plan_path, clock=clock.now) as journal:
            return cls(plan, journal, conn.exo, conn.graph, settings=ExecSettings(**EXEC), wait=True,
                       output=Output(quiet=True), now=clock.now, sleep=clock.sleep,
                       entra=EntraWrites(mode="handover")).run([1])

    first = go(Runner)
    assert first.outcomes[0].status == "handover"
    script = (plan_path / "handover-batch-1-cutover.ps1").read_text(encoding="utf-8-sig")
    archiver_sp = conn.graph.get_service_principal_by_app_id(ARCHIVER)["id"]
    rows = [r for r in conn.graph.list_app_role_assignments(archiver_sp)]
    graph_sp = conn.graph.get_resource_service_principal("00000003-0000-0000-c000-000000000000")
    mail_roles = {r["id"] for r in graph_sp["appRoles"] if r["value"] in FENCED}
    fenced = [r for r in rows if r["appRoleId"] in mail_roles]
    assert len(fenced) == 2 and all(r["id"] in script for r in fenced)
    assert ARCHIVER in {p["AppId"] for p in policies(sb)}  # nothing removed yet
    # the privileged admin runs the script's removals (the SMTP one and the two consents)
    for line in script.splitlines():
        if line.startswith("Remove-MgServicePrincipalAppRoleAssignment"):
            parts = line.split("'")
            conn.graph.delete_app_role_assignment(parts[1], parts[3])
    clock.sleep(10)  # the admin's change is read back after Graph's replication
    second = go(Runner)
    assert [o.status for o in second.outcomes] == ["done"], second.outcomes[0].message
    assert_clean(sb)
    back = go(RollbackRunner)
    assert back.outcomes[0].status == "handover"
    script = (plan_path / "handover-batch-1-regrant.ps1").read_text(encoding="utf-8-sig")
    # the SMTP claims of Billing and CRM, Archiver's Mail.Read and Mail.Send, Billing's Mail.Send
    assert script.count("New-MgServicePrincipalAppRoleAssignment") == 5
    assert ARCHIVER in {p["AppId"] for p in policies(sb)}  # the policy came back before the handover
    for line in script.splitlines():
        if line.startswith("New-MgServicePrincipalAppRoleAssignment"):
            parts = line.split("'")
            conn.graph.grant_app_role(parts[1], parts[5], parts[7])
    clock.sleep(10)
    done = go(RollbackRunner)
    assert [o.status for o in done.outcomes] == ["done"], done.outcomes[0].message
    assert (policies(sb), consents(sb)) == before
    assert_clean(sb)


def test_northwind_two_policies_and_an_app_without_pointer_execute_and_roll_back_exactly(tmp_path):
    """The Northwind sample: Contracts has two RestrictAccess policies (its reach is their union) and no Exchange
    pointer (the batch creates one); Archiver's policy group nests another. Execute, then roll back."""
    import json

    from migrator.executor.session import connect
    from migrator.samples import NORTHWIND_FIXTURE
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    clock = Clock()
    fixture = json.loads(NORTHWIND_FIXTURE.read_text(encoding="utf-8"))
    with start_sandbox(fixture, clock=clock, settings=SandboxSettings(**SANDBOX), run_dir=tmp_path / "sb",
                       smtp=False) as sb:
        plan_path = planned(sb.profile_path, tmp_path / "plan")
        plan = load_plan(plan_path)
        assert len(plan.policies) == 3 and len(plan.mail_apps(1)) == 2
        conn = connect(sb.profile_path, preflight=False)
        try:
            world = (sb, conn, plan_path, clock)
            before = (policies(sb), consents(sb), rbac_objects(sb))
            first = run(world)
            assert [o.status for o in first.outcomes] == ["done"], first.outcomes[0].message
            assert {p["AppId"] for p in policies(sb)} & set(plan.mail_apps(1)) == set()
            assert_clean(sb)
            assert [o.status for o in run(world, rollback=True).outcomes] == ["done"]
            assert (policies(sb), consents(sb), rbac_objects(sb)) == before
            assert_clean(sb)
        finally:
            conn.session.close()


def test_a_pointer_get_service_principal_does_not_know_is_none_not_the_first_of_every_pointer(world):
    """Get-ServicePrincipal answers an unknown identity with every pointer (the hazard): the client must not take
    the first of them for the app (an app without a pointer would then never get one: Northwind's Contracts)."""
    _sb, conn, _plan, _clock = world
    unknown = "0badf00d-0000-4000-8000-000000000000"
    assert len(conn.exo.invoke("Get-ServicePrincipal", {"Identity": unknown})) > 1  # the sandbox shows the hazard
    assert conn.exo.get_service_principal(unknown) is None
    sp = conn.graph.get_service_principal_by_app_id(ARCHIVER)["id"]
    assert conn.exo.get_service_principal(sp)["AppId"] == ARCHIVER
    assert conn.exo.get_service_principal(ARCHIVER)["ObjectId"] == sp


def test_a_crash_between_two_policy_removals_of_one_app_resumes_through_the_cli_and_its_doctor(tmp_path):
    """Northwind's Contracts has two policies: killed after the first removal, `migrator execute` (whose preflight
    runs the doctor's Test-ApplicationAccessPolicy check) must resume and finish, not refuse because the one policy
    left no longer grants the whole planned reach."""
    import json

    from click.testing import CliRunner

    from migrator.cli import main
    from migrator.executor.session import connect
    from migrator.samples import NORTHWIND_FIXTURE
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    contracts = "4e0f0000-0000-4000-8000-000000000005"
    clock = Clock()
    fixture = json.loads(NORTHWIND_FIXTURE.read_text(encoding="utf-8"))
    with start_sandbox(fixture, clock=clock, settings=SandboxSettings(**SANDBOX), run_dir=tmp_path / "sb",
                       smtp=False) as sb:
        plan_path = planned(sb.profile_path, tmp_path / "plan")
        conn = connect(sb.profile_path, preflight=False)
        try:
            world = (sb, conn, plan_path, clock)
            crashing = CrashAfter(conn.exo, "remove_application_access_policy", when=lambda *a: contracts in a[0])
            with pytest.raises(Crash):
                run_with(world, exo=crashing)
            assert [p["AppId"] for p in policies(sb)].count(contracts) == 1  # one of its two policies left
        finally:
            conn.session.close()
        result = CliRunner().invoke(main, ["execute", str(plan_path), "--profile", str(sb.profile_path), "--batch",
                                           "1", "--yes", "--token-lifetime", "300"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert contracts not in {p["AppId"] for p in policies(sb)}
        assert_clean(sb)


class SentTwice:
    """A client whose given writes reach the tenant twice, as when an answer is lost and the client's retry sends
    the request again: the second answer ("not found", "already exists") is the one the executor sees."""

    def __init__(self, client, *methods: str) -> None:
        self._client, self._methods = client, methods

    def __getattr__(self, name):
        target = getattr(self._client, name)
        if name not in self._methods:
            return target

        def call(*args, **kwargs):
            target(*args, **kwargs)
            return target(*args, **kwargs)
        return call


def test_each_new_write_sent_twice_after_a_lost_answer_is_taken_as_done(world):
    sb, conn, _plan_path, _clock = world
    before = (policies(sb), consents(sb), rbac_objects(sb))
    exo = SentTwice(conn.exo, "remove_application_access_policy", "new_application_access_policy")
    graph = SentTwice(conn.graph, "delete_app_role_assignment", "grant_app_role")
    done = run_with(world, exo=exo, graph=graph)
    assert [o.status for o in done.outcomes] == ["done"], done.outcomes[0].message
    assert ARCHIVER not in {p["AppId"] for p in policies(sb)}
    assert_clean(sb)
    back = run_with(world, exo=exo, graph=graph, rollback=True)
    assert [o.status for o in back.outcomes] == ["done"], back.outcomes[0].message
    assert (policies(sb), consents(sb), rbac_objects(sb)) == before
    assert_clean(sb)


def test_rollback_dry_run_writes_nothing_and_shows_the_policy_and_consent_restores(world):
    sb, _conn, _plan_path, _clock = world
    assert run(world).outcomes[0].status == "done"
    after = (policies(sb), consents(sb), rbac_objects(sb))
    dry = run(world, rollback=True, dry_run=True)
    assert [o.status for o in dry.outcomes] == ["done"]
    assert (policies(sb), consents(sb), rbac_objects(sb)) == after
    text = "\n".join(dry.output.changes)
    assert text.count("New-ApplicationAccessPolicy") == 2 and "-AccessRight 'RestrictAccess'" in text, text
    assert text.count("New-MgServicePrincipalAppRoleAssignment") == 5, text  # 2 SMTP claims, 3 consents


def test_under_read_lag_the_policy_and_consent_read_backs_wait_and_the_batch_rolls_back_exactly(tmp_path, template):
    """Every admin read (Get-ApplicationAccessPolicy, Graph's appRoleAssignments, groups, scopes, assignments) shows
    a write only seconds after it: the removal and restore read-backs wait, nothing is written twice, the end states
    are exact and the timeline clean."""
    import shutil

    from migrator.executor.session import connect
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.faults import FaultProfile
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    clock = Clock()
    with start_sandbox(mixed_fixture(), clock=clock, settings=SandboxSettings(**SANDBOX), run_dir=tmp_path / "sb",
                       smtp=False, faults=FaultProfile(name="read-lag", read_lag_s=3.0, read_lag_jitter_s=2.0)) as sb:
        plan_path = Path(shutil.copytree(template, tmp_path / "plan"))
        conn = connect(sb.profile_path, preflight=False)
        try:
            world = (sb, conn, plan_path, clock)
            before = (policies(sb), consents(sb), rbac_objects(sb))
            done = run(world)
            assert [o.status for o in done.outcomes] == ["done"], done.outcomes[0].message
            assert done.calls["remove_application_access_policy"] == 2
            clock.sleep(10)  # past the lag: the live state is what the reads show
            assert {p["AppId"] for p in policies(sb)} == {EWSAPP, CRM}
            assert_clean(sb)
            back = run(world, rollback=True)
            assert [o.status for o in back.outcomes] == ["done"], back.outcomes[0].message
            assert back.calls["new_application_access_policy"] == 2 and back.calls["grant_app_role"] == 5
            clock.sleep(10)
            assert (policies(sb), consents(sb), rbac_objects(sb)) == before
            assert_clean(sb)
            assert sb.state.read_lag.writes > 0
        finally:
            conn.session.close()


def test_get_application_access_policy_lags_behind_a_removal_and_a_creation(world):
    sb, conn, _plan, clock = world
    sb.state.read_lag.configure(5.0)
    row = next(p for p in policies(sb) if p["AppId"] == ARCHIVER)
    conn.exo.remove_application_access_policy(row["Identity"])
    assert row["Identity"] in {p["Identity"] for p in policies(sb)}  # a lagging read still shows it
    clock.sleep(6)
    assert row["Identity"] not in {p["Identity"] for p in policies(sb)}
    conn.exo.new_application_access_policy(ARCHIVER, "archive-scope@contoso.com", "RestrictAccess", " ")
    assert row["Identity"] not in {p["Identity"] for p in policies(sb)}
    clock.sleep(6)
    assert row["Identity"] in {p["Identity"] for p in policies(sb)}


def test_after_the_cut_over_a_policy_group_change_neither_blocks_the_doctor_nor_the_resume(world):
    """Once a batch has removed an app's consents (and their tokens expired) its policies fence nothing: a member
    added to a policy group before they go (the helpdesk's habit) changes no access. Neither the doctor's
    Test-ApplicationAccessPolicy check nor the drift check may then stop the batch from finishing; before the
    cut-over the same change blocks (test_drift_..., the doctor's own test)."""
    from migrator.doctor import run_doctor
    from migrator.doctor.checks import check_access_policies

    sb, conn, plan_path, clock = world
    assert run(world, wait=False).outcomes[0].status == "waiting"  # propagation wait
    clock.sleep(EXEC["propagation_wait"] + 1)
    assert "token wait" in run(world, wait=False).outcomes[0].message
    # past the token wait (while a token carrying the consent lives, the change would widen it: someone else's
    # over-grant, which the timeline would rightly count), the policy still in place
    clock.sleep(EXEC["token_lifetime"] + EXEC["token_margin"] + 1)
    conn.exo.add_group_member("archive-scope@contoso.com", "erin.li@contoso.com")  # Archiver's policy group only
    report = run_doctor(conn, load_plan(plan_path), checks=[check_access_policies], sample=10)
    finding = report.findings[0]
    assert finding.verdict == "verified" and not finding.blocking, finding
    assert finding.data["already_moved"] == 2  # Archiver and Billing: their consents are gone
    done = run(world)
    assert [o.status for o in done.outcomes] == ["done"], done.outcomes[0].message
    assert_clean(sb)
