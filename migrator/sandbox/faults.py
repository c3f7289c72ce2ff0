"""Fault injection for the sandbox's Exchange and Graph endpoints: a named or file-defined profile, seeded.

Every faultable request draws the same fixed set of random numbers from one seeded generator, so a given seed and
request sequence always yields the same faults. A fault is decided *before* the tenant state is touched, so a
failed call never half-applies, with one deliberate exception: `post_commit_drop`, where a write is applied and
then the connection drops before the answer (the client cannot tell whether it happened).

Throttling is a token bucket per (service, tenant). It refills on whichever runs faster, real time or the sandbox
clock (`bucket_time`): a client that honours Retry-After gets through even when a test holds a manual clock, and
advancing the clock refills it too. Whether the bucket is empty therefore depends on request timing; every other
fault depends only on the seed and the request order. Tests that need throttling itself to be exact pass their
own time source. The token endpoint and /_sandbox are never faulted.
"""

from __future__ import annotations

import json
import math
import random
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path

from migrator.errors import InputError

CONCURRENCY_TEXT = ("You have reached the maximum number of concurrent requests per tenant. "
                    "Please wait and try again.")


@dataclass(frozen=True)
class FaultProfile:
    name: str = "none"
    latency_mean_ms: float = 0.0  # added to every faultable request
    latency_jitter_ms: float = 0.0  # uniform +/- around the mean (never below zero)
    throttle_rate: float = 0.0  # token-bucket refill, requests per second per tenant and service; 0 = off
    throttle_burst: int = 0  # bucket size
    # Graph's own bucket (each request inside a $batch takes a token too); 0 = the same as throttle_rate / burst.
    # Lower than Exchange's in `chaos`: an inventory's app-permission reads then meet sustained Graph throttling.
    graph_throttle_rate: float = 0.0
    graph_throttle_burst: int = 0
    throttle_no_retry_after: float = 0.0  # share of 429s sent without a Retry-After header
    throttle_concurrency_text: float = 0.0  # share of 429s answered with the plain-text concurrency message
    max_concurrent: int = 0  # requests in flight per tenant and service before the concurrency answer; 0 = off
    transient_rate: float = 0.0  # share of requests answered 500 or 503 (half each)
    drop_rate: float = 0.0  # share of requests whose connection closes without an answer
    nul_403_rate: float = 0.0  # share of requests answered 403 with a body of NUL bytes
    forbidden_nul_share: float = 0.0  # share of genuine 403s (missing role) whose body is NUL bytes
    post_commit_drop_rate: float = 0.0  # share of writes applied, then the connection dropped
    # Read-after-write lag (readlag.py): after each write, admin reads of the object it touched (Exchange Get-*,
    # Test-ServicePrincipalAuthorization, Graph appRoleAssignments) show the earlier state for this many seconds of
    # the sandbox clock, +/- read_lag_jitter_s (uniform, seeded, one draw per write). Reads only: the data plane and
    # the timeline follow the real state. 0 = off.
    read_lag_s: float = 0.0
    read_lag_jitter_s: float = 0.0
    # Not random: how this endpoint behaves for named cmdlets (case-insensitive).
    # Refused as Exchange refuses an unknown cmdlet (403, NUL body labelled gzip), e.g. the Get-EXO* names.
    refused_cmdlets: tuple[str, ...] = ()
    # Answered as a pipeline that failed part-way: 200, the rows but the last, and `@adminapi.errors`.
    pipeline_error_cmdlets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "name":
                continue
            if f.name.endswith("_cmdlets"):
                if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
                    raise ValueError(f"{f.name} must be a list of cmdlet names, not {value!r}")
                object.__setattr__(self, f.name, tuple(v.strip().lower() for v in value))
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{f.name} must be a number >= 0, not {value!r}")
            if f.name.endswith(("_rate", "_share", "_text", "_after")) and not f.name.endswith("throttle_rate") \
                    and value > 1:
                raise ValueError(f"{f.name} is a probability and must be between 0 and 1, not {value!r}")


