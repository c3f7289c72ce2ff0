"""What every executor step works with: the plan's view of one batch, the journal, the guarded tenant clients, the
settings, the stop/pause control and the terminal output.

`Guarded` wraps ExchangeClient and GraphClient: before every call it checks the control (Ctrl-C and the pause file
stop the run *between* calls, never in the middle of one), it counts calls, and under `--dry-run` it answers a
write with a stand-in result and prints the change instead of sending it. The steps themselves do not know whether
they run dry: the same code path runs in both cases.
"""

from __future__ import annotations

import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from migrator.errors import MigratorError
from migrator.exchange.access import access_of, is_write_call
from migrator.executor.undolog import JournalWriteError
from migrator.exitcodes import ExitCode
from migrator.model import Right, norm_id
from migrator.planner.plan import KIND_GRAPH_EWS, MIGRATE

PAUSE_FILE = "PAUSE"


class Stopped(MigratorError):
    """The run stopped cleanly between two calls (Ctrl-C or the pause file); run the command again to resume."""

    exit_code = ExitCode.INCOMPLETE


@dataclass
class ExecSettings:
    """Knobs of a run. Defaults are the documented ones (docs/design.md §6, docs/exchange.md §2)."""

    # s; Microsoft: 30 min to 2 h before the data plane sees an RBAC change; 2 h plus a 15-minute margin
    propagation_wait: float = 8100.0
    # s; the longest access-token lifetime in the tenant as the user states it. None: read the token lifetime
    # policies that apply to the batch's apps (lifetimes.py) over Entra's default 90 minutes.
    token_lifetime: float | None = None
    token_margin: float = 900.0  # s added to the token wait (clock skew, replication the read-back missed)
    readbacks: int = 2  # the cut-over's absence (rollback: presence) read back this many times in a row ...
    readback_spacing: float = 60.0  # ... this many seconds apart, before the token wait starts
    # s a rollback waits after restoring legacy grants before it re-grants the claim: removals of legacy grants are
    # reported to take up to about 90 minutes to apply, restorations are assumed alike; plus a 15-minute margin
    grant_apply_wait: float = 6300.0
    # s a rollback waits after restoring Application Access Policies before it re-grants the Graph/EWS consents
    # they fence: Microsoft says policy changes "can take longer than 1 hour" to reach Graph and EWS; a consent
    # granted back before its policy applies would reach every mailbox. 2 hours plus a 15-minute margin.
    policy_apply_wait: float = 8100.0
    # How permission rows are matched to the batch's service principals: "any" of their names, or "object_id" only
    # (doctor found rows showing the ObjectId: a display name two principals share cannot confuse the match)
    trustee_match: str = "any"
    cutover: bool = True  # remove the app's Entra SMTP.SendAsApp app-role assignment (docs/exchange.md §1)
    verify_all_up_to: int = 250  # per app: test every mailbox up to this many ...
    verify_sample: int = 250  # ... above it, a seeded random sample of this many (always including the first/last)
    final_verify_sample: int = 25  # per app after the removal (everything was tested before the cut-over)
    probes: int = 5  # out-of-set mailboxes per app that must be InScope=False
    verify_retries: int = 4  # bounded retries of a negative InScope answer (replication), never one try
    verify_retry_delay: float = 5.0
    member_chunk: int = 5000  # Update-DistributionGroupMember list size (15-minute cmdlet limit, docs/exchange.md §2)
    replication_timeout: float = 900.0  # s to wait for a just-created group to become visible to Get-*
    replication_poll: float = 5.0
    rescan_after: float = 300.0  # s: a SendAs scan (or drift check) of this run younger than this is reused
    concurrency: int = 1  # parallel calls inside long item loops; the client's limiter adapts to throttling
    seed: int = 0  # for the verification sample


