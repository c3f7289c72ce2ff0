"""Client-side rate limiter with adaptive concurrency: run close to the tenant's throttle budget, not over it.

Microsoft does not publish the admin API's budget, and it differs per tenant, so it is learned:
- concurrency window (AIMD): +1/limit per success (about +1 per round trip), on a throttle answer
  limit := min(limit * 0.75, peak in flight - 1), at most once per cooldown so one burst of 429s counts once.
  The peak is the most requests on the wire at once over the last `window` seconds, not the count at the moment
  the 429 comes back: that answer belongs to requests sent earlier, and when it arrives while the caller is
  between two rounds of work (few in flight) a cut to the momentary count would collapse the window to 1;
- request pacing, learnt only while the limiter is the bottleneck (callers waited for a slot): the success
  rate observed then (over the last second), while throttled, is the budget, so the pace becomes 0.95 x that
  rate (one cut takes at most 20 %); it grows while no throttle comes back, slowly at first and faster the
  longer it stays quiet (2 %/s, plus 1 %/s per quiet second), and is dropped after `relax` seconds without one.
  A throttle that comes while the client is not saturating (a burst, another client, a random answer) only
  shrinks the window, so one early 429 cannot pin the pace to a low, demand-limited rate.
A rate budget is thus tracked to within a few percent, a concurrency budget by the window.
A request may weigh more than one unit of the budget (`slot(weight=n)`): a Graph `$batch` of n requests costs n
against Graph's budget, so it takes n units of the pace, and its caller reports how many of them were served
(`on_success(n)`), the throttled ones as a throttle. The window still counts requests on the wire.
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
                 min_rate: float = 1.0, window: float = 1.0, cooldown: float = 1.0, backoff: float = 0.75,
                 rate_margin: float = 0.95, rate_growth: float = 0.02, min_samples: int = 8,
                 saturation: float = 0.3, relax: float = 8.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.minimum, self.maximum = max(1, minimum), max(1, maximum)
        self.limit = float(min(max(initial, self.minimum), self.maximum))
        self.rate = rate  # requests/s; None = unpaced until the first throttle
        self.min_rate = min_rate
        self.window, self.cooldown, self.backoff = window, cooldown, backoff
        self.rate_margin, self.rate_growth, self.min_samples = rate_margin, rate_growth, min_samples
        self.saturation, self.relax = saturation, relax
        self._acquires: collections.deque[tuple[float, bool]] = collections.deque()  # (time, had to wait)
        self._clock, self._sleep = clock, sleep
        self._cond = threading.Condition()
        self._in_flight = 0  # holding a slot (pacing wait included)
        self._sending = 0  # past the pacing wait, request on the wire
        self._next_send = 0.0
        self._last_cut = -1e9
        self._last_throttle = clock()  # for `relax`: a pace is dropped after that long without a throttle
        self._last_growth = clock()
        self._done: collections.deque[float] = collections.deque()
        self._peaks: collections.deque[tuple[float, int]] = collections.deque()  # (time, requests on the wire)
        # counters (for the manifest and the benchmark)
        self.started = 0
        self.successes = 0
        self.throttles = 0
        self.cuts = 0
        self.max_in_flight = 0

    # -- acquiring ------------------------------------------------------------------------------------
    def acquire(self, weight: int = 1) -> None:
        with self._cond:
            waited = self._in_flight >= int(self.limit)
            while self._in_flight >= int(self.limit):
                self._cond.wait(0.5)
            self._in_flight += 1
            self.started += 1
            now = self._clock()
            if self.rate and now - self._last_throttle > self.relax:
                self.rate = None  # no throttle for a while: the pace was too careful or the budget grew
            start = now
            if self.rate:
                start = max(now, self._next_send)
                self._next_send = start + max(1, weight) / self.rate
            delay = start - now
            self._acquires.append((now, waited or delay > 0))
            while self._acquires and self._acquires[0][0] < now - self.window:
                self._acquires.popleft()
        if delay > 0:
            self._sleep(delay)
        with self._cond:
            self._sending += 1
            self.max_in_flight = max(self.max_in_flight, self._sending)
            now = self._clock()
            while self._peaks and (self._peaks[-1][1] <= self._sending or self._peaks[0][0] < now - self.window):
                # keep a decreasing run of (time, count): its first entry is the peak of the last window
                self._peaks.pop() if self._peaks[-1][1] <= self._sending else self._peaks.popleft()
            self._peaks.append((now, self._sending))

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            self._sending -= 1
            self._cond.notify()

    @contextlib.contextmanager
    def slot(self, weight: int = 1) -> Iterator[None]:
        self.acquire(weight)
        try:
            yield
        finally:
            self.release()

    # -- feedback -------------------------------------------------------------------------------------
    def _trim(self, now: float) -> None:
        while self._done and self._done[0] < now - self.window:
            self._done.popleft()

    def on_success(self, weight: int = 1) -> None:
        """`weight` units of the budget were served (a $batch: how many of its requests were answered)."""
        if weight <= 0:
            return
        with self._cond:
            self.successes += weight
            now = self._clock()
            self._done.extend([now] * weight)
            self._trim(now)
            if self.limit < self.maximum:
                self.limit = min(self.maximum, self.limit + 1.0 / self.limit)
                self._cond.notify()
            dt = min(1.0, max(0.0, now - self._last_growth))
            self._last_growth = now
            if self.rate:
                # probe faster the longer no throttle came (3 %/s at first, +3 %/s for every second since)
                quiet = max(0.0, now - self._last_throttle)
                self.rate *= 1.0 + self.rate_growth * (1.0 + quiet / 2) * dt

    def on_throttle(self, retry_after: float | None = None) -> None:
        """A 429 / concurrency answer: shrink the window and the pace (once per cooldown).

        Retry-After is served by the refused request's own retry: pausing the whole pool would idle the budget
        (a token bucket refills meanwhile, but pacing would never spend the refill)."""
        with self._cond:
            self.throttles += 1
            now = self._clock()
            self._last_throttle = now
            if now - self._last_cut < self.cooldown:
                return
            self._last_cut = now
            self.cuts += 1
            while self._peaks and self._peaks[0][0] < now - self.window:
                self._peaks.popleft()
            peak = max(self._sending, self._peaks[0][1] if self._peaks else 0)
            self.limit = max(float(self.minimum), min(self.limit * self.backoff, float(max(1, peak - 1))))
            self._trim(now)
            while self._acquires and self._acquires[0][0] < now - self.window:
                self._acquires.popleft()
            waited = sum(1 for _, w in self._acquires if w)
            saturated = bool(self._acquires) and waited / len(self._acquires) >= self.saturation
            if not saturated or len(self._done) < self.min_samples:
                return  # demand-limited (or too few answers to measure): the window alone slows down
            observed = len(self._done) / self.window
            base = min(self.rate, observed) if self.rate else observed
            floor = self.rate * 0.8 if self.rate else self.min_rate  # one cut never takes more than 20 %
            self.rate = max(self.min_rate, floor, base * self.rate_margin)

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
                result = results[i] = future.result()
                if on_done:
                    on_done(items[i], result)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return results  # type: ignore[return-value]


def _as_completed(futures):
    from concurrent.futures import as_completed

    return as_completed(futures)
