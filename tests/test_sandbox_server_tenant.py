"""The sandbox server over the real tenant state (migrator/samples/contoso): unmodified msal, a plain requests client,
Graph, the debug endpoints, and `migrator sandbox serve` as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import msal
import pytest
import requests

from conftest import SAMPLES
from sandbox_standin import VerifyingSession

pytestmark = pytest.mark.integration
EXO = "https://outlook.office365.com/.default"
HTTP = requests.Session()  # keep-alive across calls; `verify` is passed per request (REQUESTS_CA_BUNDLE)
GRAPH = "https://graph.microsoft.com/.default"


def _msal(sb):
    return msal.ConfidentialClientApplication(sb.client_id, client_credential=sb.client_secret,
                                              authority=sb.authority, instance_discovery=False,
                                              http_client=VerifyingSession(sb.ca_bundle))


def _post(sb, token, cmdlet, params=None, *, url=None, page=None):
    headers = {"Authorization": f"Bearer {token}"}
    if page:
        headers["Prefer"] = f"odata.maxpagesize={page}"
    return HTTP.post(url or sb.invoke_url, json={"CmdletInput": {"CmdletName": cmdlet,
                                                                     "Parameters": params or {}}},
                         headers=headers, verify=str(sb.ca_bundle), timeout=10)


def test_sample_tenant_pages_get_mailbox_and_errors(sandbox):
    token = _msal(sandbox).acquire_token_for_client([EXO])["access_token"]
    everything = _post(sandbox, token, "Get-Mailbox", {"ResultSize": "Unlimited"}).json()
    assert "@odata.nextLink" not in everything
    expected = [m["PrimarySmtpAddress"] for m in everything["value"]]
    assert len(expected) > 4
    seen, url, pages = [], None, 0
    while True:
        body = _post(sandbox, token, "Get-Mailbox", {"ResultSize": "Unlimited"}, url=url, page=2).json()
        assert len(body["value"]) <= 2
        seen += [m["PrimarySmtpAddress"] for m in body["value"]]
        pages += 1
        url = body.get("@odata.nextLink")
        if not url or pages > 1000:
            break
    assert seen == expected and pages == (len(expected) + 1) // 2
    missing = _post(sandbox, token, "Get-Mailbox", {"Identity": "nobody@contoso.com"})
    assert missing.status_code == 404
    assert "|Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException|" in \
        missing.json()["error"]["details"][0]["message"]
    assert requests.post(sandbox.invoke_url, json={"CmdletInput": {"CmdletName": "Get-Mailbox"}},
                         verify=str(sandbox.ca_bundle), timeout=10).status_code == 401


def test_token_claims_follow_graph_app_role_assignments(sandbox):
    """The cut-over: deleting an app's SMTP.SendAsApp assignment through Graph removes the claim from new tokens."""

    app = _msal(sandbox)
    graph = {"Authorization": f"Bearer {app.acquire_token_for_client([GRAPH])['access_token']}"}
    ca = str(sandbox.ca_bundle)
    fixture = json.loads((SAMPLES / "contoso" / "tenant.json").read_text())
    mailer = next(a for a in fixture["apps"] if {"resource": "Office 365 Exchange Online",
                                                 "permission": "SMTP.SendAsApp"} in a["app_roles"])
    sp = requests.get(f"{sandbox.graph_url}/v1.0/servicePrincipals(appId='{mailer['app_id']}')", headers=graph,
                      verify=ca, timeout=10).json()
    assert sp["id"] == mailer["object_id"]
    exo_sp = requests.get(f"{sandbox.graph_url}/v1.0/servicePrincipals",
                          params={"$filter": "appId eq '00000002-0000-0ff1-ce00-000000000000'"}, headers=graph,
                          verify=ca, timeout=10).json()["value"][0]
    smtp_role = next(r["id"] for r in exo_sp["appRoles"] if r["value"] == "SMTP.SendAsApp")
    rows = requests.get(f"{sandbox.graph_url}/v1.0/servicePrincipals/{sp['id']}/appRoleAssignments",
                        headers=graph, verify=ca, timeout=10).json()["value"]
    target = next(r for r in rows if r["appRoleId"] == smtp_role)
    assert requests.delete(f"{sandbox.graph_url}/v1.0/servicePrincipals/{sp['id']}/appRoleAssignments/"
                           f"{target['id']}", headers=graph, verify=ca, timeout=10).status_code == 204
    # Graph replicates the deletion with delay: tokens issued meanwhile still carry the claim.
    claims = sandbox.state.issue_token(mailer["app_id"], "https://outlook.office365.com")
    assert "SMTP.SendAsApp" in claims["roles"]
    sandbox.state.clock.advance(sandbox.state.settings.graph_replication_delay)
    claims = sandbox.state.issue_token(mailer["app_id"], "https://outlook.office365.com")
    assert "SMTP.SendAsApp" not in claims["roles"]
    timeline = requests.get(f"{sandbox.base_url}/_sandbox/timeline", headers=graph, verify=ca, timeout=10)
    assert timeline.status_code == 200
    check = requests.get(f"{sandbox.base_url}/_sandbox/check", headers=graph, verify=ca, timeout=10).json()
    assert set(check) >= {"gaps", "overgrants"}


@pytest.fixture
def short_tokens(tmp_path):
    """The sample tenant on a manual clock, apps' tokens 2 s, the admin's 30 s; one mailer app has a secret."""
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture = json.loads((SAMPLES / "contoso" / "tenant.json").read_text())
    mailer = next(a for a in fixture["apps"] if {"resource": "Office 365 Exchange Online",
                                                 "permission": "SMTP.SendAsApp"} in a["app_roles"])
    mailer["secret"] = "mailer-s3cret"
    settings = SandboxSettings(token_lifetime=2, admin_token_lifetime=30)
    with start_sandbox(fixture, settings=settings, clock=Clock.manual(), run_dir=tmp_path / "sb") as sb:
        yield sb, mailer["app_id"]