class Control:
    """Ctrl-C and the pause file. `check()` raises Stopped between calls once either asks to stop."""

    def __init__(self, plan_dir: Path | None = None) -> None:
        self.pause_file = Path(plan_dir) / PAUSE_FILE if plan_dir else None
        self._interrupted = threading.Event()
        self._old_handler: Any = None  # whatever signal.signal returned: a handler, SIG_DFL/SIG_IGN or None

    def install(self) -> None:
        """First Ctrl-C: stop after the current call. Second Ctrl-C: the default (KeyboardInterrupt)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            if self._interrupted.is_set():
                signal.signal(signal.SIGINT, signal.default_int_handler)
                raise KeyboardInterrupt
            self._interrupted.set()
            click.echo("\nStopping after the current call (Ctrl-C again to abort at once)...", err=True)

        self._old_handler = signal.signal(signal.SIGINT, handler)

    def uninstall(self) -> None:
        if self._old_handler is not None:
            signal.signal(signal.SIGINT, self._old_handler)
            self._old_handler = None

    def interrupt(self) -> None:
        self._interrupted.set()

    def reason(self) -> str | None:
        if self._interrupted.is_set():
            return "interrupted (Ctrl-C)"
        if self.pause_file is not None and self.pause_file.exists():
            return f"paused ({self.pause_file} exists; delete it to continue)"
        return None

    def check(self) -> None:
        why = self.reason()
        if why:
            raise Stopped(f"stopped cleanly: {why}; run the same command again to resume")


class Output:
    """Terminal output. `quiet` keeps tests and `--json` callers clean; progress bars only on a terminal."""

    def __init__(self, *, quiet: bool = False, stream=None, script: bool = False) -> None:
        self.quiet = quiet
        self.stream = stream
        self.script = script  # a dry run: info lines become PowerShell comments, so the output parses as a script
        self.lines: list[str] = []  # kept for tests and the run summary
        self.changes: list[str] = []  # the PowerShell of every write a dry run withheld, in order

    def info(self, message: str) -> None:
        if self.script:
            message = "\n".join(f"# {line}".rstrip() for line in message.splitlines()) or "#"
        self.lines.append(message)
        if not self.quiet:
            click.echo(message, file=self.stream)

    def change(self, powershell: str) -> None:
        """A write a dry run withheld, as the PowerShell cmdlet it stands for (printed as is: a script line)."""
        self.changes.append(powershell)
        self.lines.append(powershell)
        if not self.quiet:
            click.echo(powershell, file=self.stream)

    @property
    def live(self) -> bool:
        """Whether the output is a terminal a line can be rewritten on (the --wait countdown)."""
        if self.quiet:
            return False
        stream = self.stream or sys.stdout
        return bool(getattr(stream, "isatty", lambda: False)())

    def countdown(self, message: str, *, final: bool = False) -> None:
        """A countdown line: rewritten in place on a terminal (no new line every minute), a plain line otherwise."""
        if not self.live:
            self.info(message)
            return
        click.echo("\r" + message + "\x1b[K", nl=final, file=self.stream)

    def note(self, message: str) -> None:
        """A line about a change that is not a cmdlet (a wait): a comment in a dry run."""
        self.info(message)

    def progress(self, length: int, label: str):
        show = not self.quiet and length >= 20 and sys.stderr.isatty()
        return click.progressbar(length=length, label=label, file=sys.stderr) if show else _NoBar()


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        pass


class UnmarkedMethod(TypeError):
    """A client method without a read/write mark (migrator/exchange/access.py): never called through Guarded."""


class Guarded:
    """A tenant client behind the control check, the call counter and the dry-run switch.

    Whether a call writes comes from the mark on the method of `spec` (the real client class: ExchangeClient or
    GraphClient), so a test fake is judged by the real client's marks, and a method without a mark is refused
    rather than guessed to be a read."""

    def __init__(self, client: Any, *, spec: type | None = None, control: Control, output: Output, dry_run: bool,
                 counter: Counter, label: Callable[[str], str | None] | None = None,
                 on_write: Callable[..., None] | None = None) -> None:
        self._client = client
        self._spec = spec or type(client)
        self._label = label  # names an id in a dry run's PowerShell (app or group name)
        self._on_write = on_write  # told of every write sent and how it ended (the run log)
        self._control = control
        self._output = output
        self._dry_run = dry_run
        self._counter = counter

    def __getattr__(self, name: str):
        target = getattr(self._client, name)
        if not callable(target):
            return target
        kind = access_of(self._spec, name)
        if kind is None:
            raise UnmarkedMethod(f"{self._spec.__name__}.{name} is not marked @read or @write (migrator/exchange/"
                                 "access.py); the executor does not call a method it cannot tell a write from")

        def call(*args, **kwargs):
            is_write = is_write_call(kind, args, kwargs)
            self._control.check()
            if is_write and self._dry_run:
                for line in describe_write(self._spec, name, args, kwargs, label=self._label):
                    self._output.change(line)
                return dry_result(name, args, kwargs)
            self._counter["write" if is_write else "read"] += 1
            self._counter[name] += 1
            if not is_write or self._on_write is None:
                return target(*args, **kwargs)
            try:
                result = target(*args, **kwargs)
            except BaseException as exc:
                from migrator.exchange.redact import redact

                self._on_write(self._spec, name, args, kwargs, f"failed: {type(exc).__name__}: {redact(str(exc))}")
                raise
            self._on_write(self._spec, name, args, kwargs, "ok")
            return result

        return call


def describe_write(spec: type, name: str, args: tuple, kwargs: dict, *,
                   label: Callable[[str], str | None] | None = None) -> list[str]:
    """The PowerShell of the requests `spec.name(*args)` would send (powershell/commands.py): the real client's
    own method builds them against a recorder, so the dry run shows exactly what the real run sends."""
    from migrator.powershell.commands import capture, render

    return [render(call, label) for call in capture(spec, name, args, kwargs)]


def dry_result(name: str, args: tuple, kwargs: dict) -> Any:
    """A stand-in answer for a write not sent: enough for the next step to describe what it would do."""
    if name == "new_distribution_group":
        group_name = args[0] if args else kwargs.get("name", "")
        return {"Name": group_name, "DistinguishedName": f"<DN of the new group {group_name}>", "Guid": "",
                "dry_run": True}
    if name in ("new_management_scope", "new_role_assignment", "new_service_principal", "grant_app_role"):
        return {"dry_run": True}
    return None


@dataclass
class ItemFailure:
    item: str
    message: str

    def __str__(self) -> str:
        return f"{self.item}: {self.message}"


@dataclass
class StepResult:
    failures: list[ItemFailure] = field(default_factory=list)
    detail: dict = field(default_factory=dict)
    handover: str = ""  # set when the step left a change to a privileged admin (entra.py): the batch stops there


@dataclass
class BatchView:
    """The plan restricted to one batch, plus what the run learns about it (SP ids, group DNs)."""

    number: int
    apps: tuple[str, ...]
    grants: list  # plan grants of the batch's apps (every action)
    assignments: list
    scopes: list
    groups: list
    app_names: dict[str, str]
    # Role assignments the apps held before the plan and the plan builds on (existing.csv, action reuse): never
    # created or removed here, but verified with the new ones before any legacy grant goes, and drift-checked.
    existing: list = field(default_factory=list)
    # Graph/EWS access moved off Application Access Policies (issue 16): the batch's mail_access.csv rows (one per
    # app and Entra permission whose consent the batch removes), each such app's mail reach (what its policies let
    # the consent reach today, flattened) and its access_policies.csv rows (removed last).
    mail_access: list = field(default_factory=list)
    mail_reach: dict[str, frozenset[str]] = field(default_factory=dict)
    policies: list = field(default_factory=list)
    # The apps the SMTP track handles (cut-over of SMTP.SendAsApp, SendAs/FullAccess removal): every app of the
    # batch but one whose only business here is Graph/EWS access (no grant, no SMTP assignment, no reused one).
    smtp_apps: tuple[str, ...] = ()

    def roles(self, app_id: str) -> set[str]:
        """The roles whose assignments serve the app's SMTP RBAC set: its new SMTP assignments' and its reused
        ones' (graph-ews assignments serve its mail reach: mail_roles)."""
        return ({a.role for a in self.assignments if norm_id(a.app_id) == app_id and a.kind != KIND_GRAPH_EWS}
                | {e.role for e in self.existing if norm_id(e.app_id) == app_id})

    @property
    def mail_apps(self) -> tuple[str, ...]:
        """The apps whose Graph/EWS access the batch moves, sorted."""
        return tuple(sorted({norm_id(m.app_id) for m in self.mail_access}))

    def mail_permissions(self, app_id: str) -> list:
        """The app's mail_access rows (permission, resource, role), sorted by permission."""
        return sorted((m for m in self.mail_access if norm_id(m.app_id) == app_id), key=lambda m: m.permission)

    def mail_roles(self, app_id: str) -> set[str]:
        """The `Application <permission>` roles of the app's graph-ews assignments."""
        return {a.role for a in self.assignments if norm_id(a.app_id) == app_id and a.kind == KIND_GRAPH_EWS}

    def app_policies(self, app_id: str) -> list:
        return [p for p in self.policies if norm_id(p.app_id) == app_id]

    def migrate_grants(self, right: str | None = None) -> list:
        return [g for g in self.grants if g.action == MIGRATE and (right is None or str(g.right) == right)]

    def rbac_mailboxes(self, app_id: str) -> set[str]:
        """The app's SMTP reach that moves to RBAC: its grants with a batch (SendAs, and FullAccess when the app's
        tokens carry SMTP.SendAsApp)."""
        return {norm_id(g.mailbox) for g in self.grants if norm_id(g.app_id) == app_id and g.batch is not None}

    def app_mailboxes(self, app_id: str, *, migrate_only: bool = True, right: str = Right.SEND_AS) -> set[str]:
        return {norm_id(g.mailbox) for g in self.grants
                if norm_id(g.app_id) == app_id and str(g.right) == right
                and (g.action == MIGRATE or not migrate_only)}


