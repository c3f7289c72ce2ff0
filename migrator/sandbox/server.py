"""The sandbox's HTTPS server and its in-process start (`start_sandbox`), used by tests and `migrator sandbox serve`.

One ThreadingHTTPServer on 127.0.0.1 speaks HTTP/1.1 keep-alive over TLS (a CA made at start, see tls.py). The
TLS handshake runs in each connection's own thread, so a slow client never blocks the accept loop. Handlers set
TCP_NODELAY (`disable_nagle_algorithm`): without it every keep-alive call waits ~40 ms for a delayed ACK
(docs/design.md §7: 22 calls/s instead of ~800), and each answer goes out in one write.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from migrator.errors import InputError
from migrator.samples import CONTOSO_FIXTURE
from migrator.sandbox.backend import EXCHANGE_RESOURCE, GRAPH_RESOURCE, Backend
from migrator.sandbox.faults import FaultInjector, FaultProfile, bucket_time, load_profile
from migrator.sandbox.http_exchange import ExchangeEndpoint
from migrator.sandbox.http_graph import GraphEndpoint
from migrator.sandbox.profile import write_profile, write_secret_file
from migrator.sandbox.reply import Reply, Request, json_reply
from migrator.sandbox.requestlog import RequestLog
from migrator.sandbox.smtp import SmtpBackend, SmtpEndpoint
from migrator.sandbox.tls import make_tls_files
from migrator.sandbox.tokens import TokenRejected, TokenService

log = logging.getLogger("migrator.sandbox")

HANDSHAKE_TIMEOUT = 10.0  # seconds a client gets to finish the TLS handshake
IDLE_TIMEOUT = 120.0  # seconds an idle keep-alive connection stays open
DEFAULT_FIXTURE = CONTOSO_FIXTURE  # package data: present in a wheel install too


class SandboxApp:
    """Routes a parsed request to the token service, Exchange, Graph or the debug endpoints."""

    def __init__(self, backend: Backend, faults: FaultInjector, admin_client_id: str) -> None:
        self.backend, self.faults, self.admin_client_id = backend, faults, admin_client_id.lower()
        self.lock = threading.RLock()
        self.tokens = TokenService(backend)
        self.exchange = ExchangeEndpoint(backend, self.tokens, faults, self.lock)
        self.graph = GraphEndpoint(backend, self.tokens, faults, self.lock)
        self.requests = RequestLog()
        self.exchange.log = self.graph.log = self.requests

    def route(self, req: Request) -> Reply:
        try:
            for handler in (self.exchange.handle, self.graph.handle, self._debug, self.tokens.handle):
                reply = handler(req)
                if reply is not None:
                    return reply
            return json_reply(404, {"error": {"code": "NotFound", "message": f"No sandbox endpoint at {req.path}"}})
        except Exception:  # a bug in the sandbox: answer 500 and say so on the log, never crash the server
            log.exception("sandbox: unhandled error on %s %s", req.method, req.path)
            return json_reply(500, {"error": {"code": "InternalServerError",
                                              "message": "The sandbox failed on this request (see its log)."}})

    def _debug(self, req: Request) -> Reply | None:
        if not req.path.startswith("/_sandbox/"):
            return None
        caller = None
        for audience in (EXCHANGE_RESOURCE, GRAPH_RESOURCE):
            try:
                caller = self.tokens.validate(req.header("authorization"), audience)
                break
            except TokenRejected:
                continue
        if caller is None:
            return json_reply(401, {"error": {"code": "Unauthorized",
                                              "message": "The debug endpoints need the admin app's token."}})
        if caller.app_id != self.admin_client_id:
            return json_reply(403, {"error": {"code": "Forbidden",
                                              "message": "Only the sandbox's admin app may read the debug endpoints."}})
        if req.method != "GET":
            return json_reply(405, {"error": {"code": "MethodNotAllowed", "message": "The debug endpoints are "
                                                                                    "read-only (GET)."}})
        with self.lock:
            if req.path == "/_sandbox/timeline":
                return json_reply(200, self.backend.timeline())
            if req.path == "/_sandbox/check":
                return json_reply(200, self.backend.check())
            if req.path == "/_sandbox/faults":
                return json_reply(200, {"profile": asdict(self.faults.profile), "seed": self.faults.seed,
                                        "counts": dict(self.faults.counts)})
        return json_reply(404, {"error": {"code": "NotFound", "message": f"No debug endpoint at {req.path}"}})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # TCP_NODELAY: see the module docstring
    timeout = IDLE_TIMEOUT
    server_version = "migrator-sandbox"
    sys_version = ""
    server: SandboxHTTPServer

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_DELETE = do_PATCH = do_PUT = do_GET

    def _dispatch(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            self._write(json_reply(411, {"error": {"code": "LengthRequired", "message": "Send a Content-Length."}}))
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        query: dict[str, str] = {}
        for key, value in parse_qsl(split.query, keep_blank_values=True):
            query.setdefault(key, value)
        req = Request(self.command, unquote(split.path), query, {k.lower(): v for k, v in self.headers.items()},
                      body, self.server.base_url)
        reply = self.server.app.route(req)
        if reply.drop:  # a dropped connection: no status line, no body, just a closed socket
            self.close_connection = True
            try:
                socket.socket.shutdown(self.connection, socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        phrase = self.responses.get(reply.status, ("",))[0]
        headers = {"Date": self.date_time_string(), "Content-Type": reply.content_type,
                   "Content-Length": str(len(reply.body)), "request-id": str(uuid.uuid4()), **reply.headers}
        if self.headers.get("client-request-id"):
            headers["client-request-id"] = self.headers["client-request-id"]
        if self.close_connection:
            headers["Connection"] = "close"
        head = f"HTTP/1.1 {reply.status} {phrase}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.wfile.write(head.encode("latin-1") + b"\r\n" + reply.body)  # one write per answer

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: SandboxApp, ssl_context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.app, self.ssl_context = app, ssl_context
        self.base_url = f"https://{address[0]}:{self.server_address[1]}"  # the port bound (0 asks for a free one)
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()

    def process_request_thread(self, request, client_address) -> None:
        conn = request
        with self._live_lock:
            self._live.add(conn)
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            tls = self.ssl_context.wrap_socket(request, server_side=True)
            with self._live_lock:
                self._live.discard(conn)
                self._live.add(tls)
            conn = tls
            self.finish_request(tls, client_address)
        except (OSError, ValueError):
            pass  # handshake failures, resets and timeouts are the client's business
        except Exception:
            log.exception("sandbox: connection from %s failed", client_address)
        finally:
            with self._live_lock:
                self._live.discard(conn)
            self.shutdown_request(conn)

    def close_connections(self) -> None:
        with self._live_lock:
            live = list(self._live)
        for conn in live:
            try:
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass


@dataclass
class Sandbox:
    """A running sandbox tenant. Use as a context manager, or call stop()."""

    tenant_id: str
    tenant_domain: str
    client_id: str
    client_secret: str = field(repr=False)
    base_url: str
    ca_bundle: Path
    profile_path: Path
    run_dir: Path
    state: Any  # the TenantState (or a test's stand-in backend): only the observers below use it
    faults: FaultInjector
    app: SandboxApp = field(repr=False)
    smtp: SmtpEndpoint | None = field(repr=False)  # SMTP submission (STARTTLS + AUTH XOAUTH2), when served
    _server: SandboxHTTPServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)
    _owns_run_dir: bool = field(default=False, repr=False)
    _stopped: bool = field(default=False, repr=False)
    original_grants: frozenset[tuple[str, str]] = frozenset()  # (app_id, mailbox) SendAs grants held at the start
    # (app_id, mailbox) the apps could send as at the start: SendAs, FullAccess with the SMTP claim (SMTP reach)
    original_reach: frozenset[tuple[str, str]] = frozenset()
    # The second admin profile (fixture key "cutover_admin"), or None: the privileged one for the cut-over.
    cutover_profile_path: Path | None = None

    @property
    def authority(self) -> str:
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def exchange_url(self) -> str:  # base, as in a connection profile: /adminapi/beta/... is appended
        return self.base_url

    @property
    def graph_url(self) -> str:  # base, as in a connection profile: /v1.0 is appended
        return self.base_url

    @property
    def invoke_url(self) -> str:
        return f"{self.base_url}/adminapi/beta/{self.tenant_id}/InvokeCommand"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def smtp_address(self) -> tuple[str, int] | None:
        return (self.smtp.host, self.smtp.port) if self.smtp else None

    def smtp_disagreements(self) -> list:
        """SMTP AUTH answers the timeline does not predict: every recorded attempt whose token was valid, replayed
        against the data plane for the same token (claim, issue time) and instant. Any entry is a sandbox bug."""
        if self.smtp is None:
            return []
        can_send_as = self.state.can_send_as
        return [a for a in list(self.smtp.attempts)
                if a.token_iat is not None and a.verdict in ("ok", "denied")
                and (a.verdict == "ok") != can_send_as(a.app_id, a.mailbox, token_claim=a.token_claim,
                                                       token_issued_at=a.token_iat, at=a.t)]

    def ready_line(self) -> dict:
        """The `migrator sandbox serve` ready line (docs/design.md §7 contract)."""
        line = {"authority": self.authority, "exchange_url": self.exchange_url, "graph_url": self.graph_url,
                "ca_bundle": str(self.ca_bundle), "tenant_id": self.tenant_id, "client_id": self.client_id,
                "client_secret": self.client_secret, "profile": str(self.profile_path),
                "invoke_url": self.invoke_url, "token_url": self.token_url, "run_dir": str(self.run_dir),
                "faults": self.faults.profile.name, "seed": self.faults.seed}
        if self.smtp:
            line.update(smtp_host=self.smtp.host, smtp_port=self.smtp.port)
        if self.cutover_profile_path is not None:
            line["cutover_profile"] = str(self.cutover_profile_path)
        return line

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.smtp:
            self.smtp.stop()
        self._server.shutdown()  # stops the accept loop
        self._server.close_connections()  # ends idle keep-alive threads now rather than after IDLE_TIMEOUT
        self._server.server_close()
        self._thread.join(timeout=10)
        if self._owns_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        else:  # a kept run folder keeps its CA and profile, but not the secret of a tenant that no longer runs
            (self.run_dir / "client_secret").unlink(missing_ok=True)
            (self.run_dir / "cutover_client_secret").unlink(missing_ok=True)

    # ---- what a tool or a test may ask the running tenant (public: nothing else reaches into it) ---------------
    @property
    def requests(self) -> RequestLog:
        """Every Exchange cmdlet and Graph call received, and whether it writes (requestlog.py)."""
        return self.app.requests

    def now(self) -> float:
        """The sandbox clock now (tokens, delays and the timeline run on it; tests may move a manual one)."""
        return self.app.backend.now()

    @property
    def started_at(self) -> float:
        """The sandbox clock when the tenant was loaded (timeline times are on this clock)."""
        return self.state.timeline.start

    def check(self):
        """The timeline check (timeline.Report: gaps, over-grants) against the grants held at the start."""
        with self.app.lock:
            return self.state.check(self.original_grants)

    def census(self) -> dict:
        """{"tenant": name, "mailboxes": n, "apps": n (the admin app not counted)}."""
        with self.app.lock:
            return self.state.census()

    def access(self, app_ids=None) -> dict:
        """Per app (every app but the admin, or those of `app_ids` the tenant holds): its effective SendAs grants,
        RBAC scope and Entra SMTP.SendAsApp claim now (state.AppAccess)."""
        with self.app.lock:
            return self.state.access_now(app_ids)

    def mail_access(self, app_ids=None) -> dict:
        """Per app followed on Graph/EWS: per permission (Mail.Read, full_access_as_app, ...), the mailboxes a token
        issued now reaches now (None: every mailbox). state.mail_access_now."""
        with self.app.lock:
            return self.state.mail_access_now(app_ids)

    def mail_config(self, app_ids) -> dict[str, dict]:
        """Per app of `app_ids` the tenant holds: its Entra consents of AAP-fenced permissions and its Application
        Access Policies as configured now, {"consents": [permission, ...], "policies": [(access right, scope
        address), ...]}, both sorted (what a check compares before and after a run)."""
        from migrator.sandbox import aap

        with self.app.lock:
            state = self.state
            out: dict[str, dict] = {}
            for app_id in app_ids:
                app = state.apps.get(app_id.lower())
                if app is None:
                    continue
                scopes = [(p.access_right, state.recipients[p.scope].primary_smtp if p.scope in state.recipients
                           else p.scope) for p in aap.policies_of(state, app.app_id)]
                out[app.app_id] = {"consents": sorted(state.mail_claims(app)), "policies": sorted(scopes)}
            return out

    def pairs_seen(self) -> set[tuple[str, str]]:
        """Every (app, mailbox) pair that held SendAs or RBAC access at some time, or at the start."""
        with self.app.lock:
            return set(self.original_reach) | self.state.pairs_seen()

    @contextmanager
    def exchange_hook(self, hook: Callable[[str, dict], None]) -> Iterator[None]:
        """While inside, `hook(cmdlet, params)` runs before every cmdlet the Exchange endpoint serves; it may raise
        api.CmdletError to refuse the cmdlet (a fault of the caller's choosing, e.g. a mailbox being moved)."""
        endpoint = self.app.exchange
        backend = endpoint.backend
        endpoint.backend = _HookedBackend(backend, hook)
        try:
            yield
        finally:
            endpoint.backend = backend

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class _HookedBackend:
    """A Backend whose invoke() first calls a hook (Sandbox.exchange_hook); everything else goes through."""

    def __init__(self, backend: Backend, hook: Callable[[str, dict], None]) -> None:
        self._backend, self._hook = backend, hook

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def invoke(self, cmdlet: str, params: dict, caller):
        self._hook(cmdlet, params)
        return self._backend.invoke(cmdlet, params, caller)


def serve_backend(backend: Backend, *, admin_client_id: str, admin_secret: str, seed: int = 0,
                  faults: str | FaultProfile | None = "none", port: int = 0, run_dir: Path | str | None = None,
                  host: str = "127.0.0.1", state: object = None,
                  throttle_time: Callable[[], float] | None = None, smtp: bool = False,
                  smtp_port: int = 0) -> Sandbox:
    """Serve any Backend over HTTPS in a background thread (start_sandbox wraps this around a TenantState).

    `throttle_time`: the throttle bucket's time source (default: faults.bucket_time, real or sandbox time).
    `smtp`: also serve SMTP submission on `smtp_port` (0: a free port); the backend must answer smtp.SmtpBackend."""
    injector = FaultInjector(load_profile(faults), seed, throttle_time or bucket_time(backend.now))
    owns = run_dir is None
    run = Path(tempfile.mkdtemp(prefix="migrator-sandbox-")) if run_dir is None else Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    app = SandboxApp(backend, injector, admin_client_id)
    tls = make_tls_files(run)
    try:
        server = SandboxHTTPServer((host, port), app, tls.server_context())
    except OSError as exc:
        if owns:
            shutil.rmtree(run, ignore_errors=True)
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", value=str(port)) from None
    app.tokens.base_url = server.base_url
    smtp_endpoint = None
    if smtp:
        try:
            smtp_backend = cast(SmtpBackend, backend)  # StateBackend answers both protocols
            smtp_endpoint = SmtpEndpoint(smtp_backend, app.tokens, tls.server_context(), app.lock, host, smtp_port)
            smtp_endpoint.start()
        except OSError as exc:
            server.server_close()
            if owns:
                shutil.rmtree(run, ignore_errors=True)
            raise InputError(f"cannot listen for SMTP on {host}:{smtp_port}: {exc.strerror or exc}",
                             value=str(smtp_port)) from None
    secret_file = write_secret_file(run / "client_secret", admin_secret)
    profile_path = write_profile(run / "profile.toml", tenant_id=backend.tenant_id, client_id=admin_client_id,
                                 authority=f"{server.base_url}/{backend.tenant_id}", exchange_url=server.base_url,
                                 graph_url=server.base_url, ca_bundle=tls.ca_pem, secret_file=secret_file,
                                 smtp=(smtp_endpoint.host, smtp_endpoint.port) if smtp_endpoint else None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"sandbox-{server.server_address[1]}", daemon=True)
    thread.start()
    return Sandbox(tenant_id=backend.tenant_id, tenant_domain=backend.tenant_domain, client_id=admin_client_id,
                   client_secret=admin_secret, base_url=server.base_url, ca_bundle=tls.ca_pem,
                   profile_path=profile_path, run_dir=run, state=state if state is not None else backend,
                   faults=injector, app=app, smtp=smtp_endpoint, _server=server, _thread=thread,
                   _owns_run_dir=owns)


def load_fixture_data(fixture: str | Path | dict | None) -> dict:
    """A tenant fixture as a dict (a deep copy when given a dict); the bundled sample tenant when None."""
    if isinstance(fixture, dict):
        return copy.deepcopy(fixture)
    path = Path(fixture) if fixture is not None else DEFAULT_FIXTURE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("tenant fixture not found", path=str(path)) from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the tenant fixture: {exc}", path=str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("tenant"), dict) or not isinstance(data.get("admin"),
                                                                                                dict):
        raise InputError("not a tenant fixture (needs 'tenant' and 'admin' objects; see INTERNALS.md §2)",
                         path=str(path))
    return data


