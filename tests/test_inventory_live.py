"""The live inventory against the sandbox tenant, in-process over HTTPS, through msal and the real clients.

With throttling, transient 500/503, dropped connections and latency on, the inventory read live must equal the
sandbox's ground truth (computed here from the fixture) and the inventory of the same tenant's PowerShell exports.
Bad credentials, a missing role (403), an unreachable host and a TLS failure give a message for the admin, a
non-zero exit and no secret.
"""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrator.errors import TenantError
from migrator.exchange.errors import AuthError, Forbidden, Unreachable
from migrator.exchange.profile import load_profile
from migrator.inventory.exports import inventory_from_exports
from migrator.inventory.store import read_inventory
from migrator.inventory.tenant import live_inventory
from migrator.model import Right
from migrator.sandbox.truth import ground_truth

# pytest-timeout's default `signal` method made the threaded fan-out here ~4x slower (measured: 40 s vs 9.5 s for
# the per-mailbox run); the `thread` method does not.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="thread")]

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "migrator" / "samples" / "contoso" / "tenant.json"
EXPORTS = ROOT / "migrator" / "samples" / "contoso" / "exports"


def _faults():
    from migrator.sandbox.faults import FaultProfile

    # Everything the issue asks for, at rates high enough to hit every retry path in a few hundred calls.
    return FaultProfile(name="inventory-chaos", latency_mean_ms=2, latency_jitter_ms=2, throttle_rate=120,
                        throttle_burst=5, throttle_no_retry_after=0.3, throttle_concurrency_text=0.3,
                        transient_rate=0.06, drop_rate=0.05, max_concurrent=6)


@pytest.fixture(scope="module")
def chaos_sandbox():
    from migrator.sandbox.server import start_sandbox

    sb = start_sandbox(FIXTURE, seed=7, faults=_faults())
    try:
        yield sb
    finally:
        sb.stop()


def as_set(inv):
    return {(g.app_id, g.mailbox, g.right.value) for g in inv.grants}


@pytest.mark.parametrize("fullaccess", ["scan", "per-mailbox"])
def test_live_inventory_equals_ground_truth_and_exports(chaos_sandbox, tmp_path, fullaccess):
    before = dict(chaos_sandbox.faults.counts)
    chaos_sandbox.faults.queue("drop", "transient", "throttle")  # the random rates alone can miss one in a short run
    out = tmp_path / "inv"
    inv = live_inventory(chaos_sandbox.profile_path, out, progress=False, allow_unknown_trustees=True,
                         fullaccess=fullaccess, session_options={"backoff_cap": 2.0})  # keeps the test short
    truth = ground_truth(json.loads(FIXTURE.read_text()))
    assert as_set(inv) == truth
    assert any(g.right is Right.FULL_ACCESS for g in inv.grants) and any(g.right is Right.SEND_AS for g in inv.grants)

    exported = inventory_from_exports(EXPORTS, allow_unknown_trustees=True)
    assert as_set(inv) == as_set(exported)
    assert {(s.app_id, s.object_id, s.display_name) for s in inv.service_principals} == \
        {(s.app_id, s.object_id, s.display_name) for s in exported.service_principals}
    assert inv.app_permissions_known and exported.app_permissions_known
    assert set(inv.app_permissions) == set(exported.app_permissions)
    assert {(m.address, m.external_id, m.dn, m.attributes) for m in inv.mailboxes} == \
        {(m.address, m.external_id, m.dn, m.attributes) for m in exported.mailboxes}
    assert {(g.address, g.dn, g.members) for g in inv.groups} == {(g.address, g.dn, g.members) for g in exported.groups}
    skipped_live = {s["class"]: s["count"] for s in inv.manifest["skipped"]}
    skipped_exp = {s["class"]: s["count"] for s in exported.manifest["skipped"]}
    for cls in ("deny", "denied_allow", "orphaned_sid", "human_delegate"):
        assert skipped_live.get(cls) == skipped_exp.get(cls), cls

    # the folder on disk: same grants, manifest says where it came from and what it cost
    back = read_inventory(out)
    assert as_set(back) == truth
    manifest = back.manifest
    assert manifest["source"] == "tenant" and manifest["sources"][0]["tenant_id"] == chaos_sandbox.tenant_id
    calls = manifest["api_calls"]
    if fullaccess == "scan":
        assert manifest["strategy"]["fullaccess"].startswith("scan")
        assert sum(calls.values()) < len(inv.mailboxes) / 3  # never a query per mailbox
    else:
        assert calls["Get-MailboxPermission"] >= len(inv.mailboxes)
    assert any(p == "SMTP.SendAsApp" for _, _, p in back.app_permissions)
    # the faults really happened during this run, and were absorbed
    fired = {k: v - before.get(k, 0) for k, v in chaos_sandbox.faults.counts.items()}
    assert manifest["api"]["retries"] > 0
    assert fired.get("throttle", 0) + fired.get("concurrency", 0) + fired.get("throttle_inner", 0) > 0, fired
    assert fired.get("drop", 0) + fired.get("transient", 0) > 0, fired
    if fullaccess == "per-mailbox":  # enough calls for every kind
        assert all(fired.get(k, 0) > 0 for k in ("throttle", "drop", "transient")), fired