PROFILES: dict[str, FaultProfile] = {
    "none": FaultProfile(),
    "mild": FaultProfile(name="mild", latency_mean_ms=5, latency_jitter_ms=5, throttle_rate=100, throttle_burst=200,
                         throttle_no_retry_after=0.2, throttle_concurrency_text=0.1, transient_rate=0.01,
                         drop_rate=0.002, nul_403_rate=0.002, forbidden_nul_share=0.5),
    "chaos": FaultProfile(name="chaos", latency_mean_ms=10, latency_jitter_ms=10, throttle_rate=30, throttle_burst=40,
                          graph_throttle_rate=20, graph_throttle_burst=30,
                          throttle_no_retry_after=0.3, throttle_concurrency_text=0.3, transient_rate=0.05,
                          drop_rate=0.03, nul_403_rate=0.02, forbidden_nul_share=0.5, post_commit_drop_rate=0.05,
                          read_lag_s=3.0, read_lag_jitter_s=2.0),
}


def load_profile(spec: str | FaultProfile | None) -> FaultProfile:
    """A profile by name (`none`, `mild`, `chaos`) or from a JSON/TOML file; a file may set `base` to a name."""
    if spec is None:
        return PROFILES["none"]
    if isinstance(spec, FaultProfile):
        return spec
    if spec in PROFILES:
        return PROFILES[spec]
    path = Path(spec)
    if not path.is_file():
        raise InputError(f"unknown fault profile; use one of {', '.join(PROFILES)} or a .json/.toml file",
                         value=spec)
    try:
        raw = path.read_text(encoding="utf-8")
        data = tomllib.loads(raw) if path.suffix.lower() == ".toml" else json.loads(raw)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the fault profile: {exc}", path=str(path)) from None
    if not isinstance(data, dict):
        raise InputError("a fault profile must be a table/object of settings", path=str(path))
    base_name = data.pop("base", "none")
    if base_name not in PROFILES:
        raise InputError(f"unknown base profile; use one of {', '.join(PROFILES)}", path=str(path), field="base",
                         value=str(base_name))
    known = {f.name for f in fields(FaultProfile)}
    for key in data:
        if key not in known:
            raise InputError(f"unknown setting; known: {', '.join(sorted(known - {'name'}))}", path=str(path),
                             field=key)
    try:
        return replace(PROFILES[base_name], **{"name": path.stem, **data})
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc), path=str(path)) from None


@dataclass(frozen=True)
class Decision:
    """What happens to one request. kind: None (serve it), drop, throttle, transient, nul403."""

    latency: float = 0.0  # seconds to wait before answering
    kind: str | None = None
    throttle_style: str = ""  # retry_after | no_retry_after | concurrency
    retry_after: int = 0
    transient_status: int = 0
    post_commit_drop: bool = False  # apply the write, then drop the connection
    forbidden_nul: bool = False  # if this request earns a genuine 403, send NUL bytes


def bucket_time(sandbox_now: Callable[[], float]) -> Callable[[], float]:
    """Seconds elapsed for the throttle bucket: the larger of real elapsed time and sandbox-clock elapsed time."""
    import time

    real0, sandbox0 = time.monotonic(), sandbox_now()

    def now() -> float:
        return max(time.monotonic() - real0, sandbox_now() - sandbox0)

    return now


