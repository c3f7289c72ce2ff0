"""`migrator rehearse PLAN`: a dress rehearsal of a plan against a sandbox copy of its tenant.

The plan's source inventory (plan.json names it, and its SHA-256 must match) becomes a sandbox fixture
(sandbox/from_inventory.py); a fresh sandbox serves it with faults injected (throttling, transient errors, dropped
connections, replication delay) and short propagation and token lifetimes; the executor runs every batch through
the real clients over HTTPS, resuming after failed items as an admin would; then the sandbox's own timeline is
checked: no access gap for any original (app, mailbox), no over-grant for any other pair, and the tenant's end
state equals the plan's. By default once under each claim rule (documented, union), each in a fresh sandbox.

The plan folder is copied to a temporary folder first: the rehearsal's journal never touches the real one. The
waits are fast-forwarded on the sandbox's clock (the executor's `now`/`sleep` are that clock), so a rehearsal
takes the time of its API calls, not of its waits; the sandbox's propagation delay and token lifetime move with
the same clock, so nothing is skipped that the checker would not see.

Also the pieces `migrator demo` shares: `run_batches` / `rollback_batch` (the executor's Runner and
RollbackRunner, resumed a bounded number of times after failed items) and `end_state_problems`.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator.errors import InputError, PlanError, TenantError
from migrator.executor.states import FINISHED, BatchState, Outcome
from migrator.model import Right, norm_id
from migrator.planner.plan import KIND_SMTP, MIGRATE
from migrator.sandbox.settings import CLAIM_RULES  # the claim rules the sandbox can emulate

if TYPE_CHECKING:
    from migrator.inventory.store import Inventory
    from migrator.planner.source import Source

# Sandbox delays of a rehearsal, and the executor's waits: each wait exceeds the delay it covers, as in a real run.
# All on the fast-forwarded sandbox clock, so they cost no wall time. Token lifetimes are an hour, as Entra's: msal
# keeps the admin's token across the jumps, the sandbox refuses it once expired, and the client refreshes on that
# 401, which is the path a real run takes after a long wait.
REHEARSAL_DELAYS: dict[str, Any] = {  # SandboxSettings keywords
    "propagation_delay": 1800.0, "token_lifetime": 3600.0, "admin_token_lifetime": 3600.0,
    "replication_delay": 30.0}
REHEARSAL_WAITS: dict[str, Any] = {  # ExecSettings keywords
    "propagation_wait": 2100.0, "token_lifetime": 3900.0}
MAX_RESUMES = 8


# ---------------------------------------------------------------------------------------------------------------
# Running batches with bounded resumes (shared with the demo)
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class BatchRun:
    """The end of a run of `execute` or `rollback` over some batches, after any resumes."""

    statuses: dict[int, str]  # batch -> done | skipped | waiting | failed | stopped
    resumes: int = 0
    problems: list[str] = field(default_factory=list)  # what each resumed attempt stopped on
    calls: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return all(s in FINISHED for s in self.statuses.values())


def _attempts(phase: str, plan, conn, batches: list[int], options, *, max_resumes: int,
              on_resume: Callable[[int, str], None] | None) -> BatchRun:
    from migrator.executor.session import RunSession

    run = BatchRun({b: BatchState.NEW for b in batches})
    for attempt in range(max_resumes + 1):
        try:
            # Each attempt is a new invocation: the journal is opened (and locked) again, as the command would.
            with RunSession.open(plan, conn, options, journal_clock=options.now) as session:
                result = session.rollback(batches[0]) if phase == "rollback" else session.execute(batches)
                run.calls.update(result.calls)
        except TenantError as exc:  # a read that failed after every retry: the same command resumes
            why = f"stopped on a tenant error: {exc}"
        else:
            for outcome in result.outcomes:
                if not (outcome.status == Outcome.SKIPPED and run.statuses.get(outcome.batch) == Outcome.DONE):
                    run.statuses[outcome.batch] = outcome.status  # "done" earlier stays "done" on a resume
            if run.ok:
                return run
            failed = [o for o in result.outcomes if o.status in (Outcome.FAILED, Outcome.STOPPED)]
            if not failed:
                return run  # waiting only: the caller's wait setting decides
            why = "; ".join(f"batch {o.batch}: {len(o.failures) or 1} item(s) failed"
                            + (f" ({o.failures[0]})" if o.failures else f" ({o.message})") for o in failed)
        run.problems.append(why)
        if attempt == max_resumes:
            break
        run.resumes += 1
        if on_resume is not None:
            on_resume(run.resumes, why)
    return run


def _options(settings, output, now, sleep):
    from migrator.executor.session import RunOptions

    return RunOptions(settings, wait=True, output=output, now=now, sleep=sleep)


def run_batches(plan, plan_dir: Path, conn, batches: Iterable[int], settings, *, output,
                now: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                max_resumes: int = MAX_RESUMES, on_resume=None) -> BatchRun:
    """`migrator execute PLAN --all --wait --yes`, resumed after failed items (at most max_resumes times)."""
    return _attempts("execute", _at(plan, plan_dir), conn, [int(b) for b in batches],
                     _options(settings, output, now, sleep), max_resumes=max_resumes, on_resume=on_resume)


def rollback_batch(plan, plan_dir: Path, conn, batch: int, settings, *, output,
                   now: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                   max_resumes: int = MAX_RESUMES, on_resume=None) -> BatchRun:
    """`migrator rollback PLAN --batch N --wait --yes`, resumed after failed items."""
    return _attempts("rollback", _at(plan, plan_dir), conn, [int(batch)], _options(settings, output, now, sleep),
                     max_resumes=max_resumes, on_resume=on_resume)


def _at(plan, plan_dir: Path):
    """The plan as held in `plan_dir` (the journal lives beside the plan's files)."""
    import dataclasses

    return plan if Path(plan.path) == Path(plan_dir) else dataclasses.replace(plan, path=Path(plan_dir))


# ---------------------------------------------------------------------------------------------------------------
# The sandbox's end state against the plan
# ---------------------------------------------------------------------------------------------------------------
def expected_access(plan, original: set[tuple[str, str]], applied: set[int]) -> dict[str, dict]:
    """Per app of the tenant: the SendAs grants, RBAC scope and claim the plan leaves once `applied` batches are
    done (every other batch never run, or rolled back)."""
    migrated_apps = {norm_id(a) for b in plan.batches if int(b.number) in applied for a in b.apps}
    # an app whose batch moves only Graph/EWS access keeps its SMTP claim as it was (nothing expected of it here)
    smtp_apps = {norm_id(g.app_id) for g in plan.grants if g.batch is not None} | {
        norm_id(a.app_id) for a in plan.assignments if a.kind == KIND_SMTP}
    out: dict[str, dict] = {}
    for app_id, mailbox in original:
        out.setdefault(app_id, {"sendas": set(), "rbac": set(), "claim": True})["sendas"].add(mailbox)
    for g in plan.grants:
        app_id = norm_id(g.app_id)
        if app_id in migrated_apps and g.batch is not None:  # the app's SMTP reach: SendAs and FullAccess with claim
            entry = out.setdefault(app_id, {"sendas": set(), "rbac": set(), "claim": True})
            entry["rbac"].add(norm_id(g.mailbox))
            if g.action == MIGRATE and g.right == Right.SEND_AS:
                entry["sendas"].discard(norm_id(g.mailbox))
    for app_id in migrated_apps & smtp_apps:
        out.setdefault(app_id, {"sendas": set(), "rbac": set(), "claim": True})["claim"] = False
    return out


def mail_apps_followed(plan) -> list[str]:
    """The apps a plan's Graph/EWS part concerns: those it moves and those it only reports."""
    reported = [norm_id(a.get("app_id", "")) for a in (plan.meta.get("mail_access") or {}).get("apps", [])
                if isinstance(a, dict)]
    return sorted({norm_id(a) for a in plan.mail_apps()} | {a for a in reported if a})


def mail_end_state_problems(sandbox, plan, applied: set[int], before: dict[str, dict]) -> list[str]:
    """Graph/EWS end state: every app the plan moves reaches exactly its planned set per permission (a token issued
    now), and, once its batch is done, holds none of the moved consents and none of its policies (before it, all of
    them); every app the plan only reports has the consents and policies it had before (`before`: mail_config at
    the start)."""
    problems: list[str] = []
    moved = plan.mail_apps()
    batch_of = {m.app_id: m.batch for m in plan.mail_access}
    perms: dict[str, set[str]] = {}
    for m in plan.mail_access:
        perms.setdefault(m.app_id, set()).add(m.permission)
    reach = sandbox.mail_access(moved) if moved else {}
    config = sandbox.mail_config(sorted(set(moved) | set(before)))
    for app in moved:
        want = plan.mail_reach.get(app, frozenset())
        for perm in sorted(perms[app]):
            have = reach.get(app, {}).get(perm, frozenset())
            if have is None:
                problems.append(f"app {app}: {perm} reaches every mailbox, the plan says {len(want)}")
            elif set(have) != set(want):
                problems.append(f"app {app}: {perm} reaches {len(have)} mailbox(es), the plan says {len(want)} "
                                f"(e.g. {sorted(set(have) ^ set(want))[0]})")
        now = config.get(app, {"consents": [], "policies": []})
        done = batch_of[app] in applied
        left = sorted(set(now["consents"]) & perms[app])
        if done and left:
            problems.append(f"app {app}: Entra consent {', '.join(left)} is held, the plan removed it")
        if done and now["policies"]:
            problems.append(f"app {app}: {len(now['policies'])} access polic(ies) left, the plan removed them")
        if not done and app in before and now != before[app]:
            problems.append(f"app {app}: its consents or policies changed, but its batch is not applied")
    for app in sorted(set(before) - set(moved)):
        if config.get(app) != before[app]:
            problems.append(f"app {app} (reported, not moved): its consents or policies changed")
    return problems


def end_state_problems(sandbox, plan, original: set[tuple[str, str]], applied: set[int], *,
                       apps: Iterable[str] | None = None, cutover: bool = True) -> list[str]:
    """What differs between the sandbox tenant now (`sandbox.access()`, a running Sandbox) and what the plan says it
    should be (empty when equal)."""
    expected = expected_access(plan, original, applied)
    problems = []
    chosen = {norm_id(a) for a in apps} if apps is not None else set(expected) | set(sandbox.access())
    access = sandbox.access(sorted(chosen))
    for app_id in sorted(chosen):
        now = access.get(app_id)
        want = expected.get(app_id, {"sendas": set(), "rbac": set(), "claim": None})
        if now is None:
            problems.append(f"app {app_id}: not in the tenant")
            continue
        for what, key, have in (("SendAs grants", "sendas", now.sendas), ("RBAC scope", "rbac", now.rbac)):
            extra, missing = sorted(have - want[key]), sorted(want[key] - have)
            if extra:
                problems.append(f"app {app_id}: {what} on {len(extra)} mailbox(es) the plan does not give it "
                                f"(e.g. {extra[0]})")
            if missing:
                problems.append(f"app {app_id}: {what} missing on {len(missing)} mailbox(es) (e.g. {missing[0]})")
        if cutover and want["claim"] is not None and now.claim != want["claim"]:
            problems.append(f"app {app_id}: Entra SMTP.SendAsApp is {'held' if now.claim else 'gone'}, the plan "
                            f"says it should be {'held' if want['claim'] else 'gone'}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# The rehearsal
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Rehearsal:
    claim_rule: str
    statuses: dict[int, str]
    resumes: int
    problems: list[str]
    gaps: list
    overgrants: list
    end_state: list[str]
    faults: dict
    calls: Counter
    seconds: float
    notes: list[str] = field(default_factory=list)
    start: float = 0.0  # the sandbox clock when the tenant was loaded: interval times are relative to it
    smtp: dict = field(default_factory=dict)  # the SMTP witness's counts (empty when it did not run)
    # Graph/EWS per permission (sandbox/mailaccess.py check_mail): (app, permission, mailbox) intervals
    mail_gaps: list = field(default_factory=list)
    mail_overgrants: list = field(default_factory=list)
    mail_followed: bool = False  # the plan has Graph/EWS apps (moved or reported)

    @property
    def ok(self) -> bool:
        smtp_ok = not self.smtp or (self.smtp.get("ok") and not self.smtp.get("disagreements"))
        return bool(not self.gaps and not self.overgrants and not self.end_state and smtp_ok
                    and not self.mail_gaps and not self.mail_overgrants
                    and all(s in FINISHED for s in self.statuses.values()))

    def to_dict(self) -> dict:
        def interval(i) -> dict:
            return {"app_id": i.app_id, "mailbox": i.mailbox, "from_s": round(i.start - self.start, 3),
                    "to_s": None if i.end is None else round(i.end - self.start, 3), "reason": i.reason}

        return {"claim_rule": self.claim_rule, "ok": self.ok, "batches": {str(k): v for k, v in self.statuses.items()},
                "resumes": self.resumes, "resume_reasons": self.problems,
                "gaps": [interval(i) for i in self.gaps], "overgrants": [interval(i) for i in self.overgrants],
                "end_state": self.end_state, "faults": self.faults,
                "api_calls": {"read": self.calls.get("read", 0), "write": self.calls.get("write", 0)},
                "seconds": round(self.seconds, 2), "notes": self.notes, "smtp": self.smtp,
                "mail_gaps": [{**interval(i), "permission": i.permission} for i in self.mail_gaps],
                "mail_overgrants": [{**interval(i), "permission": i.permission} for i in self.mail_overgrants]}


def find_source(plan, inventory: Path | None = None):
    """The plan's source (an inventory folder or grants CSV), checked against the SHA-256 recorded in plan.json."""
    from migrator.planner.source import load_source

    meta = plan.meta.get("source") or {}
    plan_json = str(Path(plan.path) / "plan.json") if plan.path else "plan.json"
    if inventory is None:
        recorded = meta.get("path")
        if not recorded:
            raise InputError("plan.json names no source inventory; give it with --inventory", path=plan_json)
        bases = [Path.cwd()] + ([Path(plan.path).resolve().parent.parent, Path(plan.path).resolve().parent]
                                if plan.path else [])
        found = next((b / recorded for b in bases if (b / recorded).exists()), None)
        if found is None:
            raise InputError(f"the plan's source {recorded!r} was not found (looked from the current folder and the "
                             "plan's); give it with --inventory PATH", path=plan_json, field="source.path")
        inventory = found
    source = load_source(Path(inventory))
    if meta.get("sha256") and source.sha256 != meta["sha256"]:
        raise PlanError(f"{inventory} is not the inventory this plan was made from (its SHA-256 is "
                        f"{source.sha256[:12]}, plan.json says {str(meta['sha256'])[:12]}); rehearse against the "
                        "same inventory, or plan again", path=plan_json)
    return source


def source_inventory(source: Source) -> Inventory:
    """The Inventory of a planner Source, with its grants: a bare grants CSV's Source keeps them only as tuples."""
    import dataclasses

    from migrator.model import Grant, Right

    inv = source.inventory
    if not inv.grants and source.grants:
        inv = dataclasses.replace(inv, grants=tuple(Grant(a, m, Right(r)) for a, m, r in source.grants))
    return inv


def copy_plan(plan, dest: Path) -> Path:
    """The plan's files (plan.json and the files it hashes), without its journal, into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    src = Path(plan.path)
    for name in ["plan.json", *sorted(plan.meta.get("files", {}))]:
        if (src / name).exists():
            shutil.copy2(src / name, dest / name)
    return dest


def rehearse_once(plan, fixture: dict, *, claim_rule: str, seed: int = 0, faults: str = "mild",
                  output=None, on_resume=None, max_resumes: int = MAX_RESUMES,
                  smtp_sample: tuple[int, int] | None = (2, 1)) -> Rehearsal:
    """Run every batch of `plan` (a Plan whose .path is a folder the rehearsal may write its journal in) against a
    fresh sandbox of `fixture` under `claim_rule`, then check the sandbox's timeline and end state. Meanwhile the
    apps sign in over SMTP all along (smtp/witness.py; `smtp_sample` = mailboxes probed per app inside and outside
    its original reach, None: no witness): every answer must keep each app on exactly its original mailboxes, and
    agree with the timeline."""

    from migrator.executor.context import ExecSettings, Output
    from migrator.executor.session import connect
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.server import start_sandbox
    from migrator.sandbox.settings import SandboxSettings
    from migrator.smtp.witness import sandbox_witness

    started = time.monotonic()
    clock = Clock()  # real time, fast-forwarded through the executor's waits
    settings = SandboxSettings(claim_rule=claim_rule, **REHEARSAL_DELAYS)
    exec_settings = ExecSettings(concurrency=4, verify_retry_delay=5.0, replication_poll=5.0,
                                 replication_timeout=900.0, seed=seed, **REHEARSAL_WAITS)
    output = output or Output(quiet=True)
    fixture, app_secrets = with_app_secrets(fixture)
    with tempfile.TemporaryDirectory(prefix="migrator-rehearse-") as tmp:  # noqa: SIM117 - the sandbox runs inside tmp
        with start_sandbox(fixture, seed=seed, faults=faults, settings=settings, run_dir=Path(tmp) / "sandbox",
                           clock=clock) as sb:
            conn = connect(sb.profile_path, graph_write=True)
            followed = mail_apps_followed(plan)
            mail_before = sb.mail_config(followed) if followed else {}
            witness = (sandbox_witness(sb, app_secrets, Path(tmp), now=clock.now, inside=smtp_sample[0],
                                       outside=smtp_sample[1]).start() if smtp_sample else None)
            try:
                run = run_batches(plan, Path(plan.path), conn, [int(b.number) for b in plan.batches],
                                  exec_settings, output=output, now=clock.now, sleep=clock.sleep,
                                  max_resumes=max_resumes, on_resume=on_resume)
            finally:
                sends = witness.stop() if witness else None
            original = set(sb.original_grants)
            report = sb.check()  # followed past the last change to its steady end
            applied = {b for b, s in run.statuses.items() if s in FINISHED}
            end = end_state_problems(sb, plan, original, applied)
            end += mail_end_state_problems(sb, plan, applied, mail_before) if followed else []
            fault_counts = dict(sb.faults.counts)
            start = sb.started_at
            smtp = {**sends.to_dict(), "disagreements": len(sb.smtp_disagreements())} if sends else {}
    return Rehearsal(claim_rule, run.statuses, run.resumes, run.problems, report.gaps, report.overgrants, end,
                     fault_counts, run.calls, time.monotonic() - started, list(fixture.get("notes", [])), start,
                     smtp, list(report.mail_gaps), list(report.mail_overgrants), bool(followed))


def with_app_secrets(fixture: dict) -> tuple[dict, dict[str, str]]:
    """A copy of the fixture whose apps each hold a client secret (made up now, kept in memory), so the SMTP
    witness can sign in as them; and those secrets by app id."""
    import copy
    import secrets

    fixture = copy.deepcopy(fixture)
    held: dict[str, str] = {}
    for app in fixture.get("apps") or ():
        app["secret"] = app.get("secret") or secrets.token_urlsafe(24)
        held[norm_id(app["app_id"])] = app["secret"]
    return fixture, held


def rehearse(plan_path: Path, *, inventory: Path | None = None, claim_rules: Iterable[str] = CLAIM_RULES,
             seed: int = 0, faults: str = "mild", output=None, on_start=None, on_resume=None) -> list[Rehearsal]:
    """`migrator rehearse PLAN`: load and check the plan, find its inventory, rehearse under each claim rule."""
    from migrator.planner.plan import load_plan
    from migrator.sandbox.from_inventory import fixture_from_inventory

    plan = load_plan(Path(plan_path))  # hashes and exactness first, as execute does
    source = find_source(plan, inventory)
    fixture = fixture_from_inventory(source_inventory(source), name=Path(source.path).name)
    results = []
    if plan.path is None:
        raise InputError("a rehearsal copies the plan's folder: load the plan from one")
    for rule in claim_rules:
        if rule not in CLAIM_RULES:
            raise InputError(f"unknown claim rule; use one of {', '.join(CLAIM_RULES)}", value=rule)
        if on_start is not None:
            on_start(rule)
        with tempfile.TemporaryDirectory(prefix="migrator-rehearse-plan-") as tmp:
            copy = load_plan(copy_plan(plan, Path(tmp) / Path(plan.path).name))
            results.append(rehearse_once(copy, fixture, claim_rule=rule, seed=seed, faults=faults, output=output,
                                         on_resume=on_resume))
    return results


__all__ = [
    "CLAIM_RULES",
    "BatchRun",
    "Rehearsal",
    "copy_plan",
    "end_state_problems",
    "expected_access",
    "find_source",
    "rehearse",
    "rehearse_once",
    "rollback_batch",
    "run_batches",
    "source_inventory",
]
