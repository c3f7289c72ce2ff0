"""Profiles, redaction, the $null-identity guard, the limiter, Graph paging and $batch, msal token handling."""

from __future__ import annotations

import json
import threading

import pytest
import responses

from exchange_helpers import GRAPH, TENANT, profile, session
from migrator.errors import InputError
from migrator.exchange import redact as R
from migrator.exchange.auth import TokenProvider
from migrator.exchange.errors import AuthError, Throttled, Unreachable
from migrator.exchange.exo import ExchangeClient, check_identity
from migrator.exchange.graph import GraphClient
from migrator.exchange.http import Budget
from migrator.exchange.profile import load_profile, parse_profile
from migrator.exchange.ratelimit import AdaptiveLimiter, fan_out


# -- profile -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cloud,login,exo,graph", [
    ("global", "login.microsoftonline.com", "outlook.office365.com", "graph.microsoft.com"),
    ("usgovgcchigh", "login.microsoftonline.us", "outlook.office365.us", "graph.microsoft.us"),
    ("usgovdod", "login.microsoftonline.us", "webmail.apps.mil", "dod-graph.microsoft.us"),
    ("china", "login.chinacloudapi.cn", "partner.outlook.cn", "microsoftgraph.chinacloudapi.cn"),
])
def test_clouds_by_name(cloud, login, exo, graph):
    p = profile(cloud=cloud)
    assert p.authority == f"https://{login}/{TENANT}"
    assert p.invoke_url == f"https://{exo}/adminapi/beta/{TENANT}/InvokeCommand"
    assert p.graph_base == f"https://{graph}/v1.0"
    assert p.exchange_resource == f"https://{exo}" and p.authority_is_microsoft


