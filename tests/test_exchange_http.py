"""ApiSession: retries, Retry-After, throttling text, NUL-byte 403, 401 refresh, typed errors, redaction."""

from __future__ import annotations

import email.utils
import json
import socket
import time

import pytest
import requests
import responses

from exchange_helpers import INVOKE, profile, session
from migrator.exchange.errors import (
    AlreadyExists,
    ApiError,
    AuthError,
    CmdletRefused,
    Forbidden,
    MemberAlreadyExists,
    MemberNotFound,
    NotFound,
    ReplyErrors,
    Throttled,
    Unreachable,
    parse_error_body,
)
from migrator.exchange.exo import ExchangeClient
from migrator.exchange.http import Budget, connection_failure_kind, parse_retry_after


def exo_error(etype, text, code="BadRequest"):
    return {"error": {"code": code, "message": text,
                      "details": [{"message": f"ABC123|Microsoft.Exchange.Configuration.Tasks.{etype}|{text}"}]}}


def client(**kw):
    s = session(**kw)
    return ExchangeClient(s, s.profile), s


@responses.activate
def test_retries_429_honouring_retry_after_seconds_then_succeeds():
    responses.post(INVOKE, status=429, headers={"Retry-After": "7"}, body="")
    responses.post(INVOKE, status=503, headers={"Retry-After": "2"}, body="")
    responses.post(INVOKE, json={"value": [{"Name": "a"}]})
    exo, s = client()
    assert exo.invoke("Get-Mailbox", {"Identity": "a@x.com"}) == [{"Name": "a"}]
    assert s.sleeps == [7.0, 2.0]
    assert s.calls["Get-Mailbox"] == 3
    assert s.limiter.throttles == 1  # the 429; a 503 is retried but not taken as a budget signal


@responses.activate
def test_retry_after_http_date_is_honoured():
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after(when) <= 31
    assert parse_retry_after("garbage") is None
    assert parse_retry_after(None) is None


@responses.activate
def test_backoff_without_retry_after_is_capped_jittered_exponential():
    for _ in range(4):
        responses.post(INVOKE, status=502, body="bad gateway")
    responses.post(INVOKE, json={"value": []})
    exo, s = client(backoff=1.0, backoff_cap=3.0)
    assert exo.invoke("Get-Mailbox", {"Identity": "a@x.com"}) == []
    assert len(s.sleeps) == 4
    assert all(0 <= w <= 3.0 for w in s.sleeps)


@responses.activate
def test_concurrency_text_is_retried_as_throttling():
    text = "Fail to process request: You have reached the maximum number of concurrent requests per tenant."
    responses.post(INVOKE, status=500, body=text, content_type="text/plain")
    responses.post(INVOKE, json={"value": [{"x": 1}]})
    exo, s = client()
    assert exo.invoke("Get-Mailbox", {"Identity": "a"}) == [{"x": 1}]
    assert s.limiter.throttles == 1


@responses.activate
def test_throttled_after_all_attempts_raises_throttled_not_empty():
    responses.post(INVOKE, status=429, body="")
    exo, s = client(budgets={"throttle": Budget(seconds=100.0)}, backoff_cap=10.0)
    with pytest.raises(Throttled) as info:
        exo.invoke("Get-RecipientPermission", {"Identity": "a@x.com"})
    assert info.value.status == 429 and info.value.operation == "Get-RecipientPermission"
    assert sum(s.sleeps) <= 100.0  # bounded by elapsed time: no wait that would end past the budget is started
    assert s.calls["Get-RecipientPermission"] == len(s.sleeps) + 1 >= 10


NUL_403 = dict(status=403, body=b"\x00" * 64, headers={"Content-Encoding": "gzip"})  # Exchange's cmdlet refusal