def batch_view(plan, number: int) -> BatchView:
    batch = next((b for b in plan.batches if int(b.number) == int(number)), None)
    if batch is None:
        from migrator.errors import PlanError

        known = ", ".join(str(b.number) for b in plan.batches) or "none"
        raise PlanError(f"the plan has no batch {number} (batches: {known})", path=str(plan.path))
    apps = tuple(norm_id(a) for a in batch.apps)
    appset = set(apps)
    grants = [g for g in plan.grants if norm_id(g.app_id) in appset]
    assignments = [a for a in plan.assignments if norm_id(a.app_id) in appset]
    scope_keys = {a.scope for a in assignments}
    scopes = [s for s in plan.scopes if s.key in scope_keys]
    group_keys = {k for s in scopes for k in s.groups}
    groups = [g for g in plan.groups if g.key in group_keys]
    names = {norm_id(g.app_id): g.app_name for g in grants}
    names.update({norm_id(a.app_id): a.app_name for a in assignments})
    existing = [e for e in getattr(plan, "existing", ()) if e.action == "reuse" and norm_id(e.app_id) in appset]
    mail_access = [m for m in getattr(plan, "mail_access", ()) if int(m.batch) == int(number)]
    mail_apps = sorted({norm_id(m.app_id) for m in mail_access})
    smtp_apps = tuple(a for a in apps if a not in mail_apps
                      or any(norm_id(g.app_id) == a for g in grants)
                      or any(norm_id(x.app_id) == a and x.kind != KIND_GRAPH_EWS for x in assignments)
                      or any(norm_id(e.app_id) == a for e in existing))
    # (check_exact makes every mail app an app of its batch in batches.csv)
    names.update({norm_id(m.app_id): m.app_name for m in mail_access if norm_id(m.app_id) not in names})
    reach = {norm_id(k): v for k, v in (getattr(plan, "mail_reach", {}) or {}).items()}
    mail_reach = {a: frozenset(norm_id(m) for m in reach.get(a, ())) for a in mail_apps}
    policies = [p for p in getattr(plan, "policies", ()) if int(p.batch) == int(number)]
    return BatchView(int(number), apps, grants, assignments, scopes, groups, names, existing, mail_access,
                     mail_reach, policies, smtp_apps)


