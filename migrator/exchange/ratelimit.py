"""Client-side rate limiter with adaptive concurrency: run close to the tenant's throttle budget, not over it.

Microsoft does not publish the admin API's budget, and it differs per tenant, so it is learned:
- concurrency window (AIMD): +1/limit per success (about +1 per round trip), on a throttle answer
  limit := min(limit * 0.75, in-flight - 1), at most once per cooldown so one burst of 429s counts once;
- request pacing: unknown (unpaced) until the first throttle; then the rate observed over the last seconds
  times 0.95, growing 2 %/s while no throttle comes back. A rate budget is thus tracked to within a few percent,
  a concurrency budget by the window.
All methods are thread-safe; `slot()` is the one call sites use.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


class AdaptiveLimiter:
    def __init__(self, *, initial: int = 4, minimum: int = 1, maximum: int = 32, rate: float | None = None,
                 min_rate: float = 1.0, window: float = 2.0, cooldown: float = 1.0, backoff: float = 0.75,
                 rate_margin: float = 0.95, rate_growth: float = 0.02,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.minimum, self.maximum = max(1, minimum), max(1, maximum)
        self.limit = float(min(max(initial, self.minimum), self.maximum))
        self.rate = rate  # requests/s; None = unpaced until the first throttle
        self.min_rate = min_rate
        self.window, self.cooldown, self.backoff = window, cooldown, backoff
        self.rate_margin, self.rate_growth = rate_margin, rate_growth
        self._clock, self._sleep = clock, sleep
        self._cond = threading.Condition()
        self._in_flight = 0
        self._next_send = 0.0
        self._paused_until = 0.0
        self._last_cut = -1e9
        self._done: collections.deque[float] = collections.deque()
        # counters (for the manifest and the benchmark)
        self.started = 0
        self.successes = 0
        self.throttles = 0
        self.cuts = 0
        self.max_in_flight = 0

    # -- acquiring ------------------------------------------------------------------------------------
    def acquire(self) -> None:
        with self._cond:
            while self._in_flight >= int(self.limit):
                self._cond.wait(0.5)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self.started += 1
            now = self._clock()
            start = max(now, self._paused_until)
            if self.rate:
                start = max(start, self._next_send)
                self._next_send = start + 1.0 / self.rate
            delay = start - now
        if delay > 0:
            self._sleep(delay)

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    # -- feedback -------------------------------------------------------------------------------------
    def on_success(self) -> None:
        with self._cond:
            self.successes += 1
            now = self._clock()
            self._done.append(now)
            while self._done and self._done[0] < now - self.window:
                self._done.popleft()
            if self.limit < self.maximum:
                self.limit = min(self.maximum, self.limit + 1.0 / self.limit)
                self._cond.notify()
            if self.rate:
                # +rate_growth of the rate per second: each success adds rate_growth (rate successes per second)
                self.rate += self.rate_growth

    def on_throttle(self, retry_after: float | None = None) -> None:
        """A 429 / concurrency answer: shrink the window and the pace (once per cooldown)."""
        with self._cond:
            self.throttles += 1
            now = self._clock()
            # Retry-After is served by the refused request's own retry: pausing the whole pool would idle the
            # budget (a token bucket refills meanwhile, but pacing would never spend the refill).
            if now - self._last_cut < self.cooldown:
                return
            self._last_cut = now
            self.cuts += 1
            self.limit = max(float(self.minimum), min(self.limit * self.backoff, float(self._in_flight - 1) or 1.0))
            while self._done and self._done[0] < now - self.window:
                self._done.popleft()
            observed = len(self._done) / self.window if self._done else 0.0
            candidates = [r for r in (self.rate, observed) if r]
            base = min(candidates) if candidates else self.min_rate
            self.rate = max(self.min_rate, base * self.rate_margin)

    def stats(self) -> dict:
        with self._cond:
            return {"limit": round(self.limit, 2), "rate": round(self.rate, 2) if self.rate else None,
                    "started": self.started, "successes": self.successes, "throttles": self.throttles,
                    "cuts": self.cuts, "max_in_flight": self.max_in_flight}


def fan_out(func: Callable[[T], R], items: Iterable[T], *, workers: int = 16,
            on_done: Callable[[T, R], None] | None = None) -> list[R]:
    """Run `func` over `items` in a small thread pool (each call goes through the session's limiter).

    Results come back in input order. The first exception cancels what has not started and is re-raised:
    a failed read must stop the inventory, never be taken as "no permissions".
    """
    items = list(items)
    results: list[R | None] = [None] * len(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))), thread_name_prefix="migrator-read") as pool:
        futures: dict[Future, int] = {pool.submit(func, item): i for i, item in enumerate(items)}
        try:
            for future in _as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if on_done:
                    on_done(items[i], results[i])
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return results  # type: ignore[return-value]


def _as_completed(futures):
    from concurrent.futures import as_completed

    return as_completed(futures)