@responses.activate
def test_gzip_labelled_nul_403_is_retried_within_its_budget_then_cmdlet_refused():
    responses.post(INVOKE, **NUL_403)
    responses.post(INVOKE, json={"value": [{"ok": 1}]})
    exo, s = client()
    assert exo.invoke("Get-Mailbox", {"Identity": "a@x.com"}) == [{"ok": 1}]  # a transient NUL 403
    responses.replace(responses.POST, INVOKE, **NUL_403)
    with pytest.raises(CmdletRefused) as info:
        exo.invoke("Get-EXOMailbox", {"Identity": "a@x.com"})
    assert s.calls["Get-EXOMailbox"] == 4  # the nul403 budget, not the network's
    err = info.value
    assert isinstance(err, Forbidden) and err.cmdlet == "Get-EXOMailbox" and err.exit_code == 4
    msg = str(err)
    assert "refused the cmdlet Get-EXOMailbox" in msg and "Exchange.ManageAsApp" in msg and "role" in msg
    assert "reach" not in msg and "network" not in msg and "\x00" not in msg
    assert s.retry_kinds == {"nul403": 4}


@responses.activate
def test_nul_403_after_many_other_transient_answers_is_still_retried():
    for _ in range(6):
        responses.post(INVOKE, status=429, body="")
    for _ in range(3):
        responses.post(INVOKE, status=503, body="")
    responses.post(INVOKE, body=requests.exceptions.ConnectionError("reset"))
    for _ in range(3):
        responses.post(INVOKE, **NUL_403)
    responses.post(INVOKE, json={"value": [{"ok": 1}]})
    exo, s = client()
    assert exo.invoke("Remove-RecipientPermission", {"Identity": "a", "Trustee": "t"}) == [{"ok": 1}]
    assert s.retry_kinds == {"throttle": 6, "server": 3, "dropped": 1, "nul403": 3}


@responses.activate
def test_graph_nul_403_is_forbidden_not_a_cmdlet_refusal():
    from exchange_helpers import GRAPH
    from migrator.exchange.graph import GraphClient

    responses.get(f"{GRAPH}/servicePrincipals/x/appRoleAssignments", **NUL_403)
    s = session()
    with pytest.raises(Forbidden) as info:
        GraphClient(s, s.profile).list_app_role_assignments("x")
    assert not isinstance(info.value, CmdletRefused) and "Application.Read.All" in str(info.value)


def test_connection_failures_are_classified_by_exception_type_not_text():
    import urllib3.exceptions

    def wrapped(cause):
        inner = urllib3.exceptions.NewConnectionError(None, "failed")
        inner.__cause__ = cause
        return requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(None, "/", inner))

    assert connection_failure_kind(wrapped(ConnectionRefusedError(111, "refused"))) == "refused"
    assert connection_failure_kind(requests.exceptions.ConnectionError("[Errno 111] Connection refused")) == \
        "dropped"  # the text alone proves nothing
    assert connection_failure_kind(wrapped(socket.gaierror(-2, "Name or service not known"))) == "dns"
    assert connection_failure_kind(requests.exceptions.SSLError("bad cert")) == "tls"
    assert connection_failure_kind(requests.exceptions.ReadTimeout("slow")) == "timeout"
    assert connection_failure_kind(requests.exceptions.ConnectionError("Connection aborted")) == "dropped"


@responses.activate
def test_each_kind_of_failure_has_its_own_budget():
    import urllib3.exceptions

    refused = urllib3.exceptions.NewConnectionError(None, "x")
    refused.__cause__ = ConnectionRefusedError(111, "refused")
    for _ in range(5):
        responses.post(INVOKE, body=requests.exceptions.ConnectionError("aborted"))  # dropped: its own budget
    for _ in range(3):
        responses.post(INVOKE, body=requests.exceptions.ConnectionError(refused))
    exo, s = client()
    with pytest.raises(Unreachable) as info:
        exo.invoke("Get-Mailbox", {"Identity": "a"})
    assert info.value.kind == "refused" and "nothing accepts connections" in str(info.value)
    assert s.calls["Get-Mailbox"] == 5 + 3  # three refused tries after five dropped ones


