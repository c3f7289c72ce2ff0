"""The sandbox's HTTP side on a stand-in state: token service (msal, unmodified), InvokeCommand wire format,
paging, errors, auth, Graph. Everything goes over real HTTPS with the sandbox's generated CA."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import msal
import pytest
import requests
from cryptography.hazmat.primitives import hashes

from migrator.sandbox.server import serve_backend
from sandbox_standin import ADMIN_ID, NOROLE_ID, READER_ID, StandIn, VerifyingSession

EXO = "https://outlook.office365.com/.default"
HTTP = requests.Session()  # keep-alive across calls; `verify` is passed per request (REQUESTS_CA_BUNDLE)
GRAPH = "https://graph.microsoft.com/.default"


@pytest.fixture
def standin():
    return StandIn(mailboxes=5)


@pytest.fixture
def sb(standin, tmp_path):
    with serve_backend(standin, admin_client_id=ADMIN_ID, admin_secret="s3cret-admin", run_dir=tmp_path) as sandbox:
        yield sandbox


def _app(sb, client_id=ADMIN_ID, credential="s3cret-admin"):
    return msal.ConfidentialClientApplication(client_id, client_credential=credential, authority=sb.authority,
                                              instance_discovery=False, http_client=VerifyingSession(sb.ca_bundle))


def _token(sb, client_id=ADMIN_ID, credential="s3cret-admin", scope=EXO):
    result = _app(sb, client_id, credential).acquire_token_for_client([scope])
    assert "access_token" in result, result
    return result["access_token"]


def _invoke(sb, token, cmdlet, params=None, *, page=None, url=None, select=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if page:
        headers["Prefer"] = f"odata.maxpagesize={page}"
    target = url or sb.invoke_url + (f"?$select={select}" if select else "")
    return HTTP.post(target, json={"CmdletInput": {"CmdletName": cmdlet, "Parameters": params or {}}},
                         headers=headers, verify=str(sb.ca_bundle), timeout=10)


def test_msal_secret_gets_a_signed_token_with_roles(sb):
    token = _token(sb)
    jwks = requests.get(f"{sb.authority}/discovery/v2.0/keys", verify=str(sb.ca_bundle), timeout=10).json()
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience="https://outlook.office365.com",
                        options={"verify_exp": False})
    assert claims["tid"] == sb.tenant_id and claims["appid"] == ADMIN_ID
    assert claims["roles"] == ["Exchange.ManageAsApp"]
    assert claims["exp"] - claims["iat"] == 3600
    graph_claims = jwt.decode(_token(sb, scope=GRAPH), options={"verify_signature": False})
    assert graph_claims["aud"] == "https://graph.microsoft.com"
    assert "User.Read.All" in graph_claims["roles"]


def test_msal_certificate_with_sha1_thumbprint_and_with_public_certificate(sb, standin):
    thumb = standin.cert.fingerprint(hashes.SHA1()).hex()
    token = _token(sb, credential={"private_key": standin.key_pem, "thumbprint": thumb})
    assert jwt.decode(token, options={"verify_signature": False})["appidacr"] == "2"
    # msal signs PS256 with x5t#S256 when given the certificate itself
    from cryptography.hazmat.primitives.serialization import Encoding
    pem = standin.cert.public_bytes(Encoding.PEM).decode()
    assert _token(sb, credential={"private_key": standin.key_pem, "public_certificate": pem})


def test_msal_verify_argument_works_once_requests_ca_bundle_is_unset(sb, monkeypatch):
    """msal's own verify= lands on a Session, which REQUESTS_CA_BUNDLE overrides (docs/design.md §7)."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    app = msal.ConfidentialClientApplication(ADMIN_ID, client_credential="s3cret-admin", authority=sb.authority,
                                             instance_discovery=False, verify=str(sb.ca_bundle))
    assert "access_token" in app.acquire_token_for_client([EXO])


