"""`migrator demo`: the whole job in one command, against the bundled sandbox tenant.

The story: start the sandbox (the sample tenant, mild faults, propagation and token lifetimes of a few seconds)
-> live inventory over HTTPS -> plan -> the pilot batch -> the waves (side by side: while one waits, the next goes
on) -> check -> the last batch fails mid-way (a fault injected on one mailbox) -> roll it back -> check that its
apps are back on exactly their legacy grants, and that the sandbox's timeline shows no access gap and no
over-grant for the whole run -> write the report. Beside the SMTP apps, a Graph app fenced by a RestrictAccess
policy on a nested group moves to Application roles in one of the batches, and a DenyAccess app and a policy-less
app are only reported (demo_mail.py); the checks cover them per permission. Each step calls the same core
functions as the commands (inventory, plan, execute, rollback, report); only the fault is the demo's own, injected
at the sandbox's seam.

Exit status: 0 when every invariant holds, 1 (with the report still written) when one does not.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from migrator.errors import InputError, MigratorError
from migrator.executor.states import FINISHED, Outcome
from migrator.model import Right, norm_id
from migrator.planner.plan import MIGRATE

MARKER = ".migrator-demo"
# The sandbox's delays (seconds) and the executor's waits that cover them: each wait exceeds its delay.
DEMO_DELAYS: dict[str, Any] = {  # SandboxSettings keywords
    "propagation_delay": 2.0, "token_lifetime": 3.0, "replication_delay": 0.5, "sendas_delay": 0.5,
    "graph_replication_delay": 0.5, "access_policy_delay": 0.5}
DEMO_WAITS: dict[str, Any] = {  # ExecSettings keywords
    "propagation_wait": 2.5, "token_lifetime": 3.0, "token_margin": 0.5, "readback_spacing": 0.6,
    "grant_apply_wait": 0.8, "policy_apply_wait": 0.8}
SIMULATED = "RecipientTaskException"


# ---------------------------------------------------------------------------------------------------------------
# Telling the story
# ---------------------------------------------------------------------------------------------------------------
class Story:
    """Headings and lines on stdout; the executor's own progress goes through `output()`."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()

    def elapsed(self) -> str:
        return f"{time.monotonic() - self.started:5.1f}s"

    def heading(self, number: int, text: str) -> None:
        if not self.quiet:
            click.echo("")
            click.secho(f"[{self.elapsed()}] {number}. {text}", bold=True)

    def line(self, text: str) -> None:
        if not self.quiet:
            click.echo(f"    {text}")

    def ok(self, text: str) -> None:
        if not self.quiet:
            click.echo("    " + click.style("ok", fg="green") + f"  {text}")

    def bad(self, text: str) -> None:
        click.echo("    " + click.style("FAIL", fg="red", bold=True) + f"  {text}", err=self.quiet)

    def output(self):
        return _StoryOutput(self)


def _story_output_class():
    from migrator.executor.context import Output, _NoBar

    class StoryOutput(Output):
        """The executor's messages, condensed: one line per step, one per wait, progress bars on a terminal."""

        def __init__(self, story: Story) -> None:
            super().__init__(quiet=story.quiet)
            self.story = story
            self._last_wait: str | None = None

        def info(self, message: str) -> None:
            self.lines.append(message)
            if self.quiet:
                return
            text = message.strip()
            if text.startswith("waiting for "):
                what = text.split(":", 1)[0]
                if what == self._last_wait:
                    return  # the countdown's later ticks
                self._last_wait = what
                text = text.split(" (until", 1)[0]
            else:
                self._last_wait = None
            if "\n" in text:  # a failed step: its first line and the first failures, shortened
                first, *rest = text.splitlines()
                shown = [first] + [_shorten(r.strip(), 150) for r in rest[:2]]
                if len(rest) > 2:
                    shown.append(f"- ... and {len(rest) - 2} more")
                text = "\n        ".join(shown)
            click.echo(f"      {text}")

        def progress(self, length: int, label: str):
            if self.quiet or not self.story.tty or length < 2:
                return _NoBar()
            return click.progressbar(length=length, label=f"      {label}", file=sys.stderr, width=30)

    return StoryOutput


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