def test_inline_secret_is_refused_without_echoing_it(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text(f'tenant_id = "{TENANT}"\nclient_id = "c"\n[credential]\nkind = "secret"\nsecret = "S3cr3t-value"\n')
    with pytest.raises(InputError) as info:
        load_profile(f)
    assert "credential.secret" in str(info.value) and "S3cr3t-value" not in str(info.value)
    assert str(f) in str(info.value)


def test_profile_errors_name_the_field(tmp_path):
    with pytest.raises(InputError, match="cloud"):
        profile(cloud="mars")
    with pytest.raises(InputError, match="exchange_url"):
        profile(exchange_url="http://plain.example")
    with pytest.raises(InputError, match="tenant_id"):
        parse_profile({"client_id": "c", "credential": {"secret_env": "X"}})
    f = tmp_path / "bad.toml"
    f.write_text("tenant_id = [")
    with pytest.raises(InputError, match="TOML"):
        load_profile(f)


def test_secret_from_env_or_file(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGRATOR_TEST_SECRET", "from-env-123")
    assert profile().credential.secret() == "from-env-123"
    (tmp_path / "s").write_text("from-file-456\n")
    f = tmp_path / "p.toml"
    f.write_text(f'tenant_id = "{TENANT}"\nclient_id = "c"\n[credential]\nsecret_file = "s"\n')
    assert load_profile(f).credential.secret() == "from-file-456"
    monkeypatch.delenv("MIGRATOR_TEST_SECRET")
    with pytest.raises(InputError, match="MIGRATOR_TEST_SECRET"):
        profile().credential.secret()


# -- redaction -------------------------------------------------------------------------------------------
def test_redact_patterns_and_registered_values():
    R.register_secret("zz-registered-secret-zz")
    text = ("Authorization: Bearer abc.def.ghi client_secret=hunter2&x=1 client_assertion=eyJhbGciOiJ.eyJzdWIi.sig "
            '{"password": "pw1", "client_secret": "cs1"} echo zz-registered-secret-zz '
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----")
    out = R.redact(text)
    for secret in ("abc.def.ghi", "hunter2", "eyJhbGciOiJ", "pw1", "cs1", "zz-registered-secret-zz", "MIIE"):
        assert secret not in out
    assert "x=1" in out


def test_redact_params():
    out = R.redact_params({"Identity": "a@x.com", "Password": "p", "Nested": {"client_secret": "s"},
                           "Members": ["b@x.com"]})
    assert out == {"Identity": "a@x.com", "Password": "***", "Nested": {"client_secret": "***"},
                   "Members": ["b@x.com"]}


# -- guard ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmdlet,params", [
    ("Get-MailboxPermission", {"Identity": ""}),
    ("Get-MailboxPermission", {"Identity": None}),
    ("Get-RecipientPermission", {"Identity": "  "}),
    ("Get-ServicePrincipal", {"Identity": "$null"}),
    ("Get-DistributionGroupMember", {}),
    ("Get-ManagementRoleAssignment", {"Role": ""}),
])
def test_guard_refuses_empty_identity_before_any_call(cmdlet, params):
    with responses.RequestsMock() as mock:  # any call would fail: no responses registered
        exo = ExchangeClient(session(), profile())
        with pytest.raises(ValueError, match="every object"):
            exo.invoke(cmdlet, params)
        assert len(mock.calls) == 0


def test_guard_on_helpers():
    exo = ExchangeClient(session(), profile())
    with pytest.raises(ValueError):
        exo.get_mailbox_permissions("")
    with pytest.raises(ValueError):
        exo.get_group_members("   ")
    with pytest.raises(ValueError):
        exo.get_service_principal(None)
    check_identity("Get-RecipientPermission", {"Trustee": "sp"})  # a trustee alone is a real filter


# -- limiter -------------------------------------------------------------------------------------------
def test_limiter_window_aimd_and_no_pace_from_a_demand_limited_throttle():
    t = [0.0]
    lim = AdaptiveLimiter(initial=4, maximum=16, clock=lambda: t[0], sleep=lambda s: None)
    for _ in range(40):
        with lim.slot():
            t[0] += 0.01
        lim.on_success()
    grown = lim.limit
    assert grown > 4
    for _ in range(5):  # a burst of 429s within the cooldown counts once
        lim.on_throttle(1)
    assert lim.cuts == 1 and lim.limit < grown
    assert lim.rate is None  # nobody waited for a slot: the client was not the bottleneck, no pace is learnt
    t[0] += 5
    lim.on_throttle(None)
    assert lim.cuts == 2


def test_limiter_cut_uses_the_recent_peak_not_the_momentary_in_flight_count():
    """A 429 that comes back while the caller is between two rounds of work (one request left on the wire) answers
    requests sent while 8 were in flight: the window is cut from that peak, not collapsed to 1."""
    t = [0.0]
    lim = AdaptiveLimiter(initial=12, maximum=16, clock=lambda: t[0], sleep=lambda s: None)
    for _ in range(8):
        lim.acquire()
    for _ in range(7):
        lim.release()
        lim.on_success()
    t[0] += 0.2
    lim.on_throttle(1)  # one request still on the wire
    assert lim.cuts == 1 and 6 <= lim.limit <= 7
    lim.release()
    t[0] += 5  # a second later the old peak no longer counts: a lone request's throttle cuts to the minimum
    lim.acquire()
    lim.on_throttle(1)
    assert lim.limit == 1
    lim.release()


def test_limiter_learns_the_pace_while_saturated_and_relaxes():
    t = [0.0]

    def sleep(s):
        t[0] += s

    lim = AdaptiveLimiter(rate=100.0, clock=lambda: t[0], sleep=sleep, relax=10.0)
    for _ in range(150):  # paced at 100/s: every acquire but the first waits, so the limiter is the bottleneck
        with lim.slot():
            pass
        lim.on_success()
    assert 1.45 < t[0] < 1.6
    lim.on_throttle(1)
    # ~100 answers in the last second (the window) -> the pace becomes 0.95 x the observed rate
    assert lim.rate is not None and 0.9 * 100 <= lim.rate <= 0.95 * 105
    t[0] += 11
    with lim.slot():
        pass
    assert lim.rate is None  # no throttle for `relax` seconds: unpaced again


def test_limiter_paces():
    t = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        t[0] += s

    lim = AdaptiveLimiter(rate=10.0, clock=lambda: t[0], sleep=sleep)
    for _ in range(5):
        with lim.slot():
            pass
    assert abs(t[0] - 0.4) < 1e-6  # 5 sends at 10/s: 0, .1, .2, .3, .4


def test_fan_out_bounded_concurrency_and_errors():
    lim = AdaptiveLimiter(initial=3, maximum=3)
    active, peak, lock = [0], [0], threading.Lock()

    def work(i):
        with lim.slot():
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            threading.Event().wait(0.01)
            with lock:
                active[0] -= 1
        return i * 2

    assert fan_out(work, range(12), workers=8) == [i * 2 for i in range(12)]
    assert peak[0] <= 3

    def boom(i):
        if i == 3:
            raise RuntimeError("read failed")
        return i

    with pytest.raises(RuntimeError):
        fan_out(boom, range(6), workers=2)


# -- graph ---------------------------------------------------------------------------------------------
@responses.activate
def test_graph_paging_404_and_batch_inner_429():
    s = session()
    g = GraphClient(s, s.profile)
    responses.get(f"{GRAPH}/servicePrincipals(appId='missing')", status=404,
                  json={"error": {"code": "Request_ResourceNotFound", "message": "nope"}})
    assert g.get_service_principal_by_app_id("missing") is None
    nxt = f"{GRAPH}/servicePrincipals/sp1/appRoleAssignments?$skiptoken=2"
    responses.get(f"{GRAPH}/servicePrincipals/sp1/appRoleAssignments", json={"value": [{"id": "a"}],
                                                                             "@odata.nextLink": nxt})
    responses.get(nxt, json={"value": [{"id": "b"}]})
    assert [r["id"] for r in g.list_app_role_assignments("sp1")] == ["a", "b"]
    responses.post(f"{GRAPH}/$batch", json={"responses": [
        {"id": "0", "status": 200, "body": {"value": [{"id": "x"}]}},
        {"id": "1", "status": 429, "headers": {"Retry-After": "0"}, "body": {}}]})
    responses.post(f"{GRAPH}/$batch", json={"responses": [{"id": "1", "status": 200, "body": {"value": []}}]})
    out = g.list_app_role_assignments_many(["spA", "spB"])
    assert out == {"spA": [{"id": "x"}], "spB": []}
    with pytest.raises(ValueError):
        g.list_app_role_assignments("")


# -- msal ----------------------------------------------------------------------------------------------
AUTH = "https://login.example.test/" + TENANT


def _oidc():
    responses.get(f"{AUTH}/v2.0/.well-known/openid-configuration", json={
        "authorization_endpoint": f"{AUTH}/oauth2/v2.0/authorize", "token_endpoint": f"{AUTH}/oauth2/v2.0/token",
        "issuer": f"{AUTH}/v2.0"})


@responses.activate
def test_token_cached_per_resource_refresh_and_per_request_verify(monkeypatch, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not used by responses")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/bundle.pem")
    monkeypatch.setenv("MIGRATOR_TEST_SECRET", "the-client-secret-1")
    _oidc()
    for i in range(3):
        responses.post(f"{AUTH}/oauth2/v2.0/token", json={"access_token": f"AT{i}", "expires_in": 3600,
                                                          "token_type": "Bearer"})
    tp = TokenProvider(profile(authority=AUTH, ca_bundle=str(ca)))
    assert tp.token("https://outlook.office365.com") == "AT0"
    assert tp.token("https://outlook.office365.com") == "AT0"  # cached
    assert tp.token("https://graph.microsoft.com") == "AT1"  # one per resource
    assert tp.token("https://outlook.office365.com", force_refresh=True) == "AT2"
    posts = [c for c in responses.calls if c.request.method == "POST"]
    assert len(posts) == 3
    assert all(c.request.req_kwargs["verify"] == str(ca) for c in responses.calls)
    assert b"scope=https%3A%2F%2Foutlook.office365.com%2F.default" in posts[0].request.body.encode() \
        if isinstance(posts[0].request.body, str) else True


@responses.activate
def test_bad_secret_gives_a_hint_and_never_the_secret(monkeypatch):
    monkeypatch.setenv("MIGRATOR_TEST_SECRET", "wrong-secret-value-9")
    _oidc()
    responses.post(f"{AUTH}/oauth2/v2.0/token", status=401, json={
        "error": "invalid_client", "error_codes": [7000215],
        "error_description": "AADSTS7000215: Invalid client secret provided. Trace ID: 1"})
    tp = TokenProvider(profile(authority=AUTH))
    with pytest.raises(AuthError) as info:
        tp.token("https://outlook.office365.com")
    msg = str(info.value)
    assert "MIGRATOR_TEST_SECRET" in msg and "wrong" in msg and "wrong-secret-value-9" not in msg
    assert info.value.exit_code == 4


@responses.activate
def test_unknown_app_hint(monkeypatch):
    monkeypatch.setenv("MIGRATOR_TEST_SECRET", "s-123456")
    _oidc()
    responses.post(f"{AUTH}/oauth2/v2.0/token", status=400, json={
        "error": "unauthorized_client", "error_codes": [700016],
        "error_description": "AADSTS700016: Application with identifier 'c' was not found in the directory"})
    with pytest.raises(AuthError, match="client_id and tenant_id"):
        TokenProvider(profile(authority=AUTH)).token("https://graph.microsoft.com")


def test_unreachable_authority(monkeypatch):
    monkeypatch.setenv("MIGRATOR_TEST_SECRET", "s-123456")
    tp = TokenProvider(profile(authority="https://127.0.0.1:9/" + TENANT, timeout=2))
    with pytest.raises(Unreachable) as info:
        tp.token("https://graph.microsoft.com")
    assert "127.0.0.1" in str(info.value)


def test_certificate_pem_thumbprint(tmp_path):
    import datetime
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID

    from migrator.exchange.auth import load_certificate

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "migrator-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "c.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM))
    expected = hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    p = profile(credential={"kind": "certificate", "cert_file": str(pem)})
    cred = load_certificate(p.credential, source="t")
    assert cred["thumbprint"] == expected and "PRIVATE KEY" in cred["private_key"]
    assert "PRIVATE KEY" not in R.redact(cred["private_key"]) or "***" in R.redact(cred["private_key"])
    pfx = tmp_path / "c.pfx"
    pfx.write_bytes(pkcs12.serialize_key_and_certificates(b"x", key, cert, None,
                                                          serialization.BestAvailableEncryption(b"pfx-pass-1")))
    (tmp_path / "pw").write_text("pfx-pass-1")
    p2 = profile(credential={"kind": "certificate", "pfx_file": str(pfx), "pfx_password_file": str(tmp_path / "pw")})
    assert load_certificate(p2.credential, source="t")["thumbprint"] == expected
    (tmp_path / "pw").write_text("wrong")
    with pytest.raises(InputError, match="PFX"):
        load_certificate(p2.credential, source="t")


