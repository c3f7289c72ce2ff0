"""The sandbox's token lifetime policies and app registrations, in Microsoft Graph's shapes, through the real
clients (msal, requests) over HTTPS."""

from __future__ import annotations

import json

import pytest
import requests

from migrator.exchange.errors import Forbidden
from migrator.executor import Connection
from migrator.executor.claims import smtp_role_requested
from migrator.executor.lifetimes import access_token_lifetime, parse_timespan, read_token_lifetimes
from sandbox_world import make_fixture

pytestmark = pytest.mark.integration


@pytest.fixture
def tenant(tmp_path):
    from migrator.sandbox.server import start_sandbox

    fixture, _ = make_fixture(seed=1, mailboxes=4, apps=3)
    apps = [a["app_id"] for a in fixture["apps"]]
    fixture["token_lifetime_policies"] = [
        {"id": "11111111-0000-4000-8000-000000000001", "display_name": "Org default 2h",
         "access_token_lifetime": "02:00:00", "is_organization_default": True},
        {"id": "11111111-0000-4000-8000-000000000002", "display_name": "Mailer 4h",
         "access_token_lifetime": "4:00:00", "applies_to": [apps[0]]},
        {"id": "11111111-0000-4000-8000-000000000003", "display_name": "Refresh only",
         "definition": ['{"TokenLifetimePolicy":{"Version":1,"MaxInactiveTime":"1.00:00:00"}}'],
         "applies_to": [apps[1]]},
    ]
    fixture["apps"][2]["required_resource_access"] = []  # a registration that requests nothing
    with start_sandbox(fixture, run_dir=tmp_path / "sb") as sb:
        yield sb, apps


def test_policies_come_back_in_graphs_shape(tenant):
    sb, apps = tenant
    conn = Connection(sb.profile_path)
    token = conn.tokens.token(conn.profile.graph_resource)
    answer = requests.get(f"{sb.graph_url}/v1.0/policies/tokenLifetimePolicies",
                          headers={"Authorization": f"Bearer {token}"}, verify=str(sb.ca_bundle), timeout=10).json()
    assert answer["@odata.context"].endswith("#policies/tokenLifetimePolicies")
    by_name = {p["displayName"]: p for p in answer["value"]}
    mailer = by_name["Mailer 4h"]
    assert set(mailer) >= {"id", "definition", "displayName", "isOrganizationDefault", "deletedDateTime"}
    assert isinstance(mailer["definition"], list) and isinstance(mailer["definition"][0], str)
    assert json.loads(mailer["definition"][0])["TokenLifetimePolicy"]["AccessTokenLifetime"] == "4:00:00"
    assert by_name["Org default 2h"]["isOrganizationDefault"] is True
    applies = conn.graph.token_lifetime_policy_applies_to(mailer["id"])
    assert [(a["@odata.type"], a["appId"]) for a in applies] == [("#microsoft.graph.servicePrincipal", apps[0])]
    # per-SP listing needs Policy.Read.All *and* an Application.ReadWrite permission, which the admin lacks
    sp = conn.graph.get_service_principal_by_app_id(apps[0])
    with pytest.raises(Forbidden):
        conn.graph.list_all(f"/servicePrincipals/{sp['id']}/tokenLifetimePolicies")


def test_tokens_live_as_the_policies_say(tenant):
    sb, apps = tenant
    lives = {}
    for app in apps:
        claims = sb.state.issue_token(app, "https://outlook.office365.com")
        lives[app] = claims["exp"] - claims["iat"]
    assert lives == {apps[0]: 4 * 3600, apps[1]: 2 * 3600, apps[2]: 2 * 3600}  # assigned, else the org default


def test_the_tool_reads_the_longest_lifetime_that_applies(tenant):
    sb, apps = tenant
    conn = Connection(sb.profile_path)
    sps = {a: conn.graph.get_service_principal_by_app_id(a)["id"] for a in apps}
    first = read_token_lifetimes(conn.graph, {apps[0]: sps[apps[0]]})
    assert first.longest == 4 * 3600 and not first.unreadable
    assert sorted(p["name"] for p in first.applied) == ["Mailer 4h", "Org default 2h"]
    other = read_token_lifetimes(conn.graph, {apps[2]: sps[apps[2]]})
    assert other.longest == 2 * 3600 and [p["name"] for p in other.applied] == ["Org default 2h"]


def test_timespans_and_unreadable_definitions():
    assert parse_timespan("4:00:00") == 14400 and parse_timespan("1.00:00:00") == 86400
    assert parse_timespan("00:10:00.0000000") == 600
    for bad in ("4h", "", "1:60:00", "abc"):
        with pytest.raises(ValueError):
            parse_timespan(bad)
    assert access_token_lifetime({"definition": ['{"TokenLifetimePolicy":{"Version":1}}']}) is None
    for bad in ({"definition": "not a list"}, {"definition": ["{not json"]}, {"definition": ['{"Other":{}}']}):
        with pytest.raises(ValueError):
            access_token_lifetime(bad)


def test_app_registrations_list_what_they_request(tenant):
    sb, apps = tenant
    conn = Connection(sb.profile_path)
    exo = conn.graph.get_resource_service_principal()
    role = next(r["id"] for r in exo["appRoles"] if r["value"] == "SMTP.SendAsApp")
    registration = conn.graph.get_application_by_app_id(apps[0])
    assert registration["appId"] == apps[0] and registration["requiredResourceAccess"][0]["resourceAppId"] == \
        "00000002-0000-0ff1-ce00-000000000000"
    assert smtp_role_requested(registration, role)
    assert not smtp_role_requested(conn.graph.get_application_by_app_id(apps[2]), role)
    assert conn.graph.get_application_by_app_id("00000000-0000-4000-8000-00000000dead") is None
    # deleting the assignment (the cut-over) leaves the request in the registration
    sp = conn.graph.get_service_principal_by_app_id(apps[0])["id"]
    row = next(r for r in conn.graph.list_app_role_assignments(sp) if r["appRoleId"] == role)
    conn.graph.delete_app_role_assignment(sp, row["id"])
    assert smtp_role_requested(conn.graph.get_application_by_app_id(apps[0]), role)


def test_reads_in_the_replication_window_may_answer_either_state(tenant):
    sb, apps = tenant
    conn = Connection(sb.profile_path)
    exo = conn.graph.get_resource_service_principal()
    role = next(r["id"] for r in exo["appRoles"] if r["value"] == "SMTP.SendAsApp")
    sp = conn.graph.get_service_principal_by_app_id(apps[0])["id"]
    row = next(r for r in conn.graph.list_app_role_assignments(sp) if r["appRoleId"] == role)
    conn.graph.delete_app_role_assignment(sp, row["id"])
    seen = {any(r["id"] == row["id"] for r in conn.graph.list_app_role_assignments(sp)) for _ in range(4)}
    assert seen == {True, False}  # some reads still see it, some do not
    sb.state.clock.advance(sb.state.settings.graph_replication_delay)
    assert not any(r["id"] == row["id"] for r in conn.graph.list_app_role_assignments(sp) for _ in range(3))
