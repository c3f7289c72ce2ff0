"""One HTTP session for the tenant: pooling, timeouts, retries, throttling, a token refresh on 401, typed errors.

Retried (tenacity), each kind of failure within its own budget (`Budget`: time since that kind's first failure in
this request, and/or a number of tries), so that one kind cannot use up another's:
- throttle: 429 and the plain-text "maximum number of concurrent requests" answer (long budget: a busy tenant is
  waited out, honouring Retry-After, seconds or an HTTP date);
- server: 408, 500, 502, 503, 504;
- dropped: a connection reset or closed without an answer, a read timeout, a body that cannot be decoded;
- refused: nothing listens (ECONNREFUSED): a few tries only;
- nul403: a 403 whose body is not an error document (NUL bytes labelled `Content-Encoding: gzip`, which requests
  cannot decode). Exchange answers an unknown or refused cmdlet that way, and sometimes a transient refusal too, so
  it is retried a few times, then raised as `CmdletRefused` (Exchange) or `Forbidden` (Graph). A 403 with a JSON
  error body is final at once.
TLS and DNS failures are final at once. Failures are classified by exception type, never by message text.
Without Retry-After the wait is exponential in the tries of that kind, with full jitter, capped. Throttle answers
also feed the AdaptiveLimiter, so the whole pool slows down, not just the request that was refused. `verify=` goes
with every request (REQUESTS_CA_BUNDLE overrides a Session's verify, not a per-request one).
"""

from __future__ import annotations

import collections
import email.utils
import random
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying

from migrator.exchange.errors import (
    TYPED_EXCEPTIONS,
    ApiError,
    AuthError,
    CmdletRefused,
    Forbidden,
    NotFound,
    ServerError,
    Throttled,
    Unreachable,
    parse_error_body,
    short_type,
)
from migrator.exchange.profile import Profile
from migrator.exchange.ratelimit import AdaptiveLimiter
from migrator.exchange.redact import redact

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Throttling answers feed the limiter; a 503 is retried like any 5xx but is not taken as a budget signal (it is
# as often a transient failure, and cutting the pace on those starved the pool in the chaos tests).
THROTTLE_STATUS = frozenset({429})
CONCURRENCY_TEXT = "maximum number of concurrent requests"

FORBIDDEN_HINTS = {
    "exchange": "grant the app the application permission Exchange.ManageAsApp on 'Office 365 Exchange Online' "
                "(with admin consent) and assign it an Entra role: Exchange Administrator for changes, or "
                "Global Reader / View-Only Organization Management for an inventory",
    "graph": "grant the app the Microsoft Graph application permissions Application.Read.All and "
             "AppRoleAssignment.ReadWrite.All (with admin consent)",
}


@dataclass(frozen=True)
class Budget:
    """How long one kind of failure is retried within one request: `seconds` since its first failure (a wait that
    would end past it is not started), `tries` of that kind (the first included). None = no bound of that sort."""

    seconds: float | None = None
    tries: int | None = None


# Throttling is waited out for long (a sustained throttle is the tenant's pace, not a failure); a NUL 403 gets a
# few tries only (a cmdlet refusal looks the same on the wire and must surface quickly).
DEFAULT_BUDGETS: dict[str, Budget] = {
    "throttle": Budget(seconds=900.0),
    "server": Budget(seconds=180.0),
    "dropped": Budget(seconds=120.0),
    "refused": Budget(seconds=30.0, tries=3),
    "nul403": Budget(seconds=60.0, tries=4),
    "refresh": Budget(tries=2),  # a 401: refresh the token and send again, once
}


class _Retry(Exception):
    """Internal: this attempt may be retried within the budget of `kind`; `final` is raised when it runs out."""

    def __init__(self, final: ApiError, kind: str, retry_after: float | None = None) -> None:
        super().__init__(str(final))
        self.final, self.kind, self.retry_after = final, kind, retry_after


class _Refresh(Exception):
    """Internal: a 401 on the first try; refresh the token and send again (once)."""


class _Tries:
    """Per request: when each kind of failure first came and how often (what the budgets are checked against)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.first: dict[str, float] = {}
        self.count: collections.Counter[str] = collections.Counter()

    def record(self, kind: str) -> None:
        self.first.setdefault(kind, self.clock())
        self.count[kind] += 1

    def within(self, kind: str, budget: Budget, upcoming_wait: float) -> bool:
        if budget.tries is not None and self.count[kind] >= budget.tries:
            return False
        return budget.seconds is None or self.clock() + upcoming_wait - self.first[kind] <= budget.seconds

    def spent(self, kind: str) -> str:
        n = self.count[kind] + 1  # the attempt being classified is not recorded yet
        secs = self.clock() - self.first[kind] if kind in self.first else 0.0
        return f"{n} tr{'y' if n == 1 else 'ies'} in {secs:.0f} s"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date. None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and everything it wraps (requests -> urllib3 MaxRetryError.reason -> the socket error)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if any(e is s for s in seen):
            continue
        seen.append(e)
        linked = [e.__cause__, e.__context__, getattr(e, "reason", None), *getattr(e, "args", ())]
        todo.extend(x for x in linked if isinstance(x, BaseException))
    return seen


def connection_failure_kind(exc: BaseException) -> str:
    """tls | dns | refused | timeout | dropped, from the exception types (not their text)."""
    chain = _causes(exc)

    def has(*types: type) -> bool:
        return any(isinstance(e, types) for e in chain)

    if has(requests.exceptions.SSLError, ssl.SSLError, urllib3.exceptions.SSLError):
        return "tls"
    if has(socket.gaierror, urllib3.exceptions.NameResolutionError):
        return "dns"
    if has(ConnectionRefusedError):
        return "refused"
    if has(requests.exceptions.Timeout, urllib3.exceptions.TimeoutError, socket.timeout, TimeoutError):
        return "timeout"
    return "dropped"


def describe_connection_error(exc: BaseException, url: str, profile: Profile | None = None) -> tuple[str, str]:
    """(host, what the admin should check) for a failure below HTTP: TLS, DNS, refused, timeout."""
    parsed = urlparse(url)
    host = parsed.hostname or url
    port = parsed.port or 443
    ca = (profile.ca_bundle if profile else "") or ""
    kind = connection_failure_kind(exc)
    if kind == "tls":
        where = f"the CA bundle {ca}" if ca else "the system's trusted CAs"
        return host, (f"TLS verification of {host} failed against {where}: set ca_bundle in the profile to the CA "
                      f"that signed its certificate (a TLS-inspecting proxy needs its own CA), check the host name "
                      f"and this machine's clock")
    if kind == "dns":
        return host, (f"the host name {host} does not resolve: check the cloud and the URLs in the profile, DNS, "
                      f"and proxy settings (HTTPS_PROXY)")
    if kind == "refused":
        return host, (f"nothing accepts connections at {host}:{port}: check the URL in the profile, that the "
                      f"service is running, and firewalls")
    if kind == "timeout":
        return host, f"{host}:{port} did not answer in time: check the network path, firewall and proxy"
    return host, f"the connection to {host}:{port} failed: check the network, firewall and proxy settings"


def refusal_hint(cmdlet: str) -> str:
    """What to check when Exchange refuses a cmdlet (the 403 with a NUL body): never a network hint."""
    return (f"Exchange did not run {cmdlet}: either the endpoint does not offer it through InvokeCommand (Get-EXO* "
            f"names usually are not; leave exo_cmdlets off in the profile), or the app's Exchange role does not "
            f"include it: check that the app holds Exchange.ManageAsApp and an Entra role whose Exchange role "
            f"group includes {cmdlet} (Exchange Administrator for changes; Global Reader or View-Only Organization "
            f"Management for reads)")


class ApiSession:
    """requests + tenacity + limiter + tokens. `request(...)` returns parsed JSON (or None for an empty body)."""

    def __init__(self, profile: Profile, tokens: Any, limiter: AdaptiveLimiter | None = None, *,
                 budgets: Mapping[str, Budget] | None = None, max_wait: float = 60.0, backoff: float = 0.5,
                 backoff_cap: float = 20.0, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.profile, self.tokens = profile, tokens
        self.limiter = limiter or AdaptiveLimiter()
        # Exchange and Graph throttle separately (each its own budget), so each gets its own limiter.
        self.limiters = {"exchange": self.limiter,
                         "graph": AdaptiveLimiter(initial=4, maximum=self.limiter.maximum)}
        unknown = set(budgets or {}) - set(DEFAULT_BUDGETS)
        if unknown:
            raise ValueError(f"unknown retry budget(s): {', '.join(sorted(unknown))}")
        self.budgets = {**DEFAULT_BUDGETS, **(budgets or {})}
        self.max_wait, self.backoff, self.backoff_cap = max_wait, backoff, backoff_cap
        self._random = random.Random()
        self._sleep, self._clock = sleep, clock
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(8, self.limiter.maximum + 4), max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()  # HTTP requests sent, per operation
        self.retries: collections.Counter[str] = collections.Counter()
        self.retry_kinds: collections.Counter[str] = collections.Counter()  # retries per kind of failure
        # failed reads: no usable answer after every retry (unreachable, throttled, 5xx)
        self.failures: collections.Counter[str] = collections.Counter()
        # answered with an error (4xx: not found, forbidden, bad parameters): an answer, not a failed read
        self.answered_errors: collections.Counter[str] = collections.Counter()

    # -- public -----------------------------------------------------------------------------------------
    def request(self, method: str, url: str, *, resource: str, operation: str, service: str,
                json: Any = None, headers: dict | None = None, params: dict | None = None,
                error_params: dict | None = None, weight: int = 1, report_success: bool = True) -> Any:
        """Send with retries; returns the JSON body (None if empty). Raises a typed ApiError subclass.

        `weight`: units of the service's budget this request costs (a $batch: its inner requests), taken from the
        limiter's pace. `report_success=False`: the caller tells the limiter what was served (a $batch whose
        200 answer may hold throttled inner requests)."""
        state = {"refreshed": False}
        tries = _Tries(self._clock)
        retrying = Retrying(
            retry=lambda rs: self._record(rs, tries),
            wait=lambda rs: self._wait(rs, tries),
            stop=lambda rs: self._stop(rs, tries),
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda rs: self._count(self.retries, operation),
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(method, url, resource=resource, operation=operation, service=service,
                                         json=json, headers=headers, params=params, error_params=error_params,
                                         state=state, tries=tries, weight=weight, report_success=report_success)
        except _Retry as exc:
            self._count(self.failures, operation)
            raise exc.final from None
        except _Refresh:  # pragma: no cover - _attempt raises AuthError on the second 401
            self._count(self.failures, operation)
            raise AuthError("the token was refused twice", operation=operation, status=401) from None
        except (Unreachable, Throttled, ServerError):
            self._count(self.failures, operation)
            raise
        except ApiError:
            self._count(self.answered_errors, operation)
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def api_calls(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self.calls.items()))

    def close(self) -> None:
        self.session.close()

    # -- retry policy (tenacity calls these once per failed attempt: retry, then wait, then stop) --------
    @staticmethod
    def _kind(rs: RetryCallState) -> str | None:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, _Refresh):
            return "refresh"
        if isinstance(exc, _Retry):
            return exc.kind
        return None

    def _record(self, rs: RetryCallState, tries: _Tries) -> bool:
        kind = self._kind(rs)
        if kind is None:
            return False
        tries.record(kind)
        return True

    def _wait(self, rs: RetryCallState, tries: _Tries) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, _Refresh):
            return 0.0
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait)
        kind = self._kind(rs) or ""
        high = min(self.backoff_cap, self.backoff * 2 ** max(0, tries.count[kind] - 1))
        return self._random.uniform(0, high)  # full jitter: concurrent retries spread out

    def _stop(self, rs: RetryCallState, tries: _Tries) -> bool:
        kind = self._kind(rs)
        if kind is None:  # pragma: no cover - retry() only lets these through
            return True
        if not tries.within(kind, self.budgets[kind], rs.upcoming_sleep):
            return True
        self._count(self.retry_kinds, kind)
        return False

    # -- one attempt ------------------------------------------------------------------------------------
    def _count(self, counter: collections.Counter, key: str) -> None:
        with self._lock:
            counter[key] += 1

    def _send(self, method, url, *, operation, service, json, hdrs, params, error_params, tries, weight=1,
              report_success=True):
        """Send and read the whole body inside a limiter slot. Returns (response, body or None when the body
        could not be decoded, whether it was a throttle answer)."""
        timeout = (self.profile.connect_timeout, self.profile.timeout)
        limiter = self.limiters.get(service, self.limiter)
        with limiter.slot(weight):
            self._count(self.calls, operation)
            resp = None
            try:
                resp = self.session.request(method, url, json=json, params=params, headers=hdrs, timeout=timeout,
                                            verify=self.profile.verify, stream=True)
                try:
                    body: bytes | None = resp.content  # read it all inside the slot (a reset mid-body is retried)
                except requests.exceptions.ContentDecodingError:
                    body = None  # labelled gzip but is not (the NUL-byte 403)
            except requests.exceptions.RequestException as exc:
                raise self._connection_failure(exc, url, operation, error_params, tries) from None
            finally:
                if resp is not None:
                    resp.close()
            status = resp.status_code
            text_probe = (body or b"")[:4096].decode("utf-8", "replace").lower() if status >= 300 else ""
            throttled = status in THROTTLE_STATUS or CONCURRENCY_TEXT in text_probe
            if throttled:
                limiter.on_throttle(parse_retry_after(resp.headers.get("Retry-After")))
            elif report_success or status >= 300:
                limiter.on_success(weight)
        return resp, body, throttled

    def _connection_failure(self, exc, url, operation, error_params, tries) -> Exception:
        kind = connection_failure_kind(exc)
        host, hint = describe_connection_error(exc, url, self.profile)
        final = Unreachable(f"cannot reach {host} ({type(exc).__name__})", operation=operation,
                            params=error_params, hint=hint, kind=kind)
        if kind in ("tls", "dns"):
            return final  # retrying does not fix a certificate or a name quickly
        return _Retry(final, "refused" if kind == "refused" else "dropped")

    def _attempt(self, method, url, *, resource, operation, service, json, headers, params, error_params, state,
                 tries, weight=1, report_success=True):
        token = self.tokens.token(resource, force_refresh=state["refreshed"] and state.get("pending_refresh", False))
        state["pending_refresh"] = False
        hdrs = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                "client-request-id": str(uuid.uuid4()), "User-Agent": "migrator"}
        if headers:
            hdrs.update(headers)
        resp, body, throttled = self._send(method, url, operation=operation, service=service, json=json, hdrs=hdrs,
                                           params=params, error_params=error_params, tries=tries, weight=weight,
                                           report_success=report_success)
        status = resp.status_code
        if 200 <= status < 300:
            return self._success(resp, body, operation, error_params, tries)
        err = parse_error_body(body)
        kw = dict(status=status, code=err["code"], exception_type=err["exception_type"], errid=err["errid"],
                  text=err["text"] or err["message"], operation=operation, params=error_params)
        detail = redact(err["text"] or err["message"] or resp.reason or "")
        if throttled or status in RETRY_STATUS:
            kind = "throttle" if throttled else "server"
            cls = Throttled if throttled else ServerError
            what = "throttled" if throttled else "server error"
            raise _Retry(cls(f"HTTP {status} {what} after {tries.spent(kind)}: {detail}",
                             hint="the tenant is busy; try again later or lower the concurrency", **kw),
                         kind, parse_retry_after(resp.headers.get("Retry-After")))
        if status == 401:
            if not state["refreshed"]:
                state["refreshed"] = True
                state["pending_refresh"] = True
                raise _Refresh()
            raise AuthError(f"HTTP 401 token refused: {detail}", hint=(
                f"the token for {resource} was refused: check that the app {self.profile.client_id} has "
                f"admin-consented permissions on this resource and that tenant_id is right"), **kw)
        etype = short_type(err["exception_type"])
        typed = TYPED_EXCEPTIONS.get(etype)
        if typed is None and service == "graph" and status == 404 \
                and err["code"] in ("Request_ResourceNotFound", "ResourceNotFound", ""):
            typed = (NotFound, "not found")
        if typed is not None:  # matched on the exception type, never on the status (docs/exchange.md §4)
            typed_cls, label = typed
            raise typed_cls(f"{label}: {detail}", **kw)
        if status == 403:
            raise self._forbidden(service, operation, body, detail, tries, kw)
        label = f" {etype}" if etype else (f" {err['code']}" if err["code"] else "")
        raise ApiError(f"HTTP {status}{label}: {detail}", **kw)

    def _success(self, resp, body, operation, error_params, tries) -> Any:
        status = resp.status_code
        if body is None:  # a 2xx whose body cannot be decoded: as good as a dropped answer
            raise _Retry(Unreachable(f"answered HTTP {status} with a body that cannot be decoded",
                                     operation=operation, params=error_params, kind="dropped"), "dropped")
        if not body.strip():
            return None
        try:
            return resp.json()
        except ValueError:
            raise ApiError(f"answered HTTP {status} with a body that is not JSON", status=status,
                           operation=operation, params=error_params,
                           text=parse_error_body(body)["text"]) from None

    def _forbidden(self, service, operation, body, detail, tries, kw) -> Exception:
        """A 403. With a JSON error document: final (a missing permission or role). Without one (NUL bytes,
        usually labelled gzip): Exchange's refusal of a cmdlet, which a transient 403 resembles: retried within
        the nul403 budget, then CmdletRefused (Exchange) or Forbidden (Graph)."""
        if kw["code"] or kw["exception_type"]:
            return Forbidden(f"HTTP 403 access denied{': ' + detail if detail else ''}",
                             hint=FORBIDDEN_HINTS.get(service, "check the app's permissions and roles"), **kw)
        shown = "an undecodable body" if body is None else "a body that is not an error document"
        if service == "exchange":
            final: ApiError = CmdletRefused(
                f"Exchange refused the cmdlet {operation} (HTTP 403 with {shown}, {tries.spent('nul403')})",
                cmdlet=operation, hint=refusal_hint(operation), **kw)
        else:
            final = Forbidden(f"HTTP 403 access denied ({shown}, {tries.spent('nul403')})",
                              hint=FORBIDDEN_HINTS.get(service, "check the app's permissions and roles"), **kw)
        return _Retry(final, "nul403")