def _StoryOutput(story: Story):
    return _story_output_class()(story)


# ---------------------------------------------------------------------------------------------------------------
# The injected failure
# ---------------------------------------------------------------------------------------------------------------
class RefuseMailbox:
    """A hook for `Sandbox.exchange_hook`: Remove-RecipientPermission on one mailbox fails every time, as a mailbox
    in the middle of a move does. Every other cmdlet goes through untouched."""

    def __init__(self, mailbox: str) -> None:
        self.mailbox = norm_id(mailbox)
        self.refused = 0

    def __call__(self, cmdlet: str, params: dict) -> None:
        from migrator.sandbox.api import CmdletError

        if (cmdlet.lower() == "remove-recipientpermission"
                and norm_id(str(params.get("Identity", ""))) == self.mailbox):
            self.refused += 1
            raise CmdletError(SIMULATED, f"The operation couldn't be performed because mailbox '{self.mailbox}' is "
                                         "being moved. Try again after the move completes. (Simulated by migrator "
                                         "demo.)", http_status=400, cmdlet=cmdlet)


# ---------------------------------------------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class DemoResult:
    workdir: Path
    plan_dir: Path
    report: Path | None
    checks: list[tuple[str, bool, str]] = field(default_factory=list)  # (what, ok, detail)
    seconds: float = 0.0
    failed_batch: int | None = None

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def prepare_workdir(workdir: Path | None) -> Path:
    """A fresh folder for the demo: a new temporary one, or `workdir` (replaced only if an earlier demo made it)."""
    if workdir is None:
        path = Path(tempfile.mkdtemp(prefix="migrator-demo-"))
    else:
        path = Path(workdir)
        if path.exists() and not path.is_dir():
            raise InputError("is a file; give a folder", path=str(path))
        if path.exists() and any(path.iterdir()):
            if not (path / MARKER).exists():
                raise InputError("exists and is not empty, and no earlier `migrator demo` made it; give a new or "
                                 "empty folder", path=str(path))
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("made by `migrator demo`; a later demo with the same --workdir replaces it\n",
                               encoding="utf-8")
    return path


def _check(result: DemoResult, story: Story, what: str, problems: list[str]) -> bool:
    ok = not problems
    detail = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
    result.checks.append((what, ok, detail))
    if ok:
        story.ok(what)
    else:
        story.bad(f"{what}: {detail}")
    return ok


def _timeline_problems(report) -> list[str]:
    out = [f"access gap: app {i.app_id} on {i.mailbox} ({i.reason})" for i in report.gaps]
    out += [f"over-grant: app {i.app_id} on {i.mailbox} ({i.reason})" for i in report.overgrants]
    return out


def run_demo(*, workdir: Path | None = None, seed: int = 0, faults: str = "mild", quiet: bool = False,
             keep: Callable | None = None) -> DemoResult:
    """Tell the whole story; return what was checked. `keep(sandbox, plan_dir)` is called before the sandbox
    stops (the report is written after it)."""
    apps_dir = Path(tempfile.mkdtemp(prefix="migrator-demo-apps-"))  # the apps' made-up secrets, gone at the end
    try:
        return _run_demo(workdir=workdir, seed=seed, faults=faults, quiet=quiet, keep=keep, apps_dir=apps_dir)
    finally:
        shutil.rmtree(apps_dir, ignore_errors=True)


