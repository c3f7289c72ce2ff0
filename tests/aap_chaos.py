"""One chaos case over the Graph/EWS tenant of aap_world.py (issue 16), shared by tests/test_aap_chaos.py and
bench/aap_chaos.py.

The sandbox serves the tenant with the chaos fault profile (killing.chaos_faults: throttling, transient faults,
dropped connections, NUL-byte 403s, writes applied whose answer is lost, read-after-write lag on every admin read)
and delays of about a second (propagation, token lifetime, Graph replication, access policy). Through the real CLI,
as subprocesses: `migrator inventory` (live), `migrator plan`, `migrator doctor`; then `migrator execute --all`,
SIGKILLed at random moments after its recorded writes and re-run until it exits 0; then `migrator rollback` of
every batch, last batch first, killed the same way. After each phase the facts are collected (timeline check, SMTP
and per Graph/EWS permission; the tenant's objects; the apps' consents and policies), and `problems()` says what
breaks the issue's "Done when":
- zero gaps and zero over-grants on the timeline, SMTP, IMAP/POP and per permission;
- after execute: the plan's objects exist once each, no migrated legacy grant is left; each (app, permission) of
  the plan's mail_access.csv has lost its consent and each policy of access_policies.csv is gone; every other
  consent, policy and policy group is as before (the DenyAccess and policy-less apps above all);
- after the rollback: the tenant equals its prior state (grants, consents, pointers, groups, scopes, assignments,
  policies and the policy groups' members).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aap_world import MIGRATED_MAIL_APPS, mail_state, make_aap_fixture
from killing import MAX_RUNS, chaos_faults, until_done
from migrator.planner.plan import KIND_GRAPH_EWS, load_plan
from sandbox_world import tenant_shape

# seconds: the kill loops of one case (execute, then every batch's rollback) share this budget; a case that needs
# longer fails rather than hang the suite.
CASE_BUDGET = float(os.environ.get("MIGRATOR_CHAOS_CASE_BUDGET", "150"))
# the sandbox's delays (seconds) and the waits the runs are told (each wait longer than the delay it covers)
DELAYS = {"propagation_delay": 0.5, "token_lifetime": 1.0, "replication_delay": 0.3, "sendas_delay": 0.3,
          "graph_replication_delay": 0.2, "access_policy_delay": 0.3}
EXECUTE_WAITS = ["--propagation-wait", "0.8", "--token-lifetime", "1.0", "--token-margin", "0.3",
                 "--readback-spacing", "0.3"]
ROLLBACK_WAITS = ["--grant-wait", "0.5", "--policy-wait", "0.6", "--token-lifetime", "1.0", "--token-margin", "0.3",
                  "--readback-spacing", "0.3"]


@dataclass
class Check:
    """The timeline checker's verdict at one moment: counts, and the per-permission table."""

    smtp_gaps: int = 0
    smtp_overgrants: int = 0
    imap_gaps: int = 0
    imap_overgrants: int = 0
    unserved_at_start: int = 0
    # {permission: {"pairs": (app, permission) pairs judged, "gaps": n, "overgrants": n}}
    per_permission: dict[str, dict[str, int]] = field(default_factory=dict)
    detail: dict = field(default_factory=dict)  # the report's own dict when it is not ok

    @property
    def ok(self) -> bool:
        return not (self.smtp_gaps or self.smtp_overgrants or self.imap_gaps or self.imap_overgrants
                    or any(v["gaps"] or v["overgrants"] for v in self.per_permission.values()))


