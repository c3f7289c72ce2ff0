"""The sandbox's SMTP endpoint, driven by a real SMTP client (smtplib) through STARTTLS and AUTH XOAUTH2 with tokens
from the sandbox's token endpoint (msal): the answers Exchange Online gives, and the same pairs changing answer
across a migration exactly as the timeline predicts (claim, legacy grant, RBAC propagation, token age)."""

from __future__ import annotations

import dataclasses
import smtplib
import ssl
from email.message import EmailMessage

import pytest

from migrator.exchange.auth import TokenProvider
from migrator.exchange.profile import Credential, load_profile
from migrator.sandbox import Clock, SandboxSettings
from migrator.sandbox.server import start_sandbox
from migrator.smtp.probe import DENIED, DISABLED, GRANTED, probe, xoauth2_initial_response
from tests.sandbox_tenant import BILLING, CRM, fixture

pytestmark = pytest.mark.integration

SECRETS = {BILLING: "billing-s3cret-value", CRM: "crm-s3cret-value"}
PROPAGATION = 600.0
LIFETIME = 3600.0


@pytest.fixture
def smtp_sandbox(tmp_path):
    data = fixture()
    for app in data["apps"]:
        app["secret"] = SECRETS.get(app["app_id"])
    # legacy grants and Graph assignment writes take effect at once here: the test follows each change step by step
    settings = SandboxSettings(propagation_delay=PROPAGATION, token_lifetime=LIFETIME, sendas_delay=0.0,
                               graph_replication_delay=0.0)
    with start_sandbox(data, clock=Clock.manual(), settings=settings, run_dir=tmp_path / "sb") as sb:
        yield sb


def app_token(sb, app_id: str, tmp_path) -> str:
    """A fresh access token for the app (client credentials through msal), for https://outlook.office365.com."""
    secret_file = tmp_path / f"{app_id}.secret"
    secret_file.write_text(SECRETS[app_id], encoding="utf-8")
    admin = load_profile(sb.profile_path)
    profile = dataclasses.replace(admin, client_id=app_id,
                                  credential=Credential(kind="secret", secret_file=str(secret_file)))
    return TokenProvider(profile).token(profile.exchange_resource, force_refresh=True)


def ask(sb, mailbox: str, token: str):
    host, port = sb.smtp_address
    return probe(host, port, mailbox, token, ca_bundle=str(sb.ca_bundle))


def predicted(sb, app_id: str, mailbox: str) -> bool:
    """What the timeline says for the last AUTH the endpoint recorded (same token, same instant)."""
    attempt = sb.smtp.attempts[-1]
    assert (attempt.app_id, attempt.mailbox) == (app_id, mailbox)
    return sb.state.can_send_as(app_id, mailbox, token_claim=attempt.token_claim,
                                token_issued_at=attempt.token_iat, at=attempt.t)


def test_answers_as_exchange_online(smtp_sandbox, tmp_path):
    sb = smtp_sandbox
    token = app_token(sb, BILLING, tmp_path)
    inside = ask(sb, "bob.obrien@contoso.com", token)
    assert (inside.outcome, inside.code, inside.enhanced) == (GRANTED, 235, "2.7.0")
    outside = ask(sb, "carol.diaz@contoso.com", token)
    assert (outside.outcome, outside.code, outside.enhanced) == (DENIED, 535, "5.7.3")
    unknown = ask(sb, "nobody@contoso.com", token)
    assert unknown.outcome == DENIED
    forged = ask(sb, "bob.obrien@contoso.com", token[:-4] + "AAAA")
    assert forged.outcome == DENIED
    # Every answer is on record with the app and the mailbox, never the token.
    assert [a.code for a in list(sb.smtp.attempts)[-4:]] == [235, 535, 535, 535]
    assert token not in repr(list(sb.smtp.attempts)) and token not in str(sb.state.timeline.to_dict())


def test_starttls_is_required_before_auth(smtp_sandbox, tmp_path):
    sb = smtp_sandbox
    host, port = sb.smtp_address
    with smtplib.SMTP(host, port, timeout=10) as client:
        client.ehlo()
        assert "auth" not in client.esmtp_features  # AUTH is only offered after STARTTLS
        code, _ = client.docmd("AUTH", "XOAUTH2 " + xoauth2_initial_response("bob.obrien@contoso.com", "x"))
        assert code == 530