@dataclass
class _Stage:
    """What the demo's chapters share once the sandbox runs."""

    story: Story
    result: DemoResult
    sb: Any  # the running Sandbox
    original: set[tuple[str, str]]
    mail: Any = None  # demo_mail.MailWatch: the Graph/EWS apps at the start
    plan: Any = None
    conn: Any = None
    settings: Any = None  # ExecSettings
    out: Any = None  # the executor's Output

    def resumed(self, n: int, why: str) -> None:
        self.story.line(click.style(f"resuming (attempt {n + 1}), as `migrator execute` says to: {why[:160]}",
                                    fg="yellow"))

    def check(self, what: str, problems: list[str]) -> bool:
        return _check(self.result, self.story, what, problems)

    def check_done(self, what: str, run) -> None:
        self.check(what, [f"batch {b}: {s}" for b, s in run.statuses.items() if s not in FINISHED])


def _run_demo(*, workdir: Path | None, seed: int, faults: str, quiet: bool, keep: Callable | None,
              apps_dir: Path) -> DemoResult:
    from migrator.demo_mail import MailWatch, describe_tenant, with_mail_apps
    from migrator.executor.context import ExecSettings
    from migrator.executor.session import connect
    from migrator.rehearse import with_app_secrets
    from migrator.sandbox.server import DEFAULT_FIXTURE, load_fixture_data, start_sandbox
    from migrator.sandbox.settings import SandboxSettings
    from migrator.smtp.witness import sandbox_witness

    story = Story(quiet=quiet)
    work = prepare_workdir(workdir)
    result = DemoResult(work, work / "plan", None)
    settings = SandboxSettings(**DEMO_DELAYS)

    story.heading(1, "A sandbox tenant: Exchange Online, Entra ID and Graph on 127.0.0.1, over HTTPS")
    # the sample plus the Graph/EWS apps (demo_mail.py); apps sign in over SMTP too
    fixture, app_secrets = with_app_secrets(with_mail_apps(load_fixture_data(DEFAULT_FIXTURE)))
    with start_sandbox(fixture, seed=seed, faults=faults, settings=settings, run_dir=work / "sandbox") as sb:
        stage = _Stage(story, result, sb, set(sb.original_grants), mail=MailWatch(sb))
        census = sb.census()
        story.line(f"{census['tenant']}: {census['mailboxes']} mailboxes, {census['apps']} apps, "
                   f"{len(stage.original)} SendAs grants held by apps; faults: {faults} (seed {seed})")
        story.line(describe_tenant())
        story.line(f"RBAC changes reach sending after {settings.propagation_delay:g} s and the apps' tokens live "
                   f"{settings.token_lifetime:g} s (in Microsoft's cloud: 30 min-2 h and 60-90 min)")
        story.line(f"connection profile: {sb.profile_path}; SMTP submission: {sb.smtp_address[0]}:"
                   f"{sb.smtp_address[1]} (STARTTLS, AUTH XOAUTH2)" if sb.smtp_address else
                   f"connection profile: {sb.profile_path}")
        sender = SmtpSender(sb, app_secrets, apps_dir,
                            {norm_id(a["app_id"]): a.get("display_name", "") for a in fixture.get("apps", [])})
        sends_before = _smtp_sends(stage, sender, "before", "every app sends as its mailbox over SMTP before the "
                                                            "migration")
        witness = sandbox_witness(sb, app_secrets, apps_dir, now=sb.now, inside=1,
                                  outside=1, interval=0.5).start()
        stage.plan = _inventory_and_plan(stage, work)
        stage.conn = connect(sb.profile_path, graph_write=True)
        stage.settings = ExecSettings(concurrency=4, verify_retry_delay=0.5, replication_poll=0.25,
                                      replication_timeout=60.0, seed=seed, **DEMO_WAITS)
        stage.out = story.output()
        numbers = [int(b.number) for b in stage.plan.batches]
        result.failed_batch = failing = numbers[-1]
        before = numbers[:-1]
        _execute_waves(stage, before)
        _fail_and_roll_back(stage, failing)
        _final_checks(stage, before, failing)
        _witness_check(stage, witness.stop())
        sends_after = _smtp_sends(stage, sender, "after", "every app still sends as its mailbox over SMTP after "
                                                          "the migration")
        sender.save(result.plan_dir / "smtp-evidence.json", sends_before, sends_after)
        story.line(f"faults the sandbox injected: {_fmt_counts(sb.faults.counts) or 'none'}")
        stage.conn.session.close()
        if keep is not None:
            keep(sb, result.plan_dir)

    story.heading(10, "Report for the change ticket")
    result.report = write_report(result.plan_dir)
    result.seconds = time.monotonic() - story.started
    _write_checks(result, faults=faults, seed=seed)
    story.line(f"the demo's own checks: {work / 'demo-checks.json'}")
    return result


