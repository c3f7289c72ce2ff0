"""Each fault kind is observable over HTTPS and deterministic under a seed (stand-in state, manual clock)."""

from __future__ import annotations

import json

import msal
import pytest
import requests

from migrator.errors import InputError
from migrator.sandbox.faults import CONCURRENCY_TEXT, PROFILES, FaultInjector, FaultProfile, load_profile
from migrator.sandbox.server import serve_backend
from sandbox_standin import ADMIN_ID, NOROLE_ID, StandIn, VerifyingSession

EXO = "https://outlook.office365.com/.default"
HTTP = requests.Session()  # keep-alive across calls; `verify` is passed per request (REQUESTS_CA_BUNDLE)


def _serve(profile, tmp_path, seed=0, standin=None, exact=True):
    """exact: the throttle bucket runs on the stand-in's manual clock only (no real time), for exact tests."""
    standin = standin or StandIn(mailboxes=3)
    return standin, serve_backend(standin, admin_client_id=ADMIN_ID, admin_secret="s3cret-admin", seed=seed,
                                  faults=profile, run_dir=tmp_path,
                                  throttle_time=standin.clock.now if exact else None)


def _token(sb, client_id=ADMIN_ID, secret="s3cret-admin", scope=EXO):
    app = msal.ConfidentialClientApplication(client_id, client_credential=secret, authority=sb.authority,
                                             instance_discovery=False, http_client=VerifyingSession(sb.ca_bundle))
    return app.acquire_token_for_client([scope])["access_token"]


def _call(sb, token, cmdlet="Get-Mailbox", params=None):
    return HTTP.post(sb.invoke_url, json={"CmdletInput": {"CmdletName": cmdlet, "Parameters": params or {}}},
                         headers={"Authorization": f"Bearer {token}"}, verify=str(sb.ca_bundle), timeout=10)


def _outcome(sb, token, cmdlet="Get-Mailbox"):
    try:
        r = _call(sb, token, cmdlet, {"Identity": "user1"} if cmdlet == "Set-Mailbox" else None)
    except requests.ConnectionError:
        return "drop"
    except requests.exceptions.ContentDecodingError:  # only the NUL 403 is labelled gzip without being gzip
        return "403nul"
    return str(r.status_code)


def test_dropped_connection_never_touches_state(tmp_path):
    standin, sb = _serve(FaultProfile(drop_rate=1.0), tmp_path)
    with sb:
        token = _token(sb)  # the token endpoint is never faulted
        with pytest.raises(requests.ConnectionError):
            _call(sb, token, "Set-Mailbox", {"Identity": "user1"})
        assert standin.writes == []


def test_post_commit_drop_applies_the_write_then_drops(tmp_path):
    standin, sb = _serve(FaultProfile(name="pcd", post_commit_drop_rate=1.0), tmp_path, seed=5)
    with sb:
        token = _token(sb)
        with pytest.raises(requests.ConnectionError):
            _call(sb, token, "Set-Mailbox", {"Identity": "user1"})
        assert standin.writes == [("Set-Mailbox", {"Identity": "user1"})]
        assert _call(sb, token).status_code == 200  # reads are never post-commit dropped
        seen = HTTP.get(f"{sb.base_url}/_sandbox/faults", headers={"Authorization": f"Bearer {token}"},
                        verify=str(sb.ca_bundle), timeout=10).json()
        assert seen == {"profile": {**seen["profile"], "name": "pcd", "post_commit_drop_rate": 1.0}, "seed": 5,
                        "counts": {"post_commit_drop": 1}}


def test_throttling_token_bucket_with_and_without_retry_after(tmp_path):
    standin, sb = _serve(FaultProfile(throttle_rate=1, throttle_burst=2), tmp_path)
    with sb:
        token = _token(sb)
        assert [_call(sb, token).status_code for _ in range(2)] == [200, 200]
        third = _call(sb, token)
        assert third.status_code == 429 and third.headers["Retry-After"] == "1"
        standin.clock.t += 1.0  # the bucket refills on the sandbox clock
        assert _call(sb, token).status_code == 200
    standin, sb = _serve(FaultProfile(throttle_rate=1, throttle_burst=1, throttle_no_retry_after=1.0), tmp_path / "b")
    with sb:
        token = _token(sb)
        _call(sb, token)
        r = _call(sb, token)
        assert r.status_code == 429 and "Retry-After" not in r.headers
    standin, sb = _serve(FaultProfile(throttle_rate=1, throttle_burst=1, throttle_concurrency_text=1.0),
                         tmp_path / "c")
    with sb:
        token = _token(sb)
        _call(sb, token)
        r = _call(sb, token)
        assert r.status_code == 429 and r.text == CONCURRENCY_TEXT and r.headers["Content-Type"].startswith("text/")


