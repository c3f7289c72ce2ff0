"""Shared bits for the tests of migrator/exchange (unit tests with `responses`)."""

from __future__ import annotations

from migrator.exchange.http import ApiSession
from migrator.exchange.profile import parse_profile
from migrator.exchange.ratelimit import AdaptiveLimiter

TENANT = "11111111-2222-3333-4444-555555555555"
INVOKE = f"https://outlook.office365.com/adminapi/beta/{TENANT}/InvokeCommand"
GRAPH = "https://graph.microsoft.com/v1.0"


def profile(**over):
    data = {"tenant_id": TENANT, "client_id": "aaaaaaaa-0000-0000-0000-000000000001",
            "credential": {"kind": "secret", "secret_env": "MIGRATOR_TEST_SECRET"}}
    data.update(over)
    return parse_profile(data, source="test.toml")


class FakeTokens:
    """Counts token requests; a new token after each forced refresh."""

    def __init__(self):
        self.calls = []
        self.generation = 0

    def token(self, resource, *, force_refresh=False):
        self.calls.append((resource, force_refresh))
        if force_refresh:
            self.generation += 1
        return f"tok-{self.generation}"


class FakeTime:
    """A clock that only the session's own sleeps advance: retry budgets in seconds are exact and instant."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now


def session(prof=None, **kw):
    fake = FakeTime()
    kw.setdefault("sleep", fake.sleep)
    kw.setdefault("clock", fake.clock)
    limiter = kw.pop("limiter", None) or AdaptiveLimiter(sleep=lambda s: None)
    s = ApiSession(prof or profile(), FakeTokens(), limiter, **kw)
    s.sleeps = fake.sleeps
    s.fake_time = fake
    return s