def _profile_copy(sb, tmp_path: Path, **changes) -> Path:
    import tomllib

    import tomli_w

    data = tomllib.loads(Path(sb.profile_path).read_text())
    cred = changes.pop("credential", None)
    data.update(changes)
    if cred is not None:
        data["credential"] = cred
    for key in [k for k, v in data.items() if v is None]:
        del data[key]
    path = tmp_path / "profile.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.fixture(scope="module")
def calm_sandbox():
    from migrator.sandbox.server import start_sandbox

    sb = start_sandbox(FIXTURE, seed=1, faults="none")
    try:
        yield sb
    finally:
        sb.stop()


def _run_cli(profile: Path, out: Path):
    from migrator.cli import main

    return CliRunner().invoke(main, ["inventory", "--profile", str(profile), "--out", str(out)])


def test_bad_secret_is_an_auth_error_with_a_hint_and_no_secret(calm_sandbox, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("definitely-wrong-secret-value")
    prof = _profile_copy(calm_sandbox, tmp_path, credential={"kind": "secret", "secret_file": str(secret)})
    with pytest.raises(AuthError) as info:
        live_inventory(prof, tmp_path / "out", progress=False)
    msg = str(info.value)
    assert "secret" in msg and str(secret) in msg
    assert "definitely-wrong-secret-value" not in msg and calm_sandbox.client_secret not in msg
    assert not (tmp_path / "out").exists()


def test_missing_role_is_forbidden_naming_what_to_grant(tmp_path):
    from migrator.sandbox.server import start_sandbox

    data = json.loads(FIXTURE.read_text())
    data = copy.deepcopy(data)
    data["admin"]["directory_roles"] = []
    sb = start_sandbox(data, seed=1, faults="none")
    try:
        with pytest.raises(Forbidden) as info:
            live_inventory(sb.profile_path, tmp_path / "out", progress=False)
        msg = str(info.value)
        assert "Exchange.ManageAsApp" in msg and ("Exchange Administrator" in msg or "Global Reader" in msg)
        assert sb.client_secret not in msg
        assert info.value.exit_code != 0
    finally:
        sb.stop()


def test_unreachable_host_names_it(calm_sandbox, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prof = _profile_copy(calm_sandbox, tmp_path, exchange_url=f"https://127.0.0.1:{port}",
                         graph_url=f"https://127.0.0.1:{port}")
    with pytest.raises(Unreachable) as info:
        live_inventory(prof, tmp_path / "out", progress=False)
    assert "127.0.0.1" in str(info.value) and "check" in str(info.value)


def test_tls_failure_says_to_check_the_ca_bundle(calm_sandbox, tmp_path):
    prof = _profile_copy(calm_sandbox, tmp_path, ca_bundle=None)  # system CAs do not know the sandbox's CA
    with pytest.raises(Unreachable) as info:
        live_inventory(prof, tmp_path / "out", progress=False)
    msg = str(info.value)
    assert "TLS" in msg and "ca_bundle" in msg


def test_cli_exit_codes_and_messages(calm_sandbox, tmp_path):
    from migrator.cli import main

    assert "inventory" in main.commands
    ok = _run_cli(Path(calm_sandbox.profile_path), tmp_path / "good")
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "good" / "grants.csv").exists()
    secret = tmp_path / "secret"
    secret.write_text("definitely-wrong-secret-value")
    prof = _profile_copy(calm_sandbox, tmp_path, credential={"kind": "secret", "secret_file": str(secret)})
    bad = _run_cli(prof, tmp_path / "bad")
    assert bad.exit_code == TenantError.exit_code
    assert "Error:" in bad.output and "definitely-wrong-secret-value" not in bad.output
    assert not (tmp_path / "bad").exists()


def test_profile_of_the_sandbox_loads(calm_sandbox):
    p = load_profile(calm_sandbox.profile_path)
    assert p.ca_bundle and not p.authority_is_microsoft


def test_two_apps_with_one_display_name_are_told_apart_by_per_sp_queries(tmp_path):
    """Trustees shown by display name, two SPs sharing one: the live path asks per SP (by ObjectId), checks the
    answers add up to the scan, and attributes each grant to the right app."""
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    data = json.loads(FIXTURE.read_text())
    holders = {}
    for r in data["recipient_permissions"] + data["mailbox_permissions"]:
        who = r.get("trustee") or r.get("user")
        if "app" in who:
            holders[who["app"]] = holders.get(who["app"], 0) + 1
    fa_apps = {(r["user"])["app"] for r in data["mailbox_permissions"] if "app" in r["user"]}
    first = next(a for a in data["apps"] if a["app_id"] in fa_apps)
    second = next(a for a in data["apps"] if a["app_id"] in holders and a is not first)
    shared = "EXO SP for Shared Relay"  # the pointers' DisplayName (what permission rows show), not the Entra name
    first["exchange_display_name"] = second["exchange_display_name"] = shared
    sb = start_sandbox(data, seed=3, faults="none", settings=SandboxSettings(trustee_display="display_name"))
    try:
        inv = live_inventory(sb.profile_path, tmp_path / "inv", progress=False, allow_unknown_trustees=True)
    finally:
        sb.stop()
    assert as_set(inv) == ground_truth(data)
    checks = inv.manifest["strategy"]["checks"]["ambiguous_sp_names"]
    assert checks["sendas"]["unresolved"] == [] and checks["sendas"]["names"] == [shared.lower()]
    assert checks["fullaccess"]["unresolved"] == [] and checks["fullaccess"]["pairs"] >= 2


def _jittered_http(monkeypatch, seed: int, profile_path) -> list[str]:
    """Every HTTP request to the tenant's APIs sleeps a random 0-30 ms first (reads finish in a different order on
    every seed); returns the list the requests are recorded in (an independent count of the API calls)."""
    import random
    import threading
    import time

    import requests

    prof = load_profile(profile_path)
    prefixes = (prof.invoke_url.split("?")[0], prof.graph_base.rstrip("/"))
    rng, lock, sent = random.Random(seed), threading.Lock(), []
    real = requests.Session.request

    def request(self, method, url, *args, **kw):
        if str(url).startswith(prefixes):
            with lock:
                delay = rng.random() * 0.03
                sent.append(url)
            time.sleep(delay)
        return real(self, method, url, *args, **kw)

    monkeypatch.setattr(requests.Session, "request", request)
    return sent


def test_concurrent_reads_give_the_same_folder_whatever_order_they_finish_in(calm_sandbox, tmp_path, monkeypatch):
    """The reads run concurrently; the folder must not depend on which finished first, and the manifest's api_calls
    must count every request actually sent."""
    folders, calls = [], []
    for seed in (1, 2):
        sent = _jittered_http(monkeypatch, seed, calm_sandbox.profile_path)
        out = tmp_path / f"inv{seed}"
        live_inventory(calm_sandbox.profile_path, out, progress=False, allow_unknown_trustees=True)
        manifest = json.loads((out / "manifest.json").read_text())
        assert sum(manifest["api_calls"].values()) == len(sent) > 0
        calls.append(manifest["api_calls"])
        folders.append({p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name != "manifest.json"})
        for key in ("created", "api"):
            manifest.pop(key)
        folders[-1]["manifest"] = manifest
    assert folders[0] == folders[1]
    assert calls[0] == calls[1]


@pytest.mark.parametrize("where", ["groups", "group_members", "app_permissions"])
def test_one_failed_read_among_concurrent_ones_aborts_everything(calm_sandbox, tmp_path, monkeypatch, where):
    """A read failing while others are in flight (a listing, a fan-out that waits on one, a Graph batch): that
    error is raised, and nothing is written (never an inventory missing that part)."""
    from migrator.exchange.errors import ServerError
    from migrator.exchange.exo import ExchangeClient
    from migrator.exchange.graph import GraphClient

    boom = ServerError(f"HTTP 503 server error after 10 attempts ({where})", status=503, operation=where)

    def fail(*_a, **_k):
        raise boom

    target = {"groups": (ExchangeClient, "get_distribution_groups"),
              "group_members": (ExchangeClient, "get_group_members"),
              "app_permissions": (GraphClient, "list_app_role_assignments_many")}[where]
    monkeypatch.setattr(*target, fail)
    out = tmp_path / "inv"
    with pytest.raises(ServerError) as info:
        live_inventory(calm_sandbox.profile_path, out, progress=False, allow_unknown_trustees=True)
    assert info.value is boom
    assert not out.exists()


def test_after_a_failed_read_no_new_calls_start(calm_sandbox, tmp_path, monkeypatch):
    """Once one read has failed, reads that were waiting on another one do not start their calls (the group-member
    fan-out here): the inventory is abandoned, not read on to completion."""
    import threading

    import requests

    from migrator.exchange.errors import ServerError
    from migrator.exchange.exo import ExchangeClient
    from migrator.inventory import tenant

    runs: list[tenant._Reads] = []

    class WatchedReads(tenant._Reads):  # the real scheduler, whose abort flag the listing waits for
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            runs.append(self)

    monkeypatch.setattr(tenant, "_Reads", WatchedReads)
    listed, failed = threading.Event(), threading.Event()
    boom = ServerError("HTTP 503 server error after 10 attempts", status=503, operation="Get-ServicePrincipal")
    real_groups = ExchangeClient.get_distribution_groups

    def sps(self):  # fails while the groups are being listed (so the listing itself did start)
        listed.wait(10)
        failed.set()
        raise boom

    def groups(self):
        rows = real_groups(self)
        listed.set()
        failed.wait(10)
        runs[0].abort.wait(10)  # until the scheduler has recorded the failure: the fan-out must not start then
        return rows

    cmdlets = []
    real = requests.Session.request

    def request(self, method, url, *args, **kw):
        body = kw.get("json") or {}
        cmdlets.append(body.get("CmdletInput", {}).get("CmdletName", url))
        return real(self, method, url, *args, **kw)

    monkeypatch.setattr(ExchangeClient, "get_service_principals", sps)
    monkeypatch.setattr(ExchangeClient, "get_distribution_groups", groups)
    monkeypatch.setattr(requests.Session, "request", request)
    with pytest.raises(ServerError) as info:
        live_inventory(calm_sandbox.profile_path, tmp_path / "inv", progress=False, allow_unknown_trustees=True)
    assert info.value is boom
    assert "Get-DistributionGroup" in cmdlets and "Get-DistributionGroupMember" not in cmdlets
    assert not (tmp_path / "inv").exists()
