"""Application Access Policies through the real clients (msal, requests, ExchangeClient/GraphClient) to the sandbox
over HTTPS: the cmdlets' rows and refusals on the wire, then an AAP app moved to RBAC for Applications in the
documented order (zero gaps and over-grants per permission) and in the wrong order (policy before consent: caught
as an over-grant per permission)."""

from __future__ import annotations

import pytest

from aap_tenant import ARCHIVE_SET, ARCHIVER, MAILBOXES, OPEN, aap_fixture
from migrator.exchange.errors import AlreadyExists, ApiError, NotFound
from migrator.model import GRAPH_APP_ID

pytestmark = pytest.mark.integration

SETTINGS = {"sendas_delay": 0.0, "graph_replication_delay": 5.0, "propagation_delay": 100.0,
            "access_policy_delay": 50.0, "token_lifetime": 30.0}


ARCHIVER_SECRET = "archiver-s3cret-value"


@pytest.fixture()
def world(tmp_path):
    from migrator.executor.session import connect
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    data = aap_fixture()
    next(a for a in data["apps"] if a["app_id"] == ARCHIVER)["secret"] = ARCHIVER_SECRET
    with start_sandbox(data, clock=Clock(), settings=SandboxSettings(**SETTINGS), run_dir=tmp_path / "sb",
                       smtp=False) as sb:
        conn = connect(sb.profile_path, preflight=False)
        try:
            yield sb, conn
        finally:
            conn.session.close()


def test_policy_cmdlets_on_the_wire(world):
    sb, conn = world
    exo = conn.exo
    row = exo.new_application_access_policy(OPEN, "archive-scope@contoso.com", "RestrictAccess")
    assert row["AppId"] == OPEN and row["ScopeName"] == "Archive Scope" and row["Description"] == " "
    assert row["Identity"].startswith(f"{sb.tenant_id}\\{OPEN}:S-1-5-21-")
    assert len(exo.get_application_access_policies()) == 4
    results = {m: exo.test_application_access_policy(m, OPEN)[0]["AccessCheckResult"] for m in sorted(MAILBOXES)}
    assert {m for m, r in results.items() if r == "Granted"} == ARCHIVE_SET  # adele and bob are nested members
    with pytest.raises(NotFound):
        exo.new_application_access_policy(OPEN, "nobody@contoso.com", "RestrictAccess")
    with pytest.raises(AlreadyExists):
        exo.new_application_access_policy(OPEN, "archive-scope@contoso.com", "DenyAccess")
    with pytest.raises(ApiError) as err:
        exo.new_application_access_policy(OPEN, "all-staff@contoso.com", "RestrictAccess")
    assert err.value.exception_type.endswith(".InvalidOperationException")
    exo.set_application_access_policy(row["Identity"], "calendars of the archive")
    exo.remove_application_access_policy(row["Identity"])
    with pytest.raises(NotFound):
        exo.remove_application_access_policy(row["Identity"])
    with pytest.raises(ValueError):
        exo.remove_application_access_policy("  ")  # Get-/Remove- with a blank identity: refused before sending
    assert OPEN not in {r["AppId"] for r in exo.get_application_access_policies()}


def _move_to_rbac(sb, conn, *, policy_first: bool) -> None:
    exo, graph = conn.exo, conn.graph
    dn = exo.get_distribution_group("archive-flat@contoso.com")["DistinguishedName"]
    exo.new_management_scope("archiver-scope", f"MemberOfGroup -eq '{dn}'")
    for perm in ("Mail.Read", "Mail.Send"):
        exo.new_role_assignment(f"archiver {perm}", f"Application {perm}", ARCHIVER, "archiver-scope")
    assert {r["RoleName"] for r in exo.test_sp_authorization(ARCHIVER, "carol.diaz@contoso.com")
            if r["InScope"] is True} == {"Application Mail.Read", "Application Mail.Send"}
    sb.state.clock.advance(101)  # propagation
    policy = next(r["Identity"] for r in exo.get_application_access_policies() if r["AppId"] == ARCHIVER)
    sp = graph.get_service_principal_by_app_id(ARCHIVER)
    graph_sp = graph.get_resource_service_principal(GRAPH_APP_ID)
    role_ids = {r["id"] for r in graph_sp["appRoles"] if r["value"] in ("Mail.Read", "Mail.Send")}
    consents = [a for a in graph.list_app_role_assignments(sp["id"]) if a["appRoleId"] in role_ids]
    assert len(consents) == 2
    if policy_first:
        exo.remove_application_access_policy(policy)
        sb.state.clock.advance(60)
    for a in consents:
        graph.delete_app_role_assignment(sp["id"], a["id"])
    sb.state.clock.advance(5 + 30 + 1)  # Graph replication, then every token carrying the permissions expires
    if not policy_first:
        exo.remove_application_access_policy(policy)
    sb.state.clock.advance(300)


