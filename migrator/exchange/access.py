"""Which tenant client methods change the tenant, marked where each method is defined.

Every public method of `ExchangeClient` and `GraphClient` carries one mark: `@read` (never changes the tenant),
`@write` (changes it), or a mark that decides per call from its arguments: `@by_cmdlet` (`invoke`: a Get-*/Test-*
cmdlet reads, any other cmdlet writes) and `@by_http_method` (`GraphClient.request`: GET reads, anything else
writes). The executor's dry run (`executor.context.Guarded`) asks these marks, never a list kept by hand, and
refuses to call a method that has none: a new write method that someone forgot to mark cannot be sent by a dry
run, it fails the call (and `unmarked_methods` fails the test that walks the clients).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

READ = "read"
WRITE = "write"
BY_CMDLET = "by_cmdlet"
BY_HTTP_METHOD = "by_http_method"
ACCESS_KINDS = (READ, WRITE, BY_CMDLET, BY_HTTP_METHOD)

_ATTR = "__tenant_access__"
F = TypeVar("F", bound=Callable[..., Any])


def _mark(kind: str) -> Callable[[F], F]:
    def decorate(fn: F) -> F:
        setattr(fn, _ATTR, kind)
        return fn

    return decorate


read = _mark(READ)
write = _mark(WRITE)
by_cmdlet = _mark(BY_CMDLET)
by_http_method = _mark(BY_HTTP_METHOD)


def access_of(cls: type, name: str) -> str | None:
    """The mark of `cls.name` (None when the method does not exist, is private, or carries no mark)."""
    if name.startswith("_"):
        return None
    member = inspect.getattr_static(cls, name, None)
    if isinstance(member, (staticmethod, classmethod)):
        member = member.__func__
    kind = getattr(member, _ATTR, None)
    return kind if kind in ACCESS_KINDS else None


def public_methods(cls: type) -> list[str]:
    """Every public method of `cls` (inherited ones included), sorted."""
    return sorted(name for name, member in inspect.getmembers(cls, callable)
                  if not name.startswith("_") and not inspect.isclass(member))


def unmarked_methods(cls: type) -> list[str]:
    """Public methods of `cls` that are neither a read nor a write (a test keeps this empty for the clients)."""
    return [name for name in public_methods(cls) if access_of(cls, name) is None]


def writes(cls: type) -> list[str]:
    """The methods of `cls` marked @write."""
    return [name for name in public_methods(cls) if access_of(cls, name) == WRITE]


def cmdlet_reads(cmdlet: str) -> bool:
    """Exchange cmdlets whose verb only reads (cmdlet names are case-insensitive)."""
    return str(cmdlet).strip().lower().startswith(("get-", "test-"))


def is_write_call(kind: str, args: tuple, kwargs: Mapping[str, Any]) -> bool:
    """Whether one call of a method with mark `kind` changes the tenant."""
    if kind == READ:
        return False
    if kind == WRITE:
        return True
    if kind == BY_CMDLET:
        return not cmdlet_reads(args[0] if args else kwargs.get("cmdlet", ""))
    if kind == BY_HTTP_METHOD:
        return str(args[0] if args else kwargs.get("method", "")).upper() != "GET"
    raise ValueError(f"unknown access mark {kind!r}")


__all__ = [
    "BY_CMDLET",
    "BY_HTTP_METHOD",
    "READ",
    "WRITE",
    "access_of",
    "by_cmdlet",
    "by_http_method",
    "cmdlet_reads",
    "is_write_call",
    "public_methods",
    "read",
    "unmarked_methods",
    "write",
    "writes",
]