GRAPH_WRITE_ROLES = ("AppRoleAssignment.ReadWrite.All", "Directory.ReadWrite.All")


def split_admin(data: dict) -> dict:
    """The fixture with least privilege: the run's admin app keeps Exchange and Graph *read*; a second admin app
    (`cutover_admin`) holds only Graph Application.Read.All + AppRoleAssignment.ReadWrite.All (the cut-over's)."""
    from migrator.sandbox.state import det_uuid

    data = copy.deepcopy(data)
    admin = data["admin"]
    admin["app_roles"] = [r for r in admin.get("app_roles") or () if r.get("permission") not in GRAPH_WRITE_ROLES]
    if not data.get("cutover_admin"):
        data["cutover_admin"] = {
            "client_id": det_uuid("cutover-admin", str(data["tenant"].get("id", ""))),
            "display_name": f"{admin.get('display_name') or 'migrator'} cut-over", "secret": None,
            "app_roles": [{"resource": "Microsoft Graph", "permission": "Application.Read.All"},
                          {"resource": "Microsoft Graph", "permission": "AppRoleAssignment.ReadWrite.All"}],
            "directory_roles": []}
    return data


def start_sandbox(fixture: str | Path | dict | None = None, *, seed: int = 0,
                  faults: str | FaultProfile | None = "none", settings=None, port: int = 0,
                  run_dir: Path | str | None = None, clock=None, smtp: bool = True, smtp_port: int = 0,
                  least_privilege: bool = False) -> Sandbox:
    """Load a tenant fixture and serve it over HTTPS on 127.0.0.1 in a background thread, with SMTP submission
    (STARTTLS + AUTH XOAUTH2, sandbox/smtp.py) on `smtp_port` unless `smtp` is False.

    `fixture`: a path, a dict, or None for the bundled sample tenant. `faults`: none | mild | chaos | a
    .json/.toml file. `settings`: a SandboxSettings. `clock`: a Clock (a manual one lets tests move time).
    `least_privilege`: split the admin app (split_admin): the main profile lacks the Graph write permission, which
    the second profile (`cutover_profile_path`) holds.
    """
    from migrator.sandbox.clock import Clock
    from migrator.sandbox.settings import SandboxSettings
    from migrator.sandbox.state import TenantState
    from migrator.sandbox.state_backend import StateBackend

    data = load_fixture_data(fixture)
    if least_privilege:
        data = split_admin(data)
    admin = data["admin"]
    if not admin.get("secret"):
        admin["secret"] = secrets.token_urlsafe(32)  # INTERNALS §2: generated at start when the fixture has none
    state = TenantState.from_fixture(data, clock=clock or Clock(), settings=settings or SandboxSettings())
    backend = StateBackend(state)
    sb = serve_backend(backend, admin_client_id=backend.admin_client_id, admin_secret=admin["secret"], seed=seed,
                       faults=faults, port=port, run_dir=run_dir, state=state, smtp=smtp, smtp_port=smtp_port)
    # The profile's read-after-write lag acts in the state (readlag.py), seeded apart from the HTTP faults.
    state.read_lag.configure(sb.faults.profile.read_lag_s, sb.faults.profile.read_lag_jitter_s, seed)
    sb.original_grants = frozenset(backend.original_grants)
    sb.original_reach = frozenset(backend.original_reach)
    second = state.apps.get(state.cutover_admin_app_id) if state.cutover_admin_app_id else None
    if second is not None and second.secret:
        sb.cutover_profile_path = write_profile(
            sb.run_dir / "profile-cutover.toml", tenant_id=sb.tenant_id, client_id=second.app_id,
            authority=sb.authority, exchange_url=sb.base_url, graph_url=sb.base_url, ca_bundle=sb.ca_bundle,
            secret_file=write_secret_file(sb.run_dir / "cutover_client_secret", second.secret),
            name="sandbox-cutover")
    return sb