def test_transient_500_and_503(tmp_path):
    _standin, sb = _serve(FaultProfile(transient_rate=1.0), tmp_path, seed=3)
    with sb:
        token = _token(sb)
        statuses = {_call(sb, token).status_code for _ in range(12)}
        assert statuses == {500, 503}


def _refusal_shape(sb, token, cmdlet="Get-Mailbox"):
    """(status, Content-Encoding, raw body bytes) without decoding, and whether requests can decode it at all."""
    r = HTTP.post(sb.invoke_url, json={"CmdletInput": {"CmdletName": cmdlet, "Parameters": {}}},
                  headers={"Authorization": f"Bearer {token}"}, verify=str(sb.ca_bundle), timeout=10, stream=True)
    raw = r.raw.read(decode_content=False)
    r.close()
    try:
        _ = _call(sb, token, cmdlet).content
        decodable = True
    except requests.exceptions.ContentDecodingError:
        decodable = False
    return r.status_code, r.headers.get("Content-Encoding"), raw, decodable


def test_nul_403_on_a_rate_and_for_a_genuine_403(tmp_path):
    _standin, sb = _serve(FaultProfile(nul_403_rate=1.0), tmp_path)
    with sb:
        status, encoding, raw, decodable = _refusal_shape(sb, _token(sb))
        assert (status, encoding, decodable) == (403, "gzip", False) and raw and set(raw) == {0}
    _standin, sb = _serve(FaultProfile(forbidden_nul_share=1.0), tmp_path / "b")
    with sb:
        assert _call(sb, _token(sb)).status_code == 200  # only a genuine 403 is affected
        status, encoding, raw, decodable = _refusal_shape(sb, _token(sb, NOROLE_ID, "s3cret-norole"))
        assert (status, encoding, decodable) == (403, "gzip", False) and set(raw) == {0}


def test_unknown_and_refused_cmdlets_answer_exchanges_refusal(tmp_path):
    _standin, sb = _serve(FaultProfile(refused_cmdlets=("Get-EXOMailbox",)), tmp_path)
    with sb:
        token = _token(sb)
        for cmdlet in ("Get-NoSuchThing", "get-exomailbox"):
            status, encoding, raw, decodable = _refusal_shape(sb, token, cmdlet)
            assert (status, encoding, decodable) == (403, "gzip", False) and set(raw) == {0}, cmdlet
        assert _call(sb, token, "Get-Mailbox").status_code == 200


def test_pipeline_error_cmdlets_answer_200_with_adminapi_errors(tmp_path):
    _standin, sb = _serve(FaultProfile(pipeline_error_cmdlets=("Get-Mailbox",)), tmp_path)
    with sb:
        body = _call(sb, _token(sb)).json()
        assert len(body["value"]) == 2  # three mailboxes, the last one lost
        (err,) = body["@adminapi.errors"]
        assert err.split("|")[1].endswith("ManagementObjectNotFoundException")
        assert body["@adminapi.warnings"] == ["standin warning"]  # both can come together
    with pytest.raises(ValueError):
        FaultProfile(refused_cmdlets="Get-EXOMailbox")


def test_graph_batch_inner_429(tmp_path):
    _standin, sb = _serve(FaultProfile(throttle_rate=1, throttle_burst=3), tmp_path)
    with sb:
        token = _token(sb, scope="https://graph.microsoft.com/.default")
        batch = {"requests": [{"id": str(i), "method": "GET", "url": "/users"} for i in range(4)]}
        r = requests.post(f"{sb.graph_url}/v1.0/$batch", json=batch, headers={"Authorization": f"Bearer {token}"},
                          verify=str(sb.ca_bundle), timeout=10)
        assert r.status_code == 200  # the outer request took one token; two inner ones fit, the last is throttled
        inner = r.json()["responses"]
        assert [x["status"] for x in inner] == [200, 200, 429, 429]
        assert inner[2]["headers"]["Retry-After"] == "1"
        assert inner[2]["body"]["error"]["code"] == "TooManyRequests"