@dataclass
class CaseResult:
    seed: int
    claim_rule: str
    batches: int = 0
    mail_access: list[tuple[str, str]] = field(default_factory=list)  # (app role, permission) the plan migrates
    policies: list[tuple[str, str]] = field(default_factory=list)  # (app role, access right) the plan removes
    reported: dict[str, str] = field(default_factory=dict)  # app role -> status, for apps plan.json reports only
    plan_problems: list[str] = field(default_factory=list)
    execute_runs: int = 0
    execute_kills: int = 0
    execute_seconds: float = 0.0
    rollback_runs: int = 0
    rollback_kills: int = 0
    rollback_seconds: float = 0.0
    # per kill, the journal action changed last before it ("step/kind status"): where the runs were cut
    execute_kill_points: list[str] = field(default_factory=list)
    rollback_kill_points: list[str] = field(default_factory=list)
    after_execute: Check = field(default_factory=Check)
    after_rollback: Check = field(default_factory=Check)
    execute_state_problems: list[str] = field(default_factory=list)
    rollback_state_problems: list[str] = field(default_factory=list)
    error: str = ""  # a phase that failed (an exception's text)

    def problems(self) -> list[str]:
        out = [f"error: {self.error}"] if self.error else []
        out += [f"plan: {p}" for p in self.plan_problems]
        for phase, check in (("after execute", self.after_execute), ("after rollback", self.after_rollback)):
            if not check.ok:
                out.append(f"{phase}: timeline not clean: {check.detail}")
        out += [f"after execute: {p}" for p in self.execute_state_problems]
        out += [f"after rollback: {p}" for p in self.rollback_state_problems]
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def timeline_check(state) -> Check:
    """The sandbox timeline over the whole run: SMTP/IMAP intervals, and per Graph/EWS permission the (app,
    permission) pairs judged with their gaps and over-grants."""
    from migrator.sandbox.mailaccess import original_mail_reach

    report = state.check()
    pairs: dict[str, int] = {}
    with state.timeline._lock:
        for _app, perm in original_mail_reach(state.timeline):
            pairs[perm] = pairs.get(perm, 0) + 1
    bad = report.per_permission()
    per = {p: {"pairs": n, **bad.get(p, {"gaps": 0, "overgrants": 0})} for p, n in sorted(pairs.items())}
    for p, v in bad.items():  # a permission with a bad interval but no original pair (an over-grant from nothing)
        per.setdefault(p, {"pairs": 0, **v})
    check = Check(len(report.gaps), len(report.overgrants), len(report.imap_gaps), len(report.imap_overgrants),
                  len(report.unserved_at_start), per)
    if not check.ok:
        d = report.to_dict()
        check.detail = {k: v[:5] if isinstance(v, list) else v for k, v in d.items()}
    return check