def _smtp_sends(stage: _Stage, sender: SmtpSender, when: str, what: str) -> dict:
    """One real SMTP send per app, told and checked."""
    sends = sender.send_all(when)
    for line in sender.describe(sends):
        stage.story.line(line)
    stage.check(f"{what} ({sum(s.sent for s in sends.values())} of {len(sends)})", sender.problems(sends))
    return sends


def _inventory_and_plan(stage: _Stage, work: Path):
    """Chapters 2 and 3: the live inventory, then the plan (written to work/plan and loaded back, checked)."""
    from migrator.demo_mail import describe_plan
    from migrator.inventory.store import counts as inventory_counts
    from migrator.inventory.tenant import live_inventory
    from migrator.planner.build import PlanOptions, build_plan
    from migrator.planner.plan import load_plan, plan_counts, write_plan
    from migrator.planner.source import load_source

    story, sb = stage.story, stage.sb
    story.heading(2, "Inventory: read every SendAs/FullAccess grant held by an app, live")
    inv = _again(story, "the inventory", lambda: live_inventory(
        sb.profile_path, work / "inventory", overwrite=True, progress=story.tty and not story.quiet))
    c = inventory_counts(inv)
    calls = sum((inv.manifest.get("api_calls") or {}).values())
    story.line(f"{c['grants_sendas']} SendAs + {c['grants_fullaccess']} FullAccess grants held by {c['apps']} apps"
               f", {c['mailboxes']} mailboxes, {c['groups']} groups; {calls} API calls -> {work / 'inventory'}")

    story.heading(3, "Plan: the fewest exact groups, one scope per app, batches with a pilot first")
    plan_dir = stage.result.plan_dir
    write_plan(build_plan(load_source(work / "inventory"), PlanOptions(batch_size=4)), plan_dir)
    plan = load_plan(plan_dir)
    pc = plan_counts(plan)
    cover = plan.meta.get("cover", {})
    story.line(f"{pc['grants_migrate']} grants to migrate -> {pc['groups']} groups ({pc['groups_new']} new, "
               f"{pc['groups_reuse']} reused; proven lower bound {cover.get('lower_bound')}), {pc['scopes']} "
               f"scopes, {pc['assignments']} role assignments, {pc['batches']} batches -> {plan_dir}")
    story.line(describe_plan(plan))
    return plan


def _execute_waves(stage: _Stage, before: list[int]) -> None:
    """Chapters 4 to 6: the pilot, the other batches but the last side by side, and a check against the sandbox."""
    from migrator.rehearse import end_state_problems, run_batches

    story, plan_dir = stage.story, stage.result.plan_dir
    if not before:
        return
    story.heading(4, f"Execute the pilot (batch {before[0]}): set up RBAC, verify, wait for propagation, cut over, "
                     "wait out the old tokens, remove the legacy grants")
    _mail_line(stage, before[:1])
    run = run_batches(stage.plan, plan_dir, stage.conn, before[:1], stage.settings, output=stage.out,
                      on_resume=stage.resumed)
    stage.check_done(f"batch {before[0]} done", run)
    if len(before) > 1:
        story.heading(5, f"Execute batches {before[1]}-{before[-1]} side by side (while one waits, the next goes on)")
        _mail_line(stage, before[1:])
        run = run_batches(stage.plan, plan_dir, stage.conn, before[1:], stage.settings, output=stage.out,
                          on_resume=stage.resumed)
        stage.check_done(f"batches {before[1]}-{before[-1]} done", run)
    story.heading(6, "Check against the sandbox's own record")
    stage.check(f"tenant state = plan with batch(es) {', '.join(map(str, before))} applied",
                end_state_problems(stage.sb, stage.plan, stage.original, set(before)))
    stage.check("no access gap, no over-grant so far", _timeline_problems(stage.sb.check()))
    if stage.plan.mail_access:
        stage.check(_mail_migrated_text(stage.plan), stage.mail.migrated_problems(stage.sb, stage.plan, set(before)))


