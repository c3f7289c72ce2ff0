"""The Graph v1.0 subset over the tenant state: service principals, app-role assignments, users, error shapes."""

from __future__ import annotations

import pytest

from migrator.model import EXCHANGE_ONLINE_APP_ID
from migrator.sandbox import Caller, GraphError
from sandbox_tenant import ADMIN, BILLING, DUP2, make_state

GRAPH = "https://graph.microsoft.com"


@pytest.fixture
def state():
    return make_state()


def g(state, op, *args, **kwargs):
    return state.graph(op, *args, caller=state.admin_caller(GRAPH), **kwargs)


def test_service_principal_by_app_id_filter_and_id(state):
    sp = g(state, "get_service_principal_by_app_id", BILLING.upper())
    assert sp["appId"] == BILLING and sp["displayName"] == "Billing Mailer"
    assert g(state, "get_service_principal", sp["id"])["appId"] == BILLING
    assert g(state, "list_service_principals", filter=f"appId eq '{BILLING}'") == [sp]
    assert g(state, "list_service_principals", filter="appId eq '00000000-0000-0000-0000-000000000000'") == []
    assert len(g(state, "list_service_principals", filter="displayName eq 'Twin App'")) == 2
    with pytest.raises(GraphError) as info:
        g(state, "list_service_principals", filter="startswith(displayName,'x')")
    assert info.value.status == 400


def test_missing_and_malformed_ids(state):
    with pytest.raises(GraphError) as info:
        g(state, "get_service_principal_by_app_id", "00000000-0000-0000-0000-0000000000ff")
    assert info.value.status == 404 and info.value.code == "Request_ResourceNotFound"
    body = info.value.to_body(request_id="r1")
    assert body["error"]["code"] == "Request_ResourceNotFound" and body["error"]["innerError"]["request-id"] == "r1"
    with pytest.raises(GraphError) as info:
        g(state, "get_service_principal", "not-a-guid")
    assert info.value.status == 400


def test_exchange_resource_offers_the_roles(state):
    exo = g(state, "get_service_principal_by_app_id", EXCHANGE_ONLINE_APP_ID)
    values = {r["value"]: r["id"] for r in exo["appRoles"]}
    assert {"SMTP.SendAsApp", "Exchange.ManageAsApp", "full_access_as_app"} <= set(values)
    assert values["Exchange.ManageAsApp"] == "dc50a0fb-09a3-484d-be87-e023b12c6440"


def test_grant_list_delete_and_the_token_claim_follows(state):
    exo = g(state, "get_service_principal_by_app_id", EXCHANGE_ONLINE_APP_ID)
    smtp = next(r["id"] for r in exo["appRoles"] if r["value"] == "SMTP.SendAsApp")
    sp = g(state, "get_service_principal_by_app_id", DUP2)
    assert g(state, "list_app_role_assignments", sp["id"]) == []
    assert "SMTP.SendAsApp" not in state.issue_token(DUP2, "https://outlook.office365.com")["roles"]
    row = g(state, "grant_app_role", sp["id"], {"principalId": sp["id"], "resourceId": exo["id"],
                                                "appRoleId": smtp})
    assert row["principalId"] == sp["id"] and row["resourceId"] == exo["id"] and row["appRoleId"] == smtp
    assert g(state, "list_app_role_assignments", sp["id"]) == [row]
    assert "SMTP.SendAsApp" in state.issue_token(DUP2, "https://outlook.office365.com")["roles"]
    with pytest.raises(GraphError) as info:  # a second identical grant
        g(state, "grant_app_role", sp["id"], {"principalId": sp["id"], "resourceId": exo["id"], "appRoleId": smtp})
    assert info.value.status == 400 and "already exists" in info.value.message
    with pytest.raises(GraphError):  # a role the resource does not offer
        g(state, "grant_app_role", sp["id"], {"principalId": sp["id"], "resourceId": exo["id"],
                                              "appRoleId": "00000000-0000-0000-0000-000000000001"})
    g(state, "delete_app_role_assignment", sp["id"], row["id"])
    assert g(state, "list_app_role_assignments", sp["id"]) == []
    with pytest.raises(GraphError) as info:
        g(state, "delete_app_role_assignment", sp["id"], row["id"])
    assert info.value.status == 404
    assert [e.data.get("graph") for e in state.timeline.log if e.kind == "change"] == \
        ["grant_app_role", "delete_app_role_assignment"]


def test_permissions_are_checked(state):
    reader = Caller(ADMIN, frozenset({"Application.Read.All"}), frozenset())
    sp = state.graph("get_service_principal_by_app_id", BILLING, caller=reader)
    with pytest.raises(GraphError) as info:
        state.graph("delete_app_role_assignment", sp["id"], "x", caller=reader)
    assert info.value.status == 403 and info.value.code == "Authorization_RequestDenied"
    with pytest.raises(GraphError):
        state.graph("list_users", caller=reader)
    with pytest.raises(GraphError):
        state.graph("_principal", sp["id"], caller=reader)  # private helpers are not operations


def test_users_list_is_stable(state):
    users = g(state, "list_users")
    assert len(users) == 5 and users == sorted(users, key=lambda u: u["id"])
    assert {u["mail"] for u in users} >= {"adele.vance@contoso.com"}
