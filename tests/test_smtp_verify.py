"""`migrator verify-smtp`: the sample, the retry schedule, the credentials file, and the command against the sandbox
with two apps' own credentials (real msal tokens, real SMTP client)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.cli import main
from migrator.errors import InputError
from migrator.planner.plan import load_plan
from migrator.sandbox.server import load_fixture_data, start_sandbox
from migrator.smtp.credentials import load_app_credentials
from migrator.smtp.probe import DENIED, GRANTED, ProbeAnswer
from migrator.smtp.verify import GAP, OK, OVER_GRANT, Pair, app_sets, sample_pairs, verify_pairs

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "plans" / "contoso"


def _answer(outcome: str) -> ProbeAnswer:
    code = 235 if outcome == GRANTED else 535
    return ProbeAnswer(outcome, code, "5.7.3 Authentication unsuccessful" if code == 535 else "2.7.0", "auth")


def test_sample_is_inside_and_outside_each_app_set_and_stable():
    plan = load_plan(PLAN)
    batch = plan.batches[1]
    pairs = sample_pairs(plan, batch.number, batch.apps, per_app=3)
    sets = app_sets(plan)
    assert {p.app_id for p in pairs} == set(batch.apps)
    for p in pairs:
        assert (p.mailbox in sets[p.app_id]) is p.expected
    assert pairs == sample_pairs(plan, batch.number, batch.apps, per_app=3)  # the same pairs on every run
    with pytest.raises(ValueError, match="no batch 99"):
        sample_pairs(plan, 99, batch.apps)


def test_in_set_denials_are_retried_until_the_window_closes():
    clock = [0.0]
    answers = {"a@x": [DENIED, DENIED, GRANTED], "b@x": [DENIED] * 10, "c@x": [GRANTED]}
    pairs = [Pair("app", "App", "a@x", True), Pair("app", "App", "b@x", True), Pair("app", "App", "c@x", False)]

    def prober(mailbox, token):
        return _answer(answers[mailbox].pop(0))

    def sleep(seconds):
        clock[0] += seconds

    results = verify_pairs(pairs, lambda app: "token", prober, retry_for=300, retry_every=100, sleep=sleep,
                           now=lambda: clock[0])
    by_mbx = {r.pair.mailbox: r for r in results}
    assert [r.pair.mailbox for r in results] == ["a@x", "b@x", "c@x"]  # the order of the pairs
    assert (by_mbx["a@x"].verdict, by_mbx["a@x"].attempts) == (OK, 3)
    assert (by_mbx["b@x"].verdict, by_mbx["b@x"].attempts) == (GAP, 4)  # 1 + 3 retries in 300 s
    assert (by_mbx["c@x"].verdict, by_mbx["c@x"].attempts) == (OVER_GRANT, 1)  # never retried
    assert clock[0] == 300


def test_credentials_file_refuses_inline_secrets_and_unknown_keys(tmp_path):
    path = tmp_path / "apps.toml"
    path.write_text('[[app]]\napp_id = "A"\nclient_secret = "hunter2"\n', encoding="utf-8")
    with pytest.raises(InputError) as err:
        load_app_credentials(path)
    assert "app[0].client_secret" in str(err.value) and "hunter2" not in str(err.value)
    path.write_text('[[app]]\napp_id = "A"\nsecret_evn = "X"\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"app\[0\]\.secret_evn"):
        load_app_credentials(path)
    path.write_text('[[app]]\napp_id = "A"\nsecret_env = "X"\n[[app]]\napp_id = "a"\nsecret_env = "Y"\n',
                    encoding="utf-8")
    with pytest.raises(InputError, match="listed twice"):
        load_app_credentials(path)
    path.write_text('[[app]]\napp_id = "A"\nsecret_file = "s.txt"\n', encoding="utf-8")
    assert load_app_credentials(path)["a"].secret_file == str(tmp_path / "s.txt")  # relative to the file


@pytest.mark.integration
def test_verify_smtp_against_the_sandbox(tmp_path, monkeypatch):
    plan = load_plan(PLAN)
    batch = next(b for b in plan.batches if len(b.apps) >= 2)
    first, second = sorted(batch.apps)[:2]
    secrets = {first: "first-app-s3cret-4f9a", second: "second-app-s3cret-77c1"}
    data = load_fixture_data(None)
    for app in data["apps"]:
        if app["app_id"] in secrets:
            app["secret"] = secrets[app["app_id"]]
    (tmp_path / "second.secret").write_text(secrets[second], encoding="utf-8")
    monkeypatch.setenv("FIRST_APP_SECRET", secrets[first])
    creds = tmp_path / "apps.toml"
    creds.write_text(f'[[app]]\napp_id = "{first}"\nsecret_env = "FIRST_APP_SECRET"\n\n'
                     f'[[app]]\napp_id = "{second}"\nsecret_file = "second.secret"\n', encoding="utf-8")
    runner = CliRunner()
    from migrator.sandbox.settings import SandboxSettings

    # the grant changes below must reach the data plane at once (no legacy-grant delay)
    with start_sandbox(data, run_dir=tmp_path / "sb", settings=SandboxSettings(sendas_delay=0.0)) as sb:
        args = ["verify-smtp", str(PLAN), "--batch", str(batch.number), "--profile", str(sb.profile_path),
                "--app-credentials", str(creds), "--per-app", "3"]
        ok = runner.invoke(main, [*args, "--json"])
        assert ok.exit_code == 0, ok.output
        report = json.loads(ok.output)
        assert report["ok"] and {p["app_id"] for p in report["pairs"]} == {first, second}
        assert {(p["expected"], p["code"]) for p in report["pairs"]} == {("granted", 235), ("denied", 535)}

        # Break one in-set pair (its legacy grant removed) and open one out-of-set pair (a SendAs added).
        pairs = sample_pairs(plan, batch.number, [first], per_app=3)
        gone = next(p for p in pairs if p.expected)
        extra = next(p for p in pairs if not p.expected)
        sp = sb.state.apps[first].object_id
        admin = sb.state.admin_caller()
        sb.state.invoke("Remove-RecipientPermission", {"Identity": gone.mailbox, "Trustee": sp,
                                                       "AccessRights": "SendAs", "Confirm": False}, caller=admin)
        sb.state.invoke("Add-RecipientPermission", {"Identity": extra.mailbox, "Trustee": sp,
                                                    "AccessRights": "SendAs", "Confirm": False}, caller=admin)
        bad = runner.invoke(main, args)
    assert bad.exit_code == 1
    assert "gap" in bad.output and gone.mailbox in bad.output
    assert "over-grant" in bad.output and extra.mailbox in bad.output
    for secret in secrets.values():
        assert secret not in ok.output and secret not in bad.output