@responses.activate
def test_device_code_prompts_once_then_uses_the_refresh_token():
    import base64
    import json as _json

    responses.get(f"{AUTH}/v2.0/.well-known/openid-configuration", json={
        "authorization_endpoint": f"{AUTH}/oauth2/v2.0/authorize", "token_endpoint": f"{AUTH}/oauth2/v2.0/token",
        "device_authorization_endpoint": f"{AUTH}/oauth2/v2.0/devicecode", "issuer": f"{AUTH}/v2.0"})
    responses.post(f"{AUTH}/oauth2/v2.0/devicecode", json={
        "device_code": "dc", "user_code": "ABCD-EFGH", "verification_uri": "https://example.test/devicelogin",
        "expires_in": 900, "interval": 0, "message": "Go to https://example.test/devicelogin and enter ABCD-EFGH"})

    def b64(d):
        return base64.urlsafe_b64encode(_json.dumps(d).encode()).decode().rstrip("=")

    id_token = ".".join([b64({"alg": "none"}), b64({"iss": f"{AUTH}/v2.0", "sub": "s", "aud": "c", "oid": "o",
                                                    "tid": TENANT, "preferred_username": "admin@x.com",
                                                    "exp": 9999999999, "iat": 1}), ""])
    client_info = b64({"uid": "o", "utid": TENANT})
    for i in range(2):
        responses.post(f"{AUTH}/oauth2/v2.0/token", json={
            "access_token": f"user-AT{i}", "refresh_token": f"RT{i}", "id_token": id_token, "client_info": client_info,
            "expires_in": 3600, "token_type": "Bearer", "scope": "x"})
    prompts = []
    tp = TokenProvider(profile(authority=AUTH, credential={"kind": "device_code"}), device_code_prompt=prompts.append)
    assert tp.token("https://outlook.office365.com") == "user-AT0"
    assert prompts == ["Go to https://example.test/devicelogin and enter ABCD-EFGH"]
    assert tp.token("https://graph.microsoft.com") == "user-AT1"  # silently, with the refresh token
    assert len(prompts) == 1
    bodies = [c.request.body for c in responses.calls if c.request.url.endswith("/token")]
    assert "refresh_token" in str(bodies[-1])