def test_admin_tokens_live_admin_token_lifetime_and_app_tokens_token_lifetime(short_tokens):
    import jwt

    sb, mailer_id = short_tokens
    admin = _msal(sb).acquire_token_for_client([EXO])
    mailer = msal.ConfidentialClientApplication(mailer_id, client_credential="mailer-s3cret", authority=sb.authority,
                                                instance_discovery=False, http_client=VerifyingSession(sb.ca_bundle)
                                                ).acquire_token_for_client([EXO])
    admin_claims = jwt.decode(admin["access_token"], options={"verify_signature": False})
    mailer_claims = jwt.decode(mailer["access_token"], options={"verify_signature": False})
    assert admin_claims["appid"] == sb.client_id.lower() and admin["expires_in"] == 30
    assert admin_claims["exp"] - admin_claims["iat"] == 30
    assert mailer_claims["appid"] == mailer_id.lower() and mailer["expires_in"] == 2
    assert mailer_claims["exp"] - mailer_claims["iat"] == 2
    assert "SMTP.SendAsApp" in mailer_claims["roles"]


def test_an_expired_admin_token_still_gets_401(short_tokens):
    sb, _ = short_tokens
    token = _msal(sb).acquire_token_for_client([EXO])["access_token"]
    sb.state.clock.advance(29)
    assert _post(sb, token, "Get-Mailbox", {"ResultSize": "1"}).status_code == 200
    sb.state.clock.advance(1)  # exp reached on the sandbox clock
    expired = _post(sb, token, "Get-Mailbox", {"ResultSize": "1"})
    assert expired.status_code == 401 and "expired" in expired.headers.get("WWW-Authenticate", "") + expired.text


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_prints_the_ready_line_and_stops_on_a_signal(tmp_path, stop_signal):
    env = {k: v for k, v in os.environ.items() if k != "MIGRATOR_PROFILE"}
    proc = subprocess.Popen([sys.executable, "-m", "migrator", "sandbox", "serve", "--seed", "3", "--run-dir",
                             str(tmp_path / "run"), "--token-lifetime", "5",
                             "--admin-token-lifetime", "900"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        ready = json.loads(line)
        for key in ("authority", "exchange_url", "graph_url", "ca_bundle", "tenant_id", "client_id",
                    "client_secret", "profile"):
            assert ready[key], key
        profile_text = Path(ready["profile"]).read_text()
        profile = tomllib.loads(profile_text)
        assert profile["client_id"] == ready["client_id"] and ready["client_secret"] not in profile_text
        app = msal.ConfidentialClientApplication(ready["client_id"], client_credential=ready["client_secret"],
                                                 authority=ready["authority"], instance_discovery=False,
                                                 http_client=VerifyingSession(ready["ca_bundle"]))
        result = app.acquire_token_for_client([EXO])
        assert result["expires_in"] == 900  # the admin's lifetime, not the apps' --token-lifetime
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=15) == 0
        assert proc.stdout.read() == ""  # one line, nothing else on stdout
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_rejects_a_bad_fixture(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text("{}")
    res = subprocess.run([sys.executable, "-m", "migrator", "sandbox", "serve", "--tenant", str(bad)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "not a tenant fixture" in res.stderr and str(bad) in res.stderr
    assert res.stdout == ""


def test_certificate_credential_registered_in_the_fixture(tmp_path):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding

    from migrator.sandbox.server import start_sandbox
    from sandbox_standin import make_cert

    key_pem, cert = make_cert("migrator-admin")
    data = json.loads((SAMPLES / "contoso" / "tenant.json").read_text())
    data["admin"]["certificate_pem"] = cert.public_bytes(Encoding.PEM).decode()
    with start_sandbox(data, run_dir=tmp_path) as sb:
        app = msal.ConfidentialClientApplication(
            sb.client_id, client_credential={"private_key": key_pem, "thumbprint": cert.fingerprint(hashes.SHA1()).hex()},
            authority=sb.authority, instance_discovery=False, http_client=VerifyingSession(sb.ca_bundle))
        token = app.acquire_token_for_client([EXO])["access_token"]
        r = _post(sb, token, "Get-ServicePrincipal")
        assert r.status_code == 200 and len(r.json()["value"]) == sum(a["exchange_pointer"] for a in data["apps"])


def test_concurrent_keep_alive_clients(sandbox):
    """Several clients, each on its own keep-alive connection, interleaving reads: every answer is complete."""
    from concurrent.futures import ThreadPoolExecutor

    token = _msal(sandbox).acquire_token_for_client([EXO])["access_token"]
    everyone = _post(sandbox, token, "Get-Mailbox", {"ResultSize": "Unlimited"}).json()["value"]
    addresses = [m["PrimarySmtpAddress"] for m in everyone[:40]]

    def worker(chunk):
        with requests.Session() as s:
            out = []
            for address in chunk:
                r = s.post(sandbox.invoke_url, json={"CmdletInput": {"CmdletName": "Get-Mailbox",
                                                                     "Parameters": {"Identity": address}}},
                           headers={"Authorization": f"Bearer {token}"}, verify=str(sandbox.ca_bundle), timeout=10)
                out.append((r.status_code, r.json()["value"][0]["PrimarySmtpAddress"]))
            return out

    chunks = [addresses[i::4] for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(worker, chunks))
    for chunk, got in zip(chunks, results):
        assert got == [(200, a) for a in chunk]