def test_msal_errors_come_back_in_aad_shape(sb, standin):
    bad = _app(sb, credential="wrong").acquire_token_for_client([EXO])
    assert bad["error"] == "invalid_client" and 7000215 in bad["error_codes"]
    assert bad["error_description"].startswith("AADSTS7000215")
    unknown = _app(sb, client_id="99999999-0000-4000-8000-000000000009").acquire_token_for_client([EXO])
    assert unknown["error"] == "unauthorized_client" and 700016 in unknown["error_codes"]
    # a certificate the app never registered
    from sandbox_standin import make_cert
    other_key, other_cert = make_cert("stranger")
    res = _app(sb, credential={"private_key": other_key,
                               "thumbprint": other_cert.fingerprint(hashes.SHA1()).hex()}).acquire_token_for_client([EXO])
    assert res["error"] == "invalid_client" and 700027 in res["error_codes"]
    # the right thumbprint but a foreign key: signature check fails
    thumb = standin.cert.fingerprint(hashes.SHA1()).hex()
    res = _app(sb, credential={"private_key": other_key, "thumbprint": thumb}).acquire_token_for_client([EXO])
    assert res["error"] == "invalid_client" and 700027 in res["error_codes"]
    scope = _app(sb).acquire_token_for_client(["https://outlook.office365.com/Exchange.Manage"])
    assert scope["error"] == "invalid_scope"


def test_discovery_is_https_and_assertion_audience_is_checked(sb, standin):
    doc = requests.get(f"{sb.authority}/v2.0/.well-known/openid-configuration", verify=str(sb.ca_bundle),
                       timeout=10).json()
    for key in ("authorization_endpoint", "token_endpoint", "issuer", "jwks_uri"):
        assert doc[key].startswith("https://127.0.0.1:")
    now = int(standin.now())
    import time as _t
    wall = int(_t.time())
    thumb = base64.urlsafe_b64encode(standin.cert.fingerprint(hashes.SHA1())).rstrip(b"=").decode()
    assertion = jwt.encode({"aud": "https://elsewhere.example/token", "iss": ADMIN_ID, "sub": ADMIN_ID,
                            "exp": wall + 300, "iat": wall, "jti": "x"}, standin.key_pem, algorithm="RS256",
                           headers={"x5t": thumb})
    r = requests.post(doc["token_endpoint"], data={
        "grant_type": "client_credentials", "client_id": ADMIN_ID, "scope": EXO,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion}, verify=str(sb.ca_bundle), timeout=10)
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert now  # the sandbox clock is not the client's clock: assertions are judged on wall time


def test_get_mailbox_pages_at_maxpagesize_2_with_absolute_nextlink(sb):
    token = _token(sb)
    first = _invoke(sb, token, "Get-Mailbox", {"ResultSize": "Unlimited"}, page=2)
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["value"]) == 2 and body["@adminapi.warnings"] == ["standin warning"]
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=2"
    seen = [r["PrimarySmtpAddress"] for r in body["value"]]
    link = body["@odata.nextLink"]
    assert link.startswith(sb.base_url + "/adminapi/beta/")
    pages = 1
    while link:
        nxt = _invoke(sb, token, "Get-Mailbox", {"ResultSize": "Unlimited"}, page=2, url=link)
        again = _invoke(sb, token, "Get-Mailbox", {"ResultSize": "Unlimited"}, page=2, url=link)
        assert nxt.json()["value"] == again.json()["value"]  # a retried page is the same page
        seen += [r["PrimarySmtpAddress"] for r in nxt.json()["value"]]
        link = nxt.json().get("@odata.nextLink")
        pages += 1
    assert pages == 3 and seen == [f"user{i}@fabrikam.com" for i in range(5)]
    # a nextLink with another body is refused
    other = _invoke(sb, token, "Get-Mailbox", {"ResultSize": 10}, page=2, url=body["@odata.nextLink"])
    assert other.status_code == 400


def test_select_trims_properties(sb):
    rows = _invoke(sb, _token(sb), "Get-Mailbox", select="primarysmtpaddress,Guid").json()["value"]
    assert set(rows[0]) == {"PrimarySmtpAddress", "Guid"}


def test_missing_mailbox_is_a_microsoft_shaped_error(sb):
    r = _invoke(sb, _token(sb), "Get-Mailbox", {"Identity": "ghost@fabrikam.com"})
    assert r.status_code == 404
    err = r.json()["error"]
    errid, exc_type, text = err["details"][0]["message"].split("|", 2)
    assert errid.startswith("Ex")
    assert exc_type == "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException"
    assert "ghost@fabrikam.com" in text
    assert err["innererror"]["internalexception"]["message"] == text