@responses.activate
def test_graph_batch_outlasts_sustained_inner_throttling_and_slows_the_pace():
    s = session(budgets={"throttle": Budget(seconds=60.0)})
    g = GraphClient(s, s.profile)
    throttled = {"id": "1", "status": 429, "headers": {"Retry-After": "2"}, "body": {}}
    responses.post(f"{GRAPH}/$batch", json={"responses": [
        {"id": "0", "status": 200, "body": {"value": [{"id": "x"}]}}, throttled]})
    for _ in range(12):  # twice the old fixed six tries
        responses.post(f"{GRAPH}/$batch", json={"responses": [throttled]})
    responses.post(f"{GRAPH}/$batch", json={"responses": [{"id": "1", "status": 200, "body": {"value": []}}]})
    assert g.list_app_role_assignments_many(["spA", "spB"]) == {"spA": [{"id": "x"}], "spB": []}
    sent = [json.loads(c.request.body)["requests"] for c in responses.calls]
    assert [len(r) for r in sent] == [2] + [1] * 13  # only the throttled one is sent again
    assert s.sleeps == [2.0] * 13
    graph = s.limiters["graph"]
    assert graph.throttles == 13 and graph.successes == 1 + 1 + 12 + 2  # served inner requests + outer ones


@responses.activate
def test_graph_batch_gives_up_only_past_the_throttle_budget():
    s = session(budgets={"throttle": Budget(seconds=10.0)})
    g = GraphClient(s, s.profile)
    responses.post(f"{GRAPH}/$batch", json={"responses": [
        {"id": "0", "status": 429, "headers": {"Retry-After": "3"}, "body": {}}]})
    with pytest.raises(Throttled, match="inside \\$batch still throttled"):
        g.list_app_role_assignments_many(["spA"])
    assert s.sleeps == [3.0, 3.0, 3.0]  # a fourth wait would end past 10 s


