"""One HTTP session for the tenant: pooling, timeouts, retries, throttling, a token refresh on 401, typed errors.

Retried (tenacity): 408, 429, 500, 502, 503, 504, dropped/reset connections, read timeouts, the plain-text
"maximum number of concurrent requests" answer, and (up to 3 tries) a 403 whose body is not JSON (NUL bytes).
Retry-After (seconds or an HTTP date) is honoured; otherwise
exponential backoff with full jitter, capped. Throttle answers also feed the AdaptiveLimiter, so the whole pool
slows down, not just the request that was refused. `verify=` goes with every request (REQUESTS_CA_BUNDLE
overrides a Session's verify, not a per-request one).
"""

from __future__ import annotations

import collections
import email.utils
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from migrator.exchange.errors import (
    AlreadyExists,
    ApiError,
    AuthError,
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


class _Retry(Exception):
    """Internal: this attempt may be retried; `final` is what to raise when the attempts run out."""

    def __init__(self, final: ApiError, retry_after: float | None = None) -> None:
        super().__init__(str(final))
        self.final, self.retry_after = final, retry_after


class _Refresh(Exception):
    """Internal: a 401 on the first try; refresh the token and send again (once)."""


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


def describe_connection_error(exc: BaseException, url: str, profile: Profile | None = None) -> tuple[str, str]:
    """(host, what the admin should check) for a failure below HTTP: TLS, DNS, refused, timeout."""
    parsed = urlparse(url)
    host = parsed.hostname or url
    port = parsed.port or 443
    text = str(exc)
    ca = (profile.ca_bundle if profile else "") or ""
    if isinstance(exc, (requests.exceptions.SSLError, ssl.SSLError)) or "CERTIFICATE_VERIFY" in text:
        where = f"the CA bundle {ca}" if ca else "the system's trusted CAs"
        return host, (f"TLS verification of {host} failed against {where}: set ca_bundle in the profile to the CA "
                      f"that signed its certificate (a TLS-inspecting proxy needs its own CA), check the host name "
                      f"and this machine's clock")
    if "Name or service not known" in text or "getaddrinfo" in text or "NameResolution" in text or \
            "nodename nor servname" in text or "Temporary failure in name resolution" in text:
        return host, (f"the host name {host} does not resolve: check the cloud and the URLs in the profile, DNS, "
                      f"and proxy settings (HTTPS_PROXY)")
    if "Connection refused" in text or "Errno 111" in text:
        return host, (f"nothing accepts connections at {host}:{port}: check the URL in the profile, that the "
                      f"service is running, and firewalls")
    if isinstance(exc, requests.exceptions.Timeout):
        return host, f"{host}:{port} did not answer in time: check the network path, firewall and proxy"
    return host, f"the connection to {host}:{port} failed: check the network, firewall and proxy settings"


def _is_fatal_connection_error(exc: BaseException) -> bool:
    """Errors that retrying will not fix quickly: TLS, DNS, refused."""
    if isinstance(exc, requests.exceptions.SSLError):
        return True
    text = str(exc)
    return any(s in text for s in ("Name or service not known", "getaddrinfo", "NameResolution",
                                   "Temporary failure in name resolution", "nodename nor servname"))


class ApiSession:
    """requests + tenacity + limiter + tokens. `request(...)` returns parsed JSON (or None for an empty body)."""

    def __init__(self, profile: Profile, tokens: Any, limiter: AdaptiveLimiter | None = None, *,
                 max_attempts: int = 10, max_wait: float = 60.0, backoff: float = 0.5, backoff_cap: float = 20.0,
                 refused_attempts: int = 3, nul_403_attempts: int = 3, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.profile, self.tokens = profile, tokens
        self.limiter = limiter or AdaptiveLimiter()
        # Exchange and Graph throttle separately (each its own budget), so each gets its own limiter.
        self.limiters = {"exchange": self.limiter,
                         "graph": AdaptiveLimiter(initial=4, maximum=self.limiter.maximum)}
        self.max_attempts, self.max_wait = max_attempts, max_wait
        self.refused_attempts, self.nul_403_attempts = refused_attempts, nul_403_attempts
        self._wait_exp = wait_random_exponential(multiplier=backoff, max=backoff_cap)
        self._sleep = sleep
        self.session = session or requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(8, self.limiter.maximum + 4), max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()  # HTTP requests sent, per operation
        self.retries: collections.Counter[str] = collections.Counter()
        # failed reads: no usable answer after every retry (unreachable, throttled, 5xx)
        self.failures: collections.Counter[str] = collections.Counter()
        # answered with an error (4xx: not found, forbidden, bad parameters): an answer, not a failed read
        self.answered_errors: collections.Counter[str] = collections.Counter()

    # -- public -----------------------------------------------------------------------------------------
    def request(self, method: str, url: str, *, resource: str, operation: str, service: str,
                json: Any = None, headers: dict | None = None, params: dict | None = None,
                error_params: dict | None = None) -> Any:
        """Send with retries; returns the JSON body (None if empty). Raises a typed ApiError subclass."""
        state = {"refreshed": False}
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type((_Retry, _Refresh)),
            sleep=self._sleep,
            reraise=True,
            before_sleep=lambda rs: self._count(self.retries, operation),
        )
        try:
            for attempt in retrying:
                with attempt:
                    n = attempt.retry_state.attempt_number
                    return self._attempt(method, url, resource=resource, operation=operation, service=service,
                                         json=json, headers=headers, params=params, error_params=error_params,
                                         state=state, attempt_number=n)
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

    # -- internals --------------------------------------------------------------------------------------
    def _count(self, counter: collections.Counter, key: str) -> None:
        with self._lock:
            counter[key] += 1

    def _wait(self, rs: RetryCallState) -> float:
        exc = rs.outcome.exception() if rs.outcome else None
        if isinstance(exc, _Refresh):
            return 0.0
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_wait)
        return self._wait_exp(rs)

    def _attempt(self, method, url, *, resource, operation, service, json, headers, params, error_params, state,
                 attempt_number):
        token = self.tokens.token(resource, force_refresh=state["refreshed"] and state.get("pending_refresh", False))
        state["pending_refresh"] = False
        hdrs = {"Authorization": f"Bearer {token}", "Accept": "application/json",
                "client-request-id": str(uuid.uuid4()), "User-Agent": "migrator"}
        if headers:
            hdrs.update(headers)
        timeout = (self.profile.connect_timeout, self.profile.timeout)
        limiter = self.limiters.get(service, self.limiter)
        with limiter.slot():
            self._count(self.calls, operation)
            try:
                resp = self.session.request(method, url, json=json, params=params, headers=hdrs, timeout=timeout,
                                            verify=self.profile.verify)
                body = resp.content  # read the whole body inside the slot (a reset mid-body is retried too)
            except requests.exceptions.RequestException as exc:
                host, hint = describe_connection_error(exc, url, self.profile)
                final = Unreachable(f"cannot reach {host} ({type(exc).__name__})", operation=operation,
                                    params=error_params, hint=hint)
                if _is_fatal_connection_error(exc):
                    raise final from None
                if ("Connection refused" in str(exc) or "Errno 111" in str(exc)) and \
                        attempt_number >= self.refused_attempts:
                    raise final from None
                raise _Retry(final) from None
            status = resp.status_code
            text_probe = body[:4096].decode("utf-8", "replace").lower() if status >= 300 else ""
            throttled = status in THROTTLE_STATUS or CONCURRENCY_TEXT in text_probe
            if throttled:
                limiter.on_throttle(parse_retry_after(resp.headers.get("Retry-After")))
            else:
                limiter.on_success()
        if 200 <= status < 300:
            if not body.strip():
                return None
            try:
                return resp.json()
            except ValueError:
                raise ApiError(f"answered HTTP {status} with a body that is not JSON", status=status,
                               operation=operation, params=error_params,
                               text=parse_error_body(body)["text"]) from None
        err = parse_error_body(body)
        kw = dict(status=status, code=err["code"], exception_type=err["exception_type"], errid=err["errid"],
                  text=err["text"] or err["message"], operation=operation, params=error_params)
        detail = redact(err["text"] or err["message"] or resp.reason or "")
        if throttled or status in RETRY_STATUS:
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            cls = Throttled if throttled else ServerError
            what = "throttled" if throttled else "server error"
            raise _Retry(cls(f"HTTP {status} {what} after {attempt_number} attempts: {detail}",
                             hint="the tenant is busy; try again later or lower the concurrency", **kw),
                         retry_after)
        if status == 401:
            if not state["refreshed"]:
                state["refreshed"] = True
                state["pending_refresh"] = True
                raise _Refresh()
            raise AuthError(f"HTTP 401 token refused: {detail}", hint=(
                f"the token for {resource} was refused: check that the app {self.profile.client_id} has "
                f"admin-consented permissions on this resource and that tenant_id is right"), **kw)
        etype = short_type(err["exception_type"])
        if etype == "ManagementObjectNotFoundException" or \
                (service == "graph" and status == 404
                 and err["code"] in ("Request_ResourceNotFound", "ResourceNotFound", "")):
            raise NotFound(f"not found: {detail}", **kw)
        if etype == "ADObjectAlreadyExistsException":
            raise AlreadyExists(f"already exists: {detail}", **kw)
        if status == 403 and not (err["code"] or err["exception_type"]) and attempt_number < self.nul_403_attempts:
            # A 403 whose body is not an error document (the NUL bytes) is sometimes a transient refusal: try again
            # a few times; a missing permission stays 403 and is reported below.
            raise _Retry(Forbidden(f"HTTP 403 access denied (body not JSON){': ' + detail if detail else ''}",
                                   hint=FORBIDDEN_HINTS.get(service, "check the app's permissions and roles"), **kw))
        if status == 403:
            raise Forbidden(f"HTTP 403 access denied{': ' + detail if detail else ''}",
                            hint=FORBIDDEN_HINTS.get(service, "check the app's permissions and roles"), **kw)
        label = f" {etype}" if etype else (f" {err['code']}" if err["code"] else "")
        raise ApiError(f"HTTP {status}{label}: {detail}", **kw)