@dataclass
class Context:
    plan: Any
    view: BatchView
    journal: Any
    exo: Any
    graph: Any
    settings: ExecSettings
    control: Control
    output: Output
    generation: int = 1
    phase: str = "execute"
    dry_run: bool = False
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    sps: dict[str, dict] = field(default_factory=dict)  # app_id -> {"object_id", "display_name", "exchange"}
    dns: dict[str, str] = field(default_factory=dict)  # group key -> DistinguishedName read back
    step: str = ""
    cache: dict = field(default_factory=dict)  # reads shared by the steps of one run (mailbox map, scans)
    # The Graph client that may change Entra app-role assignments (entra.py), or None: hand the change over.
    # Unset (the default): the run's own client.
    entra_writer: Callable[[], Any] | None = None
    entra_tenant: str = ""

    def entra_client(self) -> Any:
        return self.graph if self.entra_writer is None else self.entra_writer()

    @property
    def batch(self) -> int:
        return self.view.number

    # -- journal shortcuts bound to this batch/generation/phase/step ----------------------------------------
    def intent(self, kind: str, key: str, op: str, *, intent: Any = None, prior: Any = None) -> int | None:
        if self.dry_run:
            return None
        return self.journal.record_intent(batch=self.batch, generation=self.generation, phase=self.phase,
                                          step=self.step, kind=kind, key=key, op=op, intent=intent, prior=prior)

    def intents(self, items: list[dict]) -> list[int | None]:
        """Many intents in one journal transaction; items: dicts with kind, key, op, intent, prior."""
        if self.dry_run:
            return [None] * len(items)
        base = {"batch": self.batch, "generation": self.generation, "phase": self.phase, "step": self.step}
        return self.journal.record_intents([{**base, **it} for it in items])

    def mark_many(self, action_ids: list, status: str) -> None:
        if not self.dry_run:
            self.journal.mark_actions([i for i in action_ids if i is not None], status)

    def mark(self, action_id: int | None, status: str, **kw) -> None:
        if action_id is not None and not self.dry_run:
            self.journal.mark_action(action_id, status, **kw)

    def recorded(self, kind: str, key: str, op: str, phase: str | None = None):
        return self.journal.action(batch=self.batch, generation=self.generation, phase=phase or self.phase,
                                   kind=kind, key=key, op=op)

    # -- item loops ------------------------------------------------------------------------------------------
    def for_each(self, items: Iterable, fn: Callable[[Any], None], *, label: str,
                 name: Callable[[Any], str] = str) -> list[ItemFailure]:
        """Run fn on every item; a failed item is recorded and the loop goes on (issue 6, point 3).

        Stopped and BaseExceptions (a crash, KeyboardInterrupt) end the loop at once. With concurrency > 1 a few
        calls run in parallel; the client's rate limiter shapes them when the tenant throttles.
        """
        items = list(items)
        failures: list[ItemFailure] = []
        lock = threading.Lock()

        def run_one(item):
            try:
                fn(item)
            except (Stopped, MigratorError) as exc:
                if isinstance(exc, (Stopped, JournalWriteError)):  # nothing more may be written: end the loop
                    raise
                with lock:
                    failures.append(ItemFailure(name(item), str(exc)))
            except Exception as exc:
                with lock:
                    failures.append(ItemFailure(name(item), f"{type(exc).__name__}: {exc}"))

        # Concurrent batches (--all) each draw their bars: say whose it is.
        with self.output.progress(len(items), f"Batch {self.batch}: {label}") as bar:
            if self.settings.concurrency <= 1 or len(items) < 2:
                for item in items:
                    self.control.check()
                    run_one(item)
                    bar.update(1)
                return failures
            with ThreadPoolExecutor(max_workers=self.settings.concurrency) as pool:
                pending: set = set()
                iterator = iter(items)
                try:
                    for item in iterator:
                        self.control.check()
                        pending.add(pool.submit(run_one, item))
                        if len(pending) >= self.settings.concurrency * 2:
                            done, pending = wait(pending, return_when=FIRST_COMPLETED)
                            for f in done:
                                f.result()
                                bar.update(1)
                finally:
                    for f in pending:
                        f.result()
                        bar.update(1)
        return failures

    def sample(self, items: list[str], *, key: str, size: int | None = None) -> list[str]:
        """All items up to verify_all_up_to (or `size`), else a seeded sample of verify_sample (or `size`)."""
        items = sorted(items)
        all_up_to = self.settings.verify_all_up_to if size is None else size
        size = self.settings.verify_sample if size is None else size
        if len(items) <= all_up_to:
            return items
        rng = random.Random(f"{self.settings.seed}:{key}")
        chosen = set(rng.sample(items, max(0, size - 2))) | {items[0], items[-1]}
        return sorted(chosen)