def test_401_without_or_with_a_bad_token(sb, standin):
    r = _invoke(sb, None, "Get-Mailbox")
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    graph_token = _token(sb, scope=GRAPH)
    assert _invoke(sb, graph_token, "Get-Mailbox").status_code == 401  # wrong audience
    token = _token(sb)
    standin.clock.t += 3601  # past exp on the sandbox clock
    assert _invoke(sb, token, "Get-Mailbox").status_code == 401
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert _invoke(sb, tampered, "Get-Mailbox").status_code == 401


def test_403_without_the_role_or_the_directory_role(sb):
    r = _invoke(sb, _token(sb, NOROLE_ID, "s3cret-norole"), "Get-Mailbox")
    assert r.status_code == 403
    reader = _token(sb, READER_ID, "s3cret-reader")
    assert _invoke(sb, reader, "Get-Mailbox").status_code == 200
    assert _invoke(sb, reader, "Set-Mailbox", {"Identity": "user1"}).status_code == 403


def test_bad_envelope_is_400(sb):
    r = requests.post(sb.invoke_url, data=b"{not json", headers={"Authorization": f"Bearer {_token(sb)}"},
                      verify=str(sb.ca_bundle), timeout=10)
    assert r.status_code == 400 and "CmdletInput" in r.json()["error"]["message"]