def _mail_line(stage: _Stage, numbers: list[int]) -> None:
    from migrator.demo_mail import describe_batches

    line = describe_batches(stage.plan, numbers)
    if line:
        stage.story.line(line)


def _fail_and_roll_back(stage: _Stage, failing: int) -> None:
    """Chapters 7 and 8: the last batch meets a mailbox that refuses the change, then is rolled back."""
    from migrator.rehearse import MAX_RESUMES, rollback_batch, run_batches

    story, plan_dir = stage.story, stage.result.plan_dir
    victim = _victim(stage.plan, failing)
    story.heading(7, f"Batch {failing} fails mid-way: mailbox {victim} refuses the change (a simulated move)")
    refusal = RefuseMailbox(victim)
    with stage.sb.exchange_hook(refusal):
        # Resumed after the sandbox's random faults, until the batch meets the refusal (or, should the refusal
        # never be reached, the resumes run out).
        for attempt in range(1, MAX_RESUMES + 2):
            run = run_batches(stage.plan, plan_dir, stage.conn, [failing], stage.settings, output=stage.out,
                              max_resumes=0)
            if refusal.refused or run.ok or attempt > MAX_RESUMES:
                break
            stage.resumed(attempt, "; ".join(run.problems))
    removed = _removed_count(plan_dir, failing)
    status = run.statuses.get(failing)
    story.line(f"batch {failing}: {status}; {removed} legacy grant(s) already removed, the refused one kept; the "
               "executor stopped with the batch where `migrator rollback` can undo it")
    stage.check(f"the failure was caught (batch {failing} did not finish)",
                [] if status == Outcome.FAILED and refusal.refused else [f"batch {failing} ended {status}"])

    story.heading(8, f"Roll back batch {failing}: restore the grants, re-grant SMTP.SendAsApp, wait out the "
                     "tokens, remove the RBAC objects")
    run = rollback_batch(stage.plan, plan_dir, stage.conn, failing, stage.settings, output=stage.out,
                         on_resume=stage.resumed)
    stage.check_done(f"batch {failing} rolled back", run)


def _final_checks(stage: _Stage, before: list[int], failing: int) -> None:
    """Chapter 9: the rolled-back apps, the tenant against the plan, and the whole timeline."""
    from migrator.demo_mail import timeline_problems as mail_timeline_problems
    from migrator.rehearse import end_state_problems

    sb, plan = stage.sb, stage.plan
    apps = [norm_id(a) for b in plan.batches if int(b.number) == failing for a in b.apps]
    stage.story.heading(9, "Check the whole run against the sandbox's timeline")
    stage.check(f"batch {failing}'s {len(apps)} app(s) back on exactly their legacy grants (and no RBAC scope)",
                end_state_problems(sb, plan, stage.original, set(before), apps=apps))
    stage.check("tenant state = plan with the other batches applied",
                end_state_problems(sb, plan, stage.original, set(before)))
    pairs = len(sb.pairs_seen())
    report = sb.check()
    stage.check(f"zero access gaps and zero over-grants over {pairs} (app, mailbox) pairs, every token considered",
                _timeline_problems(report))
    perms = sorted({(app, p) for app, reach in stage.mail.reach.items() for p in reach})
    stage.check(f"Graph/EWS, per permission: zero gaps and zero over-grants over {len(perms)} (app, permission) "
                "pairs, every token considered", mail_timeline_problems(report))
    if plan.mail_access and failing in {m.batch for m in plan.mail_access}:
        stage.check("the rolled-back Graph/EWS app(s) back on their consent and policy, with the same reach",
                    stage.mail.migrated_problems(sb, plan, set(before)))
    stage.check("the reported Graph/EWS apps untouched: Contoso EWS Sync (DenyAccess) and CRM Sync Service (no "
                "policy) keep their consents, policies and reach", stage.mail.untouched_problems(sb))


