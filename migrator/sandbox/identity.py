"""Identity resolution as Exchange does it: one lookup table from every accepted identity form to objects.

A recipient is found by Name, Alias, primary SMTP address, any proxy address (with or without its `smtp:` prefix),
Guid, ExternalDirectoryObjectId, DistinguishedName or UserPrincipalName; a service principal (Exchange's pointer)
by ObjectId, AppId, its own DisplayName (not the Entra name, which Exchange does not know), Identity/Name or Sid.
Case-insensitive. More than one object for one identity is an ambiguity error, as in Exchange.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable


def normalise(identity: str) -> str:
    text = (identity or "").strip().lower()
    if text[:1] == "{" and text[-1:] == "}":  # {GUID}
        text = text[1:-1]
    return text


class IdentityIndex:
    """Many keys per object, many objects per key (a duplicate name is legal in a tenant, and ambiguous).
    A key names one object almost always, so it maps to that object, or to a set when it names several."""

    def __init__(self) -> None:
        self._by_key: dict[str, object] = {}
        self._keys: dict[Hashable, set[str]] = {}

    def put(self, obj: Hashable, keys: Iterable[str]) -> None:
        """Index `obj` under `keys`, replacing whatever it was indexed under before."""
        if obj in self._keys:
            self.drop(obj)
        norm = {k.strip().lower() for k in keys if k}
        if any(k[:1] == "{" for k in norm):
            norm = {normalise(k) for k in norm}
        norm.discard("")
        self._keys[obj] = norm
        by_key = self._by_key
        for k in norm:
            cur = by_key.get(k)
            if cur is None:
                by_key[k] = obj
            elif isinstance(cur, _Many):
                cur.add(obj)
            elif cur != obj:
                by_key[k] = _Many((cur, obj))

    def drop(self, obj: Hashable) -> None:
        for k in self._keys.pop(obj, ()):
            cur = self._by_key.get(k)
            if isinstance(cur, _Many):
                cur.discard(obj)
                if len(cur) == 1:
                    self._by_key[k] = next(iter(cur))
            elif cur == obj:
                del self._by_key[k]

    def _get(self, key: str) -> set:
        cur = self._by_key.get(key)
        if cur is None:
            return set()
        return set(cur) if isinstance(cur, _Many) else {cur}

    def find(self, identity: str) -> set:
        """Every object the identity names (empty: not found; more than one: ambiguous)."""
        key = normalise(identity)
        if not key:
            return set()
        hits = self._get(key)
        if not hits and ":" in key and not key.startswith(("cn=", "s-1-")):
            # a proxy address typed with its prefix: "smtp:x@y" or "SMTP:x@y"
            prefix, _, rest = key.partition(":")
            if prefix in ("smtp", "x500", "sip", "spo"):
                hits = self._get(rest)
        return hits

    def __contains__(self, obj: Hashable) -> bool:
        return obj in self._keys


class _Many(set):
    """Several objects under one key (kept apart from the objects themselves, which may be anything hashable)."""


def recipient_keys(rec) -> list[str]:
    """The identity forms a recipient answers to."""
    keys = [rec.name, rec.alias, rec.primary_smtp, rec.guid, rec.external_id, rec.dn, rec.upn]
    for addr in rec.email_addresses:
        keys.append(addr)
        keys.append(addr.split(":", 1)[1] if ":" in addr else addr)
    return [k for k in keys if k]


def service_principal_keys(app, sid: str = "") -> list[str]:
    return [k for k in (app.object_id, app.app_id, app.pointer_name, app.exchange_guid, sid) if k]