def test_same_seed_same_faults_other_seed_other_faults(tmp_path):
    profile = FaultProfile(name="mix", throttle_rate=1, throttle_burst=5, transient_rate=0.2, drop_rate=0.15,
                           nul_403_rate=0.1, post_commit_drop_rate=0.3)

    def run(seed, where):
        standin, sb = _serve(profile, tmp_path / where, seed=seed)
        with sb:
            token = _token(sb)
            out = []
            for i in range(24):
                if i % 6 == 5:
                    standin.clock.t += 2  # refill a little, on the manual clock
                out.append(_outcome(sb, token, "Set-Mailbox" if i % 2 else "Get-Mailbox"))
            return out, dict(sb.faults.counts), len(standin.writes)

    first, again, other = run(7, "a"), run(7, "b"), run(8, "c")
    assert first == again
    assert first[0] != other[0] or first[1] != other[1]
    kinds = set(first[0])
    assert {"drop", "429"} <= kinds and kinds - {"drop", "429"}  # a real mix


def test_default_bucket_refills_in_real_time_under_a_manual_clock(tmp_path):
    """A client honouring Retry-After gets through although the test's manual clock never moves."""
    import time

    _standin, sb = _serve(FaultProfile(throttle_rate=20, throttle_burst=1), tmp_path, exact=False)
    with sb:
        token = _token(sb)
        for _ in range(2):
            _call(sb, token)  # empties the bucket (timing decides whether the second one is throttled)
        time.sleep(0.1)  # two refills' worth of real time at 20/s
        assert _call(sb, token).status_code == 200


def test_latency_draws_stay_in_the_configured_band():
    inj = FaultInjector(FaultProfile(latency_mean_ms=40, latency_jitter_ms=10), seed=1, now=lambda: 0.0)
    lat = [inj.decide("exchange", "t", is_write=False).latency for _ in range(200)]
    assert min(lat) >= 0.030 and max(lat) <= 0.050 and len(set(lat)) > 100


def test_queued_faults_come_first_and_in_order_then_the_rates_again():
    inj = FaultInjector(FaultProfile(), seed=1, now=lambda: 0.0)
    inj.queue("drop", "transient", "throttle")
    decisions = [inj.decide("exchange", "t", is_write=False) for _ in range(4)]
    assert [d.kind for d in decisions] == ["drop", "transient", "throttle", None]
    assert decisions[2].retry_after == 1 and inj.counts == {"drop": 1, "transient": 1, "throttle": 1}
    with pytest.raises(ValueError, match="nul403"):
        inj.queue("nul403")


def test_concurrency_limit():
    inj = FaultInjector(FaultProfile(max_concurrent=2), seed=1, now=lambda: 0.0)
    assert [inj.enter("exchange", "t") for _ in range(3)] == [True, True, False]
    inj.leave("exchange", "t")
    inj.leave("exchange", "t")
    assert inj.enter("exchange", "t")


def test_profiles_by_name_and_from_files(tmp_path):
    assert load_profile("none") == FaultProfile()
    assert load_profile("chaos").post_commit_drop_rate > 0 and PROFILES["mild"].post_commit_drop_rate == 0
    toml = tmp_path / "slow.toml"
    toml.write_text('base = "mild"\nlatency_mean_ms = 250\n')
    slow = load_profile(str(toml))
    assert slow.latency_mean_ms == 250 and slow.transient_rate == PROFILES["mild"].transient_rate
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"drop_rat": 0.1}))
    with pytest.raises(InputError, match="drop_rat"):
        load_profile(str(bad))
    worse = tmp_path / "worse.json"
    worse.write_text(json.dumps({"drop_rate": 3}))
    with pytest.raises(InputError, match="drop_rate"):
        load_profile(str(worse))
    with pytest.raises(InputError, match="unknown fault profile"):
        load_profile("nosuch")