@responses.activate
def test_401_refreshes_the_token_once_then_succeeds():
    responses.post(INVOKE, status=401, json={"error": {"code": "InvalidToken", "message": "expired"}})
    responses.post(INVOKE, json={"value": []})
    exo, s = client()
    exo.invoke("Get-Mailbox", {"Identity": "a"})
    assert s.tokens.calls[-1][1] is True  # forced refresh
    assert responses.calls[1].request.headers["Authorization"] == "Bearer tok-1"


@responses.activate
def test_401_twice_is_an_auth_error():
    responses.post(INVOKE, status=401, json={"error": {"code": "InvalidToken", "message": "nope"}})
    exo, s = client()
    with pytest.raises(AuthError):
        exo.invoke("Get-Mailbox", {"Identity": "a"})
    assert s.calls["Get-Mailbox"] == 2


@responses.activate
def test_not_found_only_from_management_object_not_found():
    responses.post(INVOKE, status=400, json=exo_error("ManagementObjectNotFoundException", "no such object"))
    exo, _ = client()
    assert exo.get_distribution_group("ghost@x.com") is None
    responses.replace(responses.POST, INVOKE, status=400,
                      json=exo_error("InvalidOperationException", "something else"))
    with pytest.raises(ApiError) as info:
        exo.get_distribution_group("ghost@x.com")
    assert not isinstance(info.value, NotFound)
    assert info.value.exception_type.endswith("InvalidOperationException") and info.value.errid == "ABC123"


@responses.activate
def test_already_exists_is_typed():
    responses.post(INVOKE, status=400, json=exo_error("ADObjectAlreadyExistsException", "exists"))
    exo, _ = client()
    with pytest.raises(AlreadyExists):
        exo.new_distribution_group("G", "g")


@responses.activate
def test_member_errors_in_a_200_answer_are_typed_only_for_their_own_cmdlet():
    """Exchange may report a cmdlet's error in a 200 answer's @adminapi.errors: the member errors of the
    single-member cmdlets get their typed errors there too; the same type on another cmdlet, or among other errors,
    stays a failed call (ReplyErrors)."""
    line = ("C8D4A0D6|Microsoft.Exchange.Management.RecipientTasks.MemberAlreadyExistsException|The recipient "
            "\"a@x.com\" is already a member of the group \"G\".")
    gone = "X1|Microsoft.Exchange.Management.RecipientTasks.MemberNotFoundException|The recipient isn't a member."
    responses.post(INVOKE, json={"value": [], "@adminapi.errors": [line]})
    responses.post(INVOKE, json={"value": [], "@adminapi.errors": [gone]})
    responses.post(INVOKE, json={"value": [], "@adminapi.errors": [gone]})
    responses.post(INVOKE, json={"value": [], "@adminapi.errors": [line, gone]})
    exo, _ = client()
    with pytest.raises(MemberAlreadyExists) as added:
        exo.add_group_member("G", "a@x.com")
    assert added.value.status == 200 and "already a member" in str(added.value)
    with pytest.raises(MemberNotFound):
        exo.remove_group_member("G", "a@x.com")
    with pytest.raises(ReplyErrors) as other:  # the same type on a cmdlet it does not belong to
        exo.add_group_member("G", "a@x.com")
    assert not isinstance(other.value, NotFound)
    with pytest.raises(ReplyErrors) as several:
        exo.add_group_member("G", "a@x.com")
    assert not isinstance(several.value, AlreadyExists)


@responses.activate
def test_a_missing_group_or_recipient_is_never_taken_for_a_member_answer():
    """Add-/Remove-DistributionGroupMember on a group or recipient that does not exist: NotFound, but not the
    member errors the executor takes as "already done"."""
    responses.post(INVOKE, status=404, json=exo_error("ManagementObjectNotFoundException", "couldn't be found"))
    responses.post(INVOKE, status=404, json=exo_error("ManagementObjectNotFoundException", "couldn't be found"))
    exo, _ = client()
    with pytest.raises(NotFound) as removed:
        exo.remove_group_member("ghost-group", "a@x.com")
    assert not isinstance(removed.value, MemberNotFound)
    with pytest.raises(NotFound) as added:
        exo.add_group_member("G", "ghost@x.com")
    assert not isinstance(added.value, (MemberNotFound, MemberAlreadyExists))