def test_documented_order_through_the_clients_has_no_gap_and_no_over_grant(world):
    sb, conn = world
    _move_to_rbac(sb, conn, policy_first=False)
    report = sb.check()
    assert report.ok, report.to_dict()
    assert report.per_permission() == {}
    assert {m for m in MAILBOXES if sb.state.can_use_mailbox(ARCHIVER, "Mail.Send", m)} == ARCHIVE_SET


def test_policy_removed_before_the_consent_through_the_clients_is_an_over_grant(world):
    sb, conn = world
    _move_to_rbac(sb, conn, policy_first=True)
    report = sb.check()
    assert report.per_permission() == {"Mail.Read": {"gaps": 0, "overgrants": 2},
                                       "Mail.Send": {"gaps": 0, "overgrants": 2}}


def _archiver_token(sb, tmp_path) -> str:
    """A fresh Graph token of the archiver app itself (client credentials through msal)."""
    import dataclasses

    from migrator.exchange.auth import TokenProvider
    from migrator.exchange.profile import Credential, load_profile

    secret = tmp_path / "archiver.secret"
    secret.write_text(ARCHIVER_SECRET, encoding="utf-8")
    profile = dataclasses.replace(load_profile(sb.profile_path), client_id=ARCHIVER,
                                  credential=Credential(kind="secret", secret_file=str(secret)))
    return TokenProvider(profile).token(profile.graph_resource, force_refresh=True)


def _read_mail(sb, token: str, mailbox: str, resource: str = "messages", method: str = "GET"):
    import requests

    return requests.request(method, f"{sb.graph_url}/v1.0/users/{mailbox}/{resource}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"}, verify=str(sb.ca_bundle))


def test_graph_data_plane_on_the_wire_before_and_after_the_move(world, tmp_path):
    sb, conn = world
    token = _archiver_token(sb, tmp_path)
    answers = {m: _read_mail(sb, token, m).status_code for m in sorted(MAILBOXES)}
    assert {m for m, code in answers.items() if code == 200} == ARCHIVE_SET
    denied = _read_mail(sb, token, "dan.wu@contoso.com").json()["error"]
    assert denied["code"] == "ErrorAccessDenied" and denied["message"] == "Access to OData is disabled."
    assert _read_mail(sb, token, "carol.diaz@contoso.com", "sendMail", "POST").status_code == 202
    assert _read_mail(sb, token, "carol.diaz@contoso.com", "events").status_code == 403  # no Calendars.* held
    assert _read_mail(sb, token, "nobody@contoso.com").status_code == 404
    _move_to_rbac(sb, conn, policy_first=False)
    token = _archiver_token(sb, tmp_path)  # carries neither Mail.Read nor Mail.Send now: RBAC serves it
    answers = {m: _read_mail(sb, token, m).status_code for m in sorted(MAILBOXES)}
    assert {m for m, code in answers.items() if code == 200} == ARCHIVE_SET
    assert not {"Mail.Read", "Mail.Send"} & set(sb.app.graph.attempts[-1].token_roles)
    # every answer the endpoint gave agrees with the timeline's data plane for the same token and instant
    for a in sb.app.graph.attempts:
        if a.verdict in ("ok", "denied") and a.resource == "messages":
            expected = any(sb.state.can_use_mailbox(a.app_id, p, a.mailbox, token_has=p in a.token_roles,
                                                    token_issued_at=a.token_iat, at=a.t)
                           for p in ("Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic", "Mail.ReadBasic.All"))
            assert expected == (a.verdict == "ok"), a
    assert len(sb.app.graph.attempts) == 14
