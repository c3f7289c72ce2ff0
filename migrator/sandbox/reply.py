"""What a sandbox endpoint hands back to the HTTP layer: status, headers, body, and how the socket should end.

Endpoint modules (tokens, http_exchange, http_graph) build Reply objects and never touch sockets; server.py
writes them. `drop` means "close the connection without answering" (a fault, or a write applied before a drop).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: bytes = field(default=b"", repr=False)  # token responses hold access tokens: never in a repr
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the socket without sending anything


def json_reply(status: int, payload: object, headers: dict[str, str] | None = None) -> Reply:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Reply(status, body, "application/json; charset=utf-8", dict(headers or {}))


def text_reply(status: int, text: str, headers: dict[str, str] | None = None,
               content_type: str = "text/plain; charset=utf-8") -> Reply:
    return Reply(status, text.encode("utf-8"), content_type, dict(headers or {}))


def drop_reply() -> Reply:
    return Reply(status=0, drop=True)


@dataclass(frozen=True)
class Request:
    """One parsed HTTP request as the endpoint modules see it."""

    method: str
    path: str  # without the query string, percent-decoded
    query: dict[str, str]  # first value of each query parameter, percent-decoded
    headers: dict[str, str] = field(repr=False)  # lower-case names; holds bearer tokens: never in a repr
    body: bytes = field(repr=False)  # may hold a client secret (token requests)
    base_url: str = ""  # https://127.0.0.1:<port>, for absolute links

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    def json(self) -> Any:  # parsed JSON: callers check its shape and answer 400 when it is wrong
        return json.loads(self.body.decode("utf-8-sig") or "null")