def test_a_weighted_slot_takes_that_many_units_of_the_pace():
    now = [0.0]
    slept = []
    limiter = AdaptiveLimiter(rate=10.0, clock=lambda: now[0], sleep=slept.append)
    limiter.acquire(weight=21)  # a $batch of 20 + the outer request
    limiter.release()
    limiter.acquire()
    limiter.release()
    assert slept == [pytest.approx(2.1)]


def test_inline_client_secret_error_advises_keys_that_exist(tmp_path):
    from migrator.exchange.profile import CREDENTIAL_KEYS

    for where, text in (("credential.client_secret", '[credential]\nclient_secret = "S3cr3t"\n'),
                        ("client_secret", 'client_secret = "S3cr3t"\n[credential]\nsecret_env = "X"\n'),
                        ("credential.pfx_password", '[credential]\nkind = "certificate"\npfx_password = "S3cr3t"\n')):
        f = tmp_path / "p.toml"
        f.write_text(f'tenant_id = "{TENANT}"\nclient_id = "c"\n' + text)
        with pytest.raises(InputError) as info:
            load_profile(f)
        message = str(info.value)
        assert where in message and "S3cr3t" not in message
        advised = [k for k in CREDENTIAL_KEYS if k in message]
        assert advised, message  # it names keys a profile can really hold...
        assert "client_secret_env" not in message and "client_secret_file" not in message  # ...and no others


def test_a_misspelt_profile_key_is_an_error_naming_it_with_a_suggestion():
    with pytest.raises(InputError) as info:
        parse_profile({"tenant_id": TENANT, "client_id": "c", "tenantid": "x", "credential": {"secret_env": "X"}},
                      source="p.toml")
    assert str(info.value) == "p.toml, field 'tenantid': unknown key; did you mean tenant_id?"
    with pytest.raises(InputError) as info:
        parse_profile({"tenant_id": TENANT, "client_id": "c", "credential": {"secret_envv": "X"}}, source="p.toml")
    assert str(info.value) == ("p.toml, field 'credential.secret_envv': unknown key; did you mean "
                               "credential.secret_env?")
    with pytest.raises(InputError, match="known keys: name, tenant_id"):
        parse_profile({"tenant_id": TENANT, "client_id": "c", "zzz": 1, "credential": {"secret_env": "X"}})