def _mail_migrated_text(plan) -> str:
    """The chapter 6 check's title: each migrated Graph/EWS app and its permissions."""
    apps = "; ".join(f"{next(m.app_name for m in plan.mail_access if m.app_id == app)}: "
                     + ", ".join(m.permission for m in plan.mail_access if m.app_id == app)
                     for app in plan.mail_apps())
    return (f"Graph/EWS moved off access policies ({apps}): each permission reaches exactly its original mailboxes, "
            "served by RBAC alone once its batch is applied (consent and policy removed)")


def _witness_check(stage: _Stage, sends) -> None:
    """The apps' SMTP sign-ins all through the run: as their original access says, and as the timeline predicts."""
    unlike = stage.sb.smtp_disagreements()
    stage.check(f"SMTP sign-ins by the apps all through the run: {sends.granted} accepted, {sends.denied} refused, "
                "each as its original access says and as the timeline predicts",
                [f"SMTP gap: {a} as {m}" for a, m, _ in sends.gaps]
                + [f"SMTP over-grant: {a} as {m}" for a, m, _ in sends.overgrants]
                + [f"SMTP answer unlike the timeline: {x.app_id} as {x.mailbox} ({x.code})" for x in unlike])


class SmtpSender:
    """One real message per app over the sandbox's SMTP endpoint, as its relay would send it: signed in as the
    first mailbox of its original reach, from that mailbox to itself."""

    def __init__(self, sb, secrets: dict[str, str], folder: Path, names: dict[str, str]) -> None:
        import dataclasses

        from migrator.exchange.auth import TokenProvider
        from migrator.exchange.profile import Credential, load_profile
        from migrator.sandbox.profile import write_secret_file

        self.sb = sb
        admin = load_profile(sb.profile_path)
        self.resource = admin.exchange_resource
        reach: dict[str, list[str]] = {}
        for app_id, mailbox in sorted(sb.original_grants):
            reach.setdefault(app_id, []).append(mailbox)
        self.mailbox = {app: mbxs[0] for app, mbxs in reach.items() if app in secrets}
        self.names = names
        self.providers = {}
        for app in self.mailbox:
            path = write_secret_file(folder / f"sender-{app}.secret", secrets[app])
            self.providers[app] = TokenProvider(dataclasses.replace(
                admin, client_id=app, credential=Credential(kind="secret", secret_file=str(path))))

    def send_all(self, label: str) -> dict:
        from migrator.smtp.probe import send_message

        host, port = self.sb.smtp_address
        out = {}
        for app, mailbox in self.mailbox.items():
            token = self.providers[app].token(self.resource, force_refresh=True)
            out[app] = send_message(host, port, mailbox, token, to=mailbox, subject=f"migrator demo: {label}",
                                    body=f"Sent by app {app} {label} the migration.", ca_bundle=str(self.sb.ca_bundle))
        return out

    def describe(self, sends: dict) -> list[str]:
        return [f"SMTP: {self.names.get(app, app)[:28]:<28} as {self.mailbox[app]:<32} AUTH {s.auth_code}, "
                f"message {s.send_code or '-'}" for app, s in sends.items()]

    def problems(self, sends: dict) -> list[str]:
        return [f"{self.names.get(app, app)} as {self.mailbox[app]}: {s.auth_code}/{s.send_code} {s.text[:80]}"
                for app, s in sends.items() if not s.sent]

    def save(self, path: Path, before: dict, after: dict) -> None:
        """The sends, for the report: per app, the mailbox and the AUTH / message reply codes before and after."""
        import json

        rows = [{"app_id": app, "app_name": self.names.get(app, ""), "mailbox": self.mailbox[app],
                 "before": [before[app].auth_code, before[app].send_code],
                 "after": [after[app].auth_code, after[app].send_code]} for app in sorted(self.mailbox)]
        path.write_text(json.dumps({"smtp_sends": rows}, indent=2) + "\n", encoding="utf-8")