def test_graph_service_principal_by_app_id_filter_and_404(sb):
    token = _token(sb, scope=GRAPH)
    h = {"Authorization": f"Bearer {token}"}
    ca = str(sb.ca_bundle)
    sp = requests.get(f"{sb.graph_url}/v1.0/servicePrincipals(appId='{ADMIN_ID}')", headers=h, verify=ca,
                      timeout=10).json()
    assert sp["appId"] == ADMIN_ID and sp["id"]
    listed = requests.get(f"{sb.graph_url}/v1.0/servicePrincipals", params={"$filter": f"appId eq '{ADMIN_ID}'"},
                          headers=h, verify=ca, timeout=10).json()
    assert [s["id"] for s in listed["value"]] == [sp["id"]]
    missing = requests.get(f"{sb.graph_url}/v1.0/servicePrincipals(appId='00000000-0000-0000-0000-000000000000')",
                           headers=h, verify=ca, timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"
    assert "request-id" in missing.json()["error"]["innerError"]
    noauth = requests.get(f"{sb.graph_url}/v1.0/servicePrincipals/{sp['id']}", verify=ca, timeout=10)
    assert noauth.status_code == 401 and noauth.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_graph_403_without_an_application_permission(sb):
    token = _token(sb, READER_ID, "s3cret-reader", scope=GRAPH)  # holds no Graph app role
    r = requests.get(f"{sb.graph_url}/v1.0/users", headers={"Authorization": f"Bearer {token}"},
                     verify=str(sb.ca_bundle), timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "Authorization_RequestDenied"


def test_graph_app_role_assignments_users_paging_and_batch(sb):
    h = {"Authorization": f"Bearer {_token(sb, scope=GRAPH)}"}
    ca = str(sb.ca_bundle)
    base = f"{sb.graph_url}/v1.0/servicePrincipals/{'a1a1a1a1-0000-4000-8000-0000000000aa'}/appRoleAssignments"
    made = requests.post(base, json={"principalId": "x", "resourceId": "r", "appRoleId": "role"}, headers=h,
                         verify=ca, timeout=10)
    assert made.status_code == 201
    listed = requests.get(base, headers=h, verify=ca, timeout=10).json()["value"]
    assert [a["id"] for a in listed] == [made.json()["id"]]
    assert requests.delete(f"{base}/{made.json()['id']}", headers=h, verify=ca, timeout=10).status_code == 204
    assert requests.delete(f"{base}/{made.json()['id']}", headers=h, verify=ca, timeout=10).status_code == 404
    users, url = [], f"{sb.graph_url}/v1.0/users?$top=2"
    while url:
        page = requests.get(url, headers=h, verify=ca, timeout=10).json()
        assert len(page["value"]) <= 2
        users += page["value"]
        url = page.get("@odata.nextLink")
    assert len(users) == 5
    batch = {"requests": [{"id": str(i), "method": "GET", "url": f"/servicePrincipals(appId='{ADMIN_ID}')"}
                          for i in range(3)]}
    out = requests.post(f"{sb.graph_url}/v1.0/$batch", json=batch, headers=h, verify=ca, timeout=10).json()
    assert [r["status"] for r in out["responses"]] == [200, 200, 200]
    too_many = {"requests": [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]}
    assert requests.post(f"{sb.graph_url}/v1.0/$batch", json=too_many, headers=h, verify=ca,
                         timeout=10).status_code == 400


def test_debug_endpoints_need_the_admin_token(sb):
    ca = str(sb.ca_bundle)
    assert requests.get(f"{sb.base_url}/_sandbox/check", verify=ca, timeout=10).status_code == 401
    other = _token(sb, READER_ID, "s3cret-reader")
    assert requests.get(f"{sb.base_url}/_sandbox/check", headers={"Authorization": f"Bearer {other}"}, verify=ca,
                        timeout=10).status_code == 403
    ok = requests.get(f"{sb.base_url}/_sandbox/timeline", headers={"Authorization": f"Bearer {_token(sb)}"},
                      verify=ca, timeout=10)
    assert ok.status_code == 200 and "events" in ok.json()


def test_profile_and_secret_file(sb):
    import os
    import stat
    import tomllib
    prof = tomllib.loads(sb.profile_path.read_text())
    assert prof["tenant_id"] == sb.tenant_id and prof["ca_bundle"] == str(sb.ca_bundle)
    secret_file = prof["credential"]["secret_file"]
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert Path(secret_file).read_text() == "s3cret-admin"
    assert "s3cret-admin" not in sb.profile_path.read_text() and "s3cret" not in repr(sb)
    assert json.dumps(sb.ready_line())
    sb.stop()
    assert not os.path.exists(secret_file) and sb.ca_bundle.exists()


def test_batch_with_inner_writes_and_errors(sb):
    h = {"Authorization": f"Bearer {_token(sb, scope=GRAPH)}"}
    sp = "a1a1a1a1-0000-4000-8000-0000000000aa"
    batch = {"requests": [
        {"id": "1", "method": "POST", "url": f"/servicePrincipals/{sp}/appRoleAssignments",
         "body": {"principalId": sp, "resourceId": "r", "appRoleId": "x"}, "headers": {"Content-Type": "application/json"}},
        {"id": "2", "method": "DELETE", "url": f"/servicePrincipals/{sp}/appRoleAssignments/asg0"},
        {"id": "3", "method": "GET", "url": "/servicePrincipals/00000000-0000-0000-0000-00000000dead"},
    ]}
    out = HTTP.post(f"{sb.graph_url}/v1.0/$batch", json=batch, headers=h, verify=str(sb.ca_bundle), timeout=10).json()
    by_id = {r["id"]: r for r in out["responses"]}
    assert by_id["1"]["status"] == 201 and by_id["1"]["body"]["id"] == "asg0"
    assert by_id["2"]["status"] == 204 and "body" not in by_id["2"]
    assert by_id["3"]["status"] == 404 and by_id["3"]["body"]["error"]["code"] == "Request_ResourceNotFound"


def test_garbage_connections_do_not_hurt_the_server(sb):
    import contextlib
    import socket
    import ssl

    host, port = "127.0.0.1", sb.port
    with socket.create_connection((host, port), timeout=5) as raw:  # plain text to a TLS port
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with contextlib.suppress(OSError):  # the server may reset it: fine
            raw.recv(100)
    ctx = ssl.create_default_context(cafile=str(sb.ca_bundle))
    with socket.create_connection((host, port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as tls:  # TLS, then nonsense HTTP
        tls.sendall(b"\x00\x01garbage\r\n\r\n")
        with contextlib.suppress(OSError):
            tls.recv(100)  # http.server's 400 page (HTTP/0.9 style: a body, no status line)
    with socket.create_connection((host, port), timeout=5):  # connect and say nothing
        pass
    assert _invoke(sb, _token(sb), "Get-Mailbox").status_code == 200
