"""The SMTP witness (sends as evidence) against the sandbox: it sees a gap and an over-grant the moment they take
effect on the wire, keeps judging old tokens until they expire, and its answers agree with the timeline."""

from __future__ import annotations

import base64
import json

import pytest

from migrator.sandbox import Clock, SandboxSettings
from migrator.sandbox.server import start_sandbox
from migrator.smtp.probe import DENIED, GRANTED, ProbeAnswer
from migrator.smtp.witness import SmtpWitness, WitnessPair, choose_pairs, sandbox_witness, token_expiry
from tests.sandbox_tenant import BILLING, CRM, fixture

SECRETS = {BILLING: "billing-witness-s3cret", CRM: "crm-witness-s3cret"}


def test_choose_pairs_takes_each_apps_reach_and_others_in_a_stable_order():
    pairs = choose_pairs({"a": {"m2", "m1", "m3"}, "b": {"m4"}}, ["m1", "m2", "m3", "m4", "m5"], inside=2, outside=1)
    assert pairs == [WitnessPair("a", "m1", True), WitnessPair("a", "m2", True), WitnessPair("a", "m4", False),
                     WitnessPair("b", "m4", True), WitnessPair("b", "m1", False)]


def test_a_pair_already_unlike_its_expectation_at_the_start_is_not_judged():
    answers = iter([DENIED, DENIED, GRANTED])
    token = "x." + base64.urlsafe_b64encode(json.dumps({"exp": 10**10}).encode()).decode().rstrip("=") + ".y"
    assert token_expiry(token) == 10**10
    witness = SmtpWitness([WitnessPair("a", "m1", True)], lambda app: token,
                          lambda m, t: ProbeAnswer(next(answers), 0, "", "auth"), now=lambda: 0.0)
    for _ in range(3):
        witness.round()
    assert witness.report.unjudged == [("a", "m1")] and witness.report.gaps == []


def test_a_refusal_of_an_expired_token_is_retried_and_never_judged():
    expired = "x." + base64.urlsafe_b64encode(json.dumps({"exp": 5}).encode()).decode().rstrip("=") + ".y"
    fetched = []

    def fetch(app):
        fetched.append(app)
        return expired

    witness = SmtpWitness([WitnessPair("a", "m1", True)], fetch, lambda m, t: ProbeAnswer(DENIED, 535, "", "auth"),
                          now=lambda: 10.0)
    witness.round()
    assert witness.report.gaps == [] and len(witness.report.errors) == 1 and len(fetched) == 5


@pytest.mark.integration
def test_witness_catches_a_gap_and_an_over_grant_on_the_wire(tmp_path):
    data = fixture()
    for app in data["apps"]:
        app["secret"] = SECRETS.get(app["app_id"])
    settings = SandboxSettings(propagation_delay=600.0, token_lifetime=3600.0, sendas_delay=0.0,
                               graph_replication_delay=0.0)  # the grant changes below reach the data plane at once
    with start_sandbox(data, clock=Clock.manual(), settings=settings, run_dir=tmp_path / "sb") as sb:
        clock = sb.state.clock
        witness = sandbox_witness(sb, SECRETS, tmp_path, now=clock.now, inside=3, outside=2)
        witness.round()  # the answers before anything changes
        assert witness.report.ok and witness.report.granted > 0 and witness.report.denied > 0
        clock.advance(1)  # on a manual clock, a change at the very instant of an answer would be ambiguous
        billing_out = next(p for p in witness.pairs if p.app_id == BILLING and not p.expected)
        crm_in = next(p for p in witness.pairs if p.app_id == CRM and p.expected)
        admin = sb.state.admin_caller()
        sb.state.invoke("Add-RecipientPermission", {"Identity": billing_out.mailbox, "AccessRights": "SendAs",
                                                    "Trustee": sb.state.apps[BILLING].object_id, "Confirm": False},
                        caller=admin)
        sb.state.invoke("Remove-RecipientPermission", {"Identity": crm_in.mailbox, "AccessRights": "SendAs",
                                                       "Trustee": sb.state.apps[CRM].object_id, "Confirm": False},
                        caller=admin)
        witness.round()
        report = witness.report
        assert {(a, m) for a, m, _ in report.overgrants} == {(BILLING, billing_out.mailbox)}
        assert {(a, m) for a, m, _ in report.gaps} == {(CRM, crm_in.mailbox)}
        assert not report.ok
        # Tokens are held until they expire on the tenant's clock, then renewed, as a relay does.
        first = witness._tokens[BILLING][0]
        clock.advance(3601)
        witness.round()
        assert witness._tokens[BILLING][0] != first and token_expiry(witness._tokens[BILLING][0]) > clock.now()
        assert sb.smtp_disagreements() == []  # every answer is what the timeline predicts
        assert all(a.token_iat is not None for a in sb.smtp.attempts)  # no expired token was ever sent