def _write_checks(result: DemoResult, *, faults: str, seed: int) -> None:
    """The checks the demo made against the sandbox (the report covers the plan and its journal)."""
    import json

    data = {"ok": result.ok, "seconds": round(result.seconds, 1), "faults": faults, "seed": seed,
            "rolled_back_batch": result.failed_batch,
            "checks": [{"check": what, "ok": ok, "detail": detail} for what, ok, detail in result.checks]}
    path = result.workdir / "demo-checks.json"
    tmp = path.with_name(".demo-checks.json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def _again(story: Story, what: str, fn, attempts: int = 5):
    """Run fn; on a tenant error (a read that failed after the client's own retries) run it again, as an admin
    would, at most `attempts` times. The inventory is written atomically, so a failed run leaves nothing behind."""
    from migrator.errors import TenantError

    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TenantError as exc:
            if attempt == attempts:
                raise
            story.line(click.style(f"{what} stopped on a tenant error ({_shorten(str(exc), 140)}); running it "
                                   "again", fg="yellow"))
    raise AssertionError("unreachable")  # pragma: no cover


def _victim(plan, batch: int) -> str:
    """A mailbox of the batch's migrated grants from the middle of the list, so some removals succeed first."""
    apps = {norm_id(a) for b in plan.batches if int(b.number) == batch for a in b.apps}
    mailboxes = sorted({norm_id(g.mailbox) for g in plan.grants
                        if norm_id(g.app_id) in apps and g.action == MIGRATE and g.right == Right.SEND_AS})
    if not mailboxes:
        raise MigratorError(f"batch {batch} migrates no grant; nothing to fail")
    return mailboxes[len(mailboxes) // 2]


def _removed_count(plan_dir: Path, batch: int) -> int:
    from migrator.executor.journal import Journal

    with Journal(plan_dir, readonly=True) as journal:
        return sum(1 for a in journal.actions(batch=batch, phase="execute", kind="sendas", op="remove")
                   if a.status in ("applied", "verified"))


def _fmt_counts(counts: dict) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()) if n)


def write_report(plan_dir: Path) -> Path | None:
    """What `migrator report PLAN` writes (Markdown and HTML under PLAN/report); the HTML page's path."""
    from migrator.planner.plan import load_plan
    from migrator.report.html import render_html
    from migrator.report.markdown import render_markdown
    from migrator.report.model import build_report

    data = build_report(load_plan(plan_dir))
    out = plan_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("report.md", render_markdown(data)), ("report.html", render_html(data))):
        tmp = out / f".{name}.tmp"  # write beside, then rename: a reader never sees half a file
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out / name)
    return out / "report.html"


def serve_until_interrupted(sb, plan_dir: Path) -> None:
    """--keep: leave the sandbox serving (same profile) until Ctrl-C or SIGTERM."""
    import signal

    click.echo("")
    click.echo(f"The sandbox keeps serving at {sb.base_url} until Ctrl-C. Try:\n"
               f"  migrator status {plan_dir}\n"
               f"  migrator execute {plan_dir} --all --profile {sb.profile_path} --propagation-wait 3 "
               f"--token-lifetime 4 --wait --yes")
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopping the sandbox", err=True)