def test_send_as_another_address_needs_send_as(smtp_sandbox, tmp_path):
    sb = smtp_sandbox
    token = app_token(sb, BILLING, tmp_path)
    host, port = sb.smtp_address
    context = ssl.create_default_context(cafile=str(sb.ca_bundle))

    def send(mailbox: str, from_address: str):
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = from_address, "erin.li@contoso.com", "sandbox"
        msg.set_content("hello")
        with smtplib.SMTP(host, port, timeout=10) as client:
            client.starttls(context=context)
            client.ehlo()
            code, _ = client.docmd("AUTH", "XOAUTH2 " + xoauth2_initial_response(mailbox, token))
            assert code == 235
            return client.send_message(msg, from_addr=from_address)

    assert send("bob.obrien@contoso.com", "bob.obrien@contoso.com") == {}
    with pytest.raises(smtplib.SMTPDataError) as refused:  # bob holds no SendAs on adele
        send("bob.obrien@contoso.com", "adele.vance@contoso.com")
    assert refused.value.smtp_code == 554 and b"SendAsDeniedException" in refused.value.smtp_error
    assert sb.smtp.messages[-1]["mail_from"] == "bob.obrien@contoso.com"  # only the accepted one was kept


def test_smtp_auth_disabled_for_tenant_and_mailbox(tmp_path):
    data = fixture()
    for app in data["apps"]:
        app["secret"] = SECRETS.get(app["app_id"])
    data["tenant"]["smtp_client_authentication_disabled"] = True
    for mbx in data["mailboxes"]:
        if mbx["primary_smtp"] == "adele.vance@contoso.com":
            mbx["smtp_client_authentication_disabled"] = False  # the mailbox's own setting wins
    with start_sandbox(data, clock=Clock.manual(), run_dir=tmp_path / "sb") as sb:
        token = app_token(sb, BILLING, tmp_path)
        off = ask(sb, "bob.obrien@contoso.com", token)
        assert (off.outcome, off.code, off.enhanced) == (DISABLED, 535, "5.7.139")
        assert ask(sb, "adele.vance@contoso.com", token).outcome == GRANTED
        # The switch survives a save and a reload of the tenant.
        saved = sb.state.to_fixture()
        assert saved["tenant"]["smtp_client_authentication_disabled"] is True


def _run(sb, cmdlet: str, **params):
    return sb.state.invoke(cmdlet, params, caller=sb.state.admin_caller())


def test_answers_follow_a_migration_as_the_timeline_predicts(smtp_sandbox, tmp_path):
    """SendAs → RBAC for one app, step by step: every AUTH answer equals the timeline's prediction for the same
    token and instant, and the expected answer written out by hand (so a wrong data plane fails too)."""
    sb = smtp_sandbox
    clock = sb.state.clock
    bob, carol = "bob.obrien@contoso.com", "carol.diaz@contoso.com"

    def check(mailbox: str, token: str, expected: bool) -> None:
        answer = ask(sb, mailbox, token)
        assert answer.outcome == (GRANTED if expected else DENIED), (mailbox, answer)
        assert predicted(sb, BILLING, mailbox) is expected

    old = app_token(sb, BILLING, tmp_path)  # carries the SMTP.SendAsApp claim
    check(bob, old, True)
    check(carol, old, False)

    # RBAC for bob only: a group, a scope on its DN, the role assignment.
    group = _run(sb, "New-DistributionGroup", Name="mig-billing", Type="Security", Members=[bob])[0]
    _run(sb, "New-ManagementScope", Name="mig-billing-scope",
         RecipientRestrictionFilter=f"MemberOfGroup -eq '{group['DistinguishedName']}'")
    _run(sb, "New-ManagementRoleAssignment", Name="mig-billing-ra", Role="Application SMTP.SendAsApp",
         App=sb.state.apps[BILLING].object_id, CustomResourceScope="mig-billing-scope")

    # Cut-over before propagation: a new token lacks the claim and the RBAC role has not reached the data plane.
    resource = sb.state.resources["Office 365 Exchange Online"]
    sp = sb.state.apps[BILLING].object_id
    for assignment_id, row in list(sb.state.app_role_assignments[sp].items()):
        if row["resourceId"] == resource["id"]:
            sb.state.graph("delete_app_role_assignment", sp, assignment_id,
                           caller=sb.state.admin_caller("https://graph.microsoft.com"))
    new = app_token(sb, BILLING, tmp_path)
    check(bob, new, False)  # a gap a real send would see: this is why the executor waits for propagation
    check(bob, old, True)   # the old token still carries the claim and the SendAs grant serves it

    clock.advance(PROPAGATION + 1)
    check(bob, new, True)   # RBAC has propagated
    check(carol, new, False)

    # The legacy grant goes; the old token (claim, documented rule: needs SendAs) stops working, the new one works.
    _run(sb, "Remove-RecipientPermission", Identity=bob, Trustee=sp, AccessRights="SendAs", Confirm=False)
    check(bob, old, False)
    check(bob, new, True)

    clock.advance(LIFETIME + 1)  # every token issued before has expired
    assert ask(sb, bob, new).outcome == DENIED
    check(bob, app_token(sb, BILLING, tmp_path), True)