@responses.activate
def test_dropped_connection_is_retried():
    responses.post(INVOKE, body=requests.exceptions.ConnectionError("Connection aborted: ConnectionResetError(104)"))
    responses.post(INVOKE, body=requests.exceptions.ChunkedEncodingError("Connection broken"))
    responses.post(INVOKE, json={"value": [{"ok": True}]})
    exo, s = client()
    assert exo.invoke("Get-Mailbox", {"Identity": "a"}) == [{"ok": True}]
    assert s.calls["Get-Mailbox"] == 3


@responses.activate
def test_tls_failure_is_unreachable_at_once_with_a_ca_hint():
    responses.post(INVOKE, body=requests.exceptions.SSLError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"))
    exo, s = client()
    with pytest.raises(Unreachable) as info:
        exo.invoke("Get-Mailbox", {"Identity": "a"})
    assert "outlook.office365.com" in str(info.value) and "ca_bundle" in str(info.value)
    assert s.calls["Get-Mailbox"] == 1


def test_unreachable_host_names_the_host():
    prof = profile(exchange_url="https://127.0.0.1:9", timeout=2)
    s = session(prof, budgets={"refused": Budget(tries=2)})
    exo = ExchangeClient(s, prof)
    with pytest.raises(Unreachable) as info:
        exo.invoke("Get-Mailbox", {"Identity": "a"})
    assert "127.0.0.1" in str(info.value) and "check" in str(info.value)
    assert s.calls["Get-Mailbox"] == 2


@responses.activate
def test_paging_follows_next_link_with_the_same_body_and_headers():
    nxt = INVOKE + "?$skiptoken=abc"
    responses.post(INVOKE, json={"value": [{"n": 1}], "@odata.nextLink": nxt})
    responses.post(nxt, json={"value": [{"n": 2}]})
    exo, s = client()
    assert [r["n"] for r in exo.get_mailboxes()] == [1, 2]
    first, second = responses.calls[0].request, responses.calls[1].request
    assert first.body == second.body
    assert b'"CmdletName": "Get-Mailbox"' in first.body and b'"ResultSize": "Unlimited"' in first.body
    h = first.headers
    assert h["Prefer"] == "odata.maxpagesize=1000" and h["X-ResponseFormat"] == "json"
    assert h["X-AnchorMailbox"].startswith("APP:SystemMailbox{bb558c35") and h["client-request-id"]
    assert s.calls["Get-Mailbox"] == 2


@responses.activate
def test_error_carries_redacted_params_and_no_token():
    responses.post(INVOKE, status=400, json={"error": {"code": "x", "message": "bad Bearer eyJhbGciOi.eyJzdWIiOi.sig"}})
    exo, _ = client()
    with pytest.raises(ApiError) as info:
        exo.invoke("Set-Thing", {"Identity": "a", "Password": "hunter22"})
    msg = str(info.value)
    assert "hunter22" not in msg and "eyJhbGciOi" not in msg and "tok-" not in msg
    assert "Set-Thing" in msg and '"Identity": "a"' in msg


def test_parse_error_body_variants():
    assert parse_error_body(b"\x00\x00")["text"] == ""
    e = parse_error_body(json.dumps(exo_error("ManagementObjectNotFoundException", "gone")).encode())
    assert e["exception_type"].endswith("ManagementObjectNotFoundException") and e["text"] == "gone"
    assert parse_error_body("<html>proxy</html>")["text"] == "<html>proxy</html>"


@responses.activate
def test_json_403_is_final_at_once():
    responses.post(INVOKE, status=403, json={"error": {"code": "Forbidden", "message": "role missing"}})
    exo, s = client()
    with pytest.raises(Forbidden, match="role missing"):
        exo.invoke("Get-Mailbox", {"Identity": "a@x.com"})
    assert s.calls["Get-Mailbox"] == 1
