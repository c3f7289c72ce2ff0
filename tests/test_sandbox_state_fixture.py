"""Fixtures in and out of the tenant state: tolerant loading, clear errors, round trips, the synthetic generator."""

from __future__ import annotations

import json

import pytest

from migrator.sandbox import Clock, SandboxSettings, TenantState
from migrator.sandbox.fixture import FixtureError
from migrator.sandbox.synth import generate
from sandbox_tenant import BILLING, SUFFIX, fixture, make_state, run


def load(data: dict, **settings) -> TenantState:
    return TenantState.from_fixture(data, clock=Clock.manual(), settings=SandboxSettings(**settings))


def test_minimal_fixture_loads_with_defaults():
    state = load({"mailboxes": [{"primary_smtp": "Solo@Example.com"}],
                  "admin": {"client_id": "A0000000-0000-0000-0000-000000000001",
                            "app_roles": [{"resource": "Office 365 Exchange Online",
                                           "permission": "Exchange.ManageAsApp"}],
                            "directory_roles": ["Exchange Administrator"]}})
    row = run(state, "Get-Mailbox", Identity="solo")[0]
    assert row["PrimarySmtpAddress"] == "solo@example.com" and row["RecipientTypeDetails"] == "UserMailbox"
    assert row["DistinguishedName"].startswith("CN=solo,OU=contoso.onmicrosoft.com,")
    assert state.apps[state.admin_app_id].secret  # generated when the fixture leaves it null
    again = load({"mailboxes": [{"primary_smtp": "solo@example.com"}]})
    assert again.recipients.keys() == state.recipients.keys()  # ids derived deterministically


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d["mailboxes"][0].pop("primary_smtp"), "mailboxes[0]: missing 'primary_smtp'"),
    (lambda d: d["mailboxes"].append(dict(d["mailboxes"][0])), "already used"),
    (lambda d: d["groups"][0]["members"].append("ghost@contoso.com"), "member 'ghost@contoso.com' is unknown"),
    (lambda d: d["recipient_permissions"][0].update(trustee={"app": "nope"}), "trustee app 'nope'"),
    (lambda d: d["recipient_permissions"][0].update(mailbox="ghost@contoso.com"), "recipient_permissions[0]"),
    (lambda d: d["management_scopes"].append({"name": "S", "filter": "Department -eq"}), "bad filter"),
    (lambda d: d["role_assignments"].append({"name": "A", "role": "Application SMTP.SendAsApp",
                                             "app": BILLING, "custom_resource_scope": "nope"}), "unknown scope"),
    (lambda d: d["apps"][0]["app_roles"].append({"resource": "Nope", "permission": "x"}), "unknown resource"),
    (lambda d: d.update(format=9), "format 9"),
])
def test_bad_fixture_names_the_entry(mutate, needle):
    data = fixture()
    mutate(data)
    with pytest.raises(FixtureError, match=None) as info:
        load(data)
    assert needle in str(info.value)


def test_round_trip_keeps_everything_the_cmdlets_show():
    state = make_state()
    run(state, "New-DistributionGroup", Name="Billing Senders", Type="Security", Members=["adele.vance"])
    run(state, "New-ManagementScope", Name="S", RecipientRestrictionFilter=f"MemberOfGroup -eq 'CN=Billing "
        f"Senders,{SUFFIX}'")
    run(state, "New-ManagementRoleAssignment", Name="A", Role="Application SMTP.SendAsApp", App=BILLING,
        CustomResourceScope="S")
    run(state, "New-ManagementRoleAssignment", Name="B", Role="Application Mail.Send", App=BILLING,
        RecipientGroupScope="sales-senders")
    dumped = json.loads(json.dumps(state.to_fixture()))
    copy = load(dumped)
    assert copy.to_fixture() == dumped
    for cmdlet in ("Get-Mailbox", "Get-DistributionGroup", "Get-RecipientPermission", "Get-MailboxPermission",
                   "Get-ManagementScope", "Get-ServicePrincipal", "Get-ApplicationAccessPolicy"):
        assert list(run(copy, cmdlet, ResultSize="Unlimited") if "Scope" not in cmdlet and "Service" not in
                    cmdlet and "Policy" not in cmdlet else run(copy, cmdlet)) == \
            list(run(state, cmdlet, ResultSize="Unlimited") if "Scope" not in cmdlet and "Service" not in
                 cmdlet and "Policy" not in cmdlet else run(state, cmdlet)), cmdlet
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("WhenCreated")} for r in rows]  # noqa
    assert strip(run(copy, "Get-ManagementRoleAssignment")) == strip(run(state, "Get-ManagementRoleAssignment"))
    assert copy.effective_rbac(copy.apps[BILLING]) == {"adele.vance@contoso.com"}


def test_bundled_sample_tenant_loads(root):
    path = root / "migrator" / "samples" / "contoso" / "tenant.json"
    state = load(json.loads(path.read_text(encoding="utf-8")))
    rows = run(state, "Get-RecipientPermission", ResultSize="Unlimited")
    assert rows and len(rows) == len(state.recipient_permissions)
    assert load(state.to_fixture()).to_fixture() == state.to_fixture()


def test_synthetic_tenant_is_seeded_and_realistic():
    a = generate(mailboxes=3000, apps=60, seed=7)
    assert a == generate(mailboxes=3000, apps=60, seed=7)
    assert a != generate(mailboxes=3000, apps=60, seed=8)
    assert len(a["mailboxes"]) == 3000 and len([x for x in a["apps"] if x["exchange_pointer"]]) == 60
    trustees = [r["trustee"] for r in a["recipient_permissions"]]
    assert any("self" in t for t in trustees) and any("sid" in t for t in trustees)
    assert any("mailbox" in t for t in trustees)
    assert any(r["access_control_type"] == "Deny" for r in a["recipient_permissions"])
    assert any(r["is_inherited"] for r in a["recipient_permissions"])
    state = load(a)
    sets = {}
    for app in state.apps.values():
        if app.exchange_pointer and not app.is_admin:
            sets[app.app_id] = frozenset(state.effective_sendas(app))
    assert sum(1 for s in sets.values() if s) >= 55  # nearly every app sends as something
    assert len(set(sets.values())) < len(sets)  # some apps share exactly the same set (overlap)
    # some app's set is exactly one team: an attribute scope covers it
    team_sets = {}
    for r in state.recipients.values():
        if r.kind == "mailbox":
            team_sets.setdefault(r.attributes["CustomAttribute3"], set()).add(r.primary_smtp)
    assert any(s in {frozenset(t) for t in team_sets.values()} for s in sets.values())


def test_secrets_stay_out_of_dumps_and_reprs():
    state = make_state()
    admin = state.apps[state.admin_app_id]
    assert admin.secret == "s3cret-admin"
    assert "s3cret-admin" not in json.dumps(state.to_fixture()) and "s3cret-admin" not in repr(admin)
    assert state.to_fixture(include_secrets=True)["admin"]["secret"] == "s3cret-admin"
    reloaded = load(state.to_fixture())
    assert reloaded.apps[state.admin_app_id].secret not in (None, "", "s3cret-admin")  # a fresh one