class FaultInjector:
    def __init__(self, profile: FaultProfile, seed: int, now: Callable[[], float]) -> None:
        self.profile, self.seed, self._now = profile, seed, now
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._in_flight: dict[tuple[str, str], int] = {}
        self.counts: dict[str, int] = {}  # fault kind -> how many times it fired (for tests and the bench)
        self._queued: list[str] = []  # faults promised to the next requests, whatever the draws say

    def queue(self, *kinds: str) -> None:
        """Give the next faultable requests these faults (drop, transient, throttle), one each, in order.

        For tests that must see a path taken: random rates only make it likely, and a short run can miss it."""
        for kind in kinds:
            if kind not in ("drop", "transient", "throttle"):
                raise ValueError(f"only drop, transient and throttle can be queued, not {kind!r}")
        with self._lock:
            self._queued.extend(kinds)

    def _bucket(self, service: str) -> tuple[float, float]:
        """(refill rate per second, size) of a service's bucket."""
        p = self.profile
        if service == "graph" and p.graph_throttle_rate > 0:
            return p.graph_throttle_rate, float(p.graph_throttle_burst or p.throttle_burst)
        return p.throttle_rate, float(p.throttle_burst)

    def _take(self, key: tuple[str, str]) -> float:
        """Consume one bucket token; return 0 when granted, else the seconds until one is available."""
        rate, burst = self._bucket(key[0])
        if rate <= 0:
            return 0.0
        now = self._now()
        tokens, last = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - last) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate

    def _count(self, kind: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def decide(self, service: str, tenant: str, *, is_write: bool) -> Decision:
        p = self.profile
        with self._lock:
            # Always the same draws in the same order, whatever the outcome: determinism under a seed.
            u_lat, u_drop, u_thr_style, u_trans, u_trans_kind, u_nul, u_post, u_fnul = (
                self._rng.random() for _ in range(8))
            latency = max(0.0, p.latency_mean_ms + (2 * u_lat - 1) * p.latency_jitter_ms) / 1000.0
            fnul = u_fnul < p.forbidden_nul_share
            queued = self._queued.pop(0) if self._queued else None
            if queued == "throttle":
                self._count("throttle")
                return Decision(kind="throttle", throttle_style="retry_after", retry_after=1, latency=latency,
                                forbidden_nul=fnul)
            if queued == "transient":
                self._count("transient")
                return Decision(kind="transient", transient_status=503, latency=latency, forbidden_nul=fnul)
            if queued == "drop" or u_drop < p.drop_rate:
                self._count("drop")
                return Decision(kind="drop", latency=latency, forbidden_nul=fnul)
            wait = self._take((service, tenant))
            if wait > 0:
                style = ("concurrency" if u_thr_style < p.throttle_concurrency_text else
                         "no_retry_after" if u_thr_style < p.throttle_concurrency_text + p.throttle_no_retry_after
                         else "retry_after")
                self._count("throttle")
                return Decision(kind="throttle", throttle_style=style, retry_after=max(1, math.ceil(wait)),
                                latency=latency, forbidden_nul=fnul)
            if u_trans < p.transient_rate:
                self._count("transient")
                return Decision(kind="transient", transient_status=500 if u_trans_kind < 0.5 else 503,
                                latency=latency, forbidden_nul=fnul)
            if u_nul < p.nul_403_rate:
                self._count("nul403")
                return Decision(kind="nul403", latency=latency, forbidden_nul=fnul)
            post = is_write and u_post < p.post_commit_drop_rate
            if post:
                self._count("post_commit_drop")
            return Decision(post_commit_drop=post, latency=latency, forbidden_nul=fnul)

    def inner_throttle(self, service: str, tenant: str) -> int:
        """For one request inside a Graph $batch: 0 to serve it, else its Retry-After seconds."""
        with self._lock:
            wait = self._take((service, tenant))
            if wait > 0:
                self._count("throttle_inner")
                return max(1, math.ceil(wait))
            return 0

    def enter(self, service: str, tenant: str) -> bool:
        """Count a request in flight; False when over max_concurrent (answer with the concurrency text)."""
        with self._lock:
            key = (service, tenant)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            limit = self.profile.max_concurrent
            if limit and self._in_flight[key] > limit:
                self._count("concurrency")
                return False
            return True

    def leave(self, service: str, tenant: str) -> None:
        with self._lock:
            key = (service, tenant)
            self._in_flight[key] = max(0, self._in_flight.get(key, 0) - 1)