def _cli(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrator", *args], capture_output=True, text=True)


def start(tmp: Path, seed: int, claim_rule: str, *, faults=True):
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings

    fixture, ids = make_aap_fixture(seed=seed)
    # Both ways of showing an SP trustee (UNVERIFIED live, docs/exchange.md §3): one per claim rule, as test_chaos.
    settings = SandboxSettings(**DELAYS, claim_rule=claim_rule,
                               trustee_display="object_id" if claim_rule == "union" else "display_name")
    sb = start_sandbox(fixture, seed=seed, faults=chaos_faults() if faults else "none",
                       settings=settings, run_dir=tmp / "sb")
    return sb, ids


def make_plan(sb, tmp: Path) -> Path:
    """Live inventory of the sandbox (under its faults) and the planner's plan for it, through the CLI."""
    inv, plan = tmp / "inventory", tmp / "plan"
    done = _cli(["inventory", "--profile", str(sb.profile_path), "--out", str(inv)])
    assert done.returncode == 0, done.stdout + done.stderr
    done = _cli(["plan", str(inv), "--out", str(plan), "--pilot", "1", "--batch-size", "2", "--remove-fullaccess",
                 "--time-limit", "10"])
    assert done.returncode == 0, done.stdout + done.stderr
    done = _cli(["doctor", str(plan), "--profile", str(sb.profile_path)])  # execute reuses its clean doctor.json
    assert done.returncode == 0, done.stdout + done.stderr
    return plan


def execute_problems(state, plan, before_mail: dict) -> list[str]:
    """What the end state of `execute --all` gets wrong (see the module docstring)."""
    return smtp_problems(state, plan) + mail_problems(state, plan, before_mail)


def smtp_problems(state, plan) -> list[str]:
    """The plan's objects each once, no migrated legacy grant left, the kept FullAccess grants still there."""
    out: list[str] = []
    fx = state.to_fixture()
    groups = [g for g in fx.get("groups", []) if g["name"].startswith("migrator-")]
    if sorted(g["name"] for g in groups) != sorted(g.name for g in plan.groups if g.status == "new"):
        out.append(f"groups {sorted(g['name'] for g in groups)} != plan {sorted(g.name for g in plan.groups)}")
    by_name = {g.name: g for g in plan.groups}
    for g in groups:
        if g["name"] in by_name and {m.lower() for m in g["members"]} != set(by_name[g["name"]].members):
            out.append(f"group {g['name']}: members differ from the plan")
    scopes = sorted(s["name"] for s in fx.get("management_scopes", []))
    if scopes != sorted(s.name for s in plan.scopes):
        out.append(f"scopes {scopes} != plan {sorted(s.name for s in plan.scopes)}")
    assignments = sorted(a["name"] for a in fx.get("role_assignments", []))
    if assignments != sorted(a.name for a in plan.assignments):
        out.append(f"assignments {assignments} != plan {sorted(a.name for a in plan.assignments)}")
    left = [p for p in fx.get("recipient_permissions", []) if "app" in p["trustee"]]
    if left:
        out.append(f"SendAs grants left: {left[:3]}")
    full = {(p["user"]["app"], p["mailbox"]) for p in fx.get("mailbox_permissions", []) if "app" in p["user"]}
    if full != {(g.app_id, g.mailbox) for g in plan.grants if g.right == "FullAccess" and g.action == "keep"}:
        out.append(f"FullAccess left {sorted(full)}")
    return out


def mail_problems(state, plan, before_mail: dict) -> list[str]:
    """Graph/EWS: exactly the plan's consents and policies are gone; every other consent, policy and group (the
    policy groups among them) as before."""
    out: list[str] = []
    after = mail_state(state)
    gone = {(m.app_id, m.resource, m.permission) for m in plan.mail_access}
    want_roles = sorted(r for r in before_mail["app_roles"] if r not in gone)
    if after["app_roles"] != want_roles:
        extra = sorted(set(after["app_roles"]) - set(want_roles))
        missing = sorted(set(want_roles) - set(after["app_roles"]))
        out.append(f"consents: still held {extra}, lost {missing}")
    removed = {p.app_id for p in plan.policies}
    kept = [p for p in before_mail["policies"] if not any(a in p for a in removed)]
    if after["policies"] != kept:
        out.append(f"policies {after['policies']} != expected {kept}")
    if after["groups"] != before_mail["groups"]:
        out.append("a group that was there before changed (a policy group's members?)")
    mail_assignments = [a for a in plan.assignments if a.kind == KIND_GRAPH_EWS]
    if plan.mail_access and not mail_assignments:
        out.append("the plan moves Graph/EWS access but has no graph-ews assignment")
    return out


def plan_problems(plan, ids: dict[str, str]) -> list[str]:
    """What the plan of the whole tenant (Graph/EWS included) must say: the RestrictAccess apps move, each
    permission of theirs once, their policies go; the DenyAccess and the policy-less app are reported only; the
    two apps of equal reach share one scope for Mail.Read."""
    out: list[str] = []
    moved = {m.app_id for m in plan.mail_access}
    if moved != {ids[r] for r in MIGRATED_MAIL_APPS}:
        out.append(f"mail apps planned {sorted(moved)}, expected {[ids[r] for r in MIGRATED_MAIL_APPS]}")
    if {p.app_id for p in plan.policies} != {ids[r] for r in MIGRATED_MAIL_APPS}:
        out.append("the policies to remove are not exactly those of the RestrictAccess apps")
    status = {a["app_id"]: a["status"] for a in (plan.meta.get("mail_access") or {}).get("apps", [])
              if not a.get("planned")}
    if status.get(ids["denied"]) != "deny" or status.get(ids["open"]) != "tenant_wide":
        out.append(f"the DenyAccess and policy-less apps are not reported as such: {status}")
    scope_of = {(a.app_id, a.role): a.scope for a in plan.assignments if a.kind == KIND_GRAPH_EWS}
    role = "Application Mail.Read"
    if scope_of.get((ids["archiver"], role)) is None or \
            scope_of.get((ids["archiver"], role)) != scope_of.get((ids["twin"], role)):
        out.append("the two apps of equal reach do not share their Mail.Read scope")
    return out


def rollback_problems(state, before_shape: dict, before_mail: dict) -> list[str]:
    out: list[str] = []
    shape, mail = tenant_shape(state), mail_state(state)
    for key in before_shape:
        if shape[key] != before_shape[key]:
            out.append(f"{key} differ from the prior state: now {shape[key][:4]}, before {before_shape[key][:4]}")
    for key in before_mail:
        if mail[key] != before_mail[key]:
            out.append(f"{key} differ from the prior state: now {mail[key]}, before {before_mail[key]}")
    return out


def run_case(tmp: Path, seed: int, claim_rule: str, *, budget: float = CASE_BUDGET,
             execute_kills: int | None = None, rollback_kills: int | None = None, chaos: bool = True) -> CaseResult:
    """The whole case; never raises for a failed check (see CaseResult.problems), only for a broken harness.
    `execute_kills`, `rollback_kills` (per batch): at most that many SIGKILLs (None: the first half of the runs
    allowed, as test_chaos). The first run of each loop is always killed right after its first recorded change.
    `chaos` False: no faults and no kills (a clean run)."""
    result = CaseResult(seed, claim_rule)
    sb, ids = start(tmp, seed, claim_rule, faults=chaos)
    role_of = {v: k for k, v in ids.items()}
    runs_allowed = MAX_RUNS
    if not chaos:  # a clean run: no kill, and a second run only to get past a wait it was told to skip
        execute_kills, rollback_kills, runs_allowed = 0, 0, 2
    try:
        plan_path = make_plan(sb, tmp)
        plan = load_plan(plan_path)
        result.batches = len(plan.batches)
        result.mail_access = sorted((role_of.get(m.app_id, m.app_id), m.permission) for m in plan.mail_access)
        result.policies = sorted((role_of.get(p.app_id, p.app_id), p.access_right) for p in plan.policies)
        result.reported = {role_of.get(a["app_id"], a["app_id"]): a["status"]
                           for a in (plan.meta.get("mail_access") or {}).get("apps", []) if not a.get("planned")}
        result.plan_problems = plan_problems(plan, ids)
        before_shape, before_mail = tenant_shape(sb.state), mail_state(sb.state)
        rng = random.Random(f"aap-{claim_rule}-{seed}")
        deadline = time.monotonic() + budget
        execute = ["execute", str(plan_path), "--profile", str(sb.profile_path), "--all", "--yes", "--wait",
                   "--concurrency", "2", *EXECUTE_WAITS]
        t0 = time.monotonic()
        try:
            # each run is killed 0-1.5 s after it has recorded 1-4 more journal actions (or ends first)
            result.execute_runs, result.execute_kills = until_done(
                execute, rng, kill_window=(0.0, 1.5), deadline=deadline, after_writes=plan_path, nth_range=(1, 4),
                max_kills=execute_kills, first_kill_now=chaos, max_runs=runs_allowed,
                kill_points=result.execute_kill_points)
        except AssertionError as exc:
            result.error = f"execute: {str(exc)[-2000:]}"
            return result
        finally:
            result.execute_seconds = round(time.monotonic() - t0, 1)
        result.after_execute = timeline_check(sb.state)
        result.execute_state_problems = execute_problems(sb.state, plan, before_mail)
        status = _cli(["status", str(plan_path)])
        if status.returncode != 0:
            result.execute_state_problems.append(f"status exits {status.returncode}: {status.stdout[-500:]}")
        t0 = time.monotonic()
        try:
            for batch in sorted((b.number for b in plan.batches), reverse=True):
                rollback = ["rollback", str(plan_path), "--profile", str(sb.profile_path), "--batch", str(batch),
                            "--yes", "--wait", *ROLLBACK_WAITS]
                # killed 0-0.3 s after it has recorded 1-2 more changes, until a run ends
                runs, kills = until_done(rollback, rng, kill_window=(0.0, 0.3), deadline=deadline,
                                         after_writes=plan_path, nth_range=(1, 2), max_kills=rollback_kills,
                                         first_kill_now=chaos, max_runs=runs_allowed,
                                         kill_points=result.rollback_kill_points)
                result.rollback_runs += runs
                result.rollback_kills += kills
        except AssertionError as exc:
            result.error = f"rollback: {exc}"
            return result
        finally:
            result.rollback_seconds = round(time.monotonic() - t0, 1)
        result.after_rollback = timeline_check(sb.state)
        result.rollback_state_problems = rollback_problems(sb.state, before_shape, before_mail)
        return result
    finally:
        sb.stop()


__all__ = ["CaseResult", "Check", "run_case", "timeline_check"]
