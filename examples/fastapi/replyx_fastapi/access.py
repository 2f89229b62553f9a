"""Who may write to or read a dialog: origin hosts, allowed domains and the ownership check of
gateway/src/origin/allowed-domains.ts and gateway/src/access/grant.ts, so a FastAPI backend
refuses what the gateway refuses."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence
from urllib.parse import urlsplit

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")
_HOST = re.compile(r"^[a-z0-9.-]+$|^\[[0-9a-f:.]+\]$")


def origin_host(value: Optional[str]) -> Optional[str]:
    """The lower-case host of an http(s) origin, or None for anything else (``null``, other schemes)."""
    if not value or value == "null":
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    host = host.lower().rstrip(".")
    if ":" in host:
        return f"[{host}]"  # IPv6, bracketed as URL.hostname writes it
    try:
        host = host.encode("idna").decode("ascii")  # Unicode names as their punycode, like URL
    except UnicodeError:
        return None
    return host or None


def origin_of(value: str) -> str:
    """``scheme://host[:port]`` of an http(s) URL, as the URL standard's ``origin`` writes it."""
    parts = urlsplit(value)
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{parts.scheme}://{host}{port}"


def normalise_entry(raw: str) -> Optional[str]:
    """An allowed-domains entry as a bare host or ``*.host``; None when unusable.

    A wildcard directly above a top-level domain (``*.com``) is ignored like the gateway's
    public-suffix check does; the gateway also ignores deeper public suffixes (``*.co.uk``,
    ``*.github.io``) from the Public Suffix List, which this example does not carry, so such an
    entry may get a widget session here and be refused (4003) by the gateway.
    """
    s = _SCHEME.sub("", raw.strip().lower())
    s = re.sub(r"[/?#].*$", "", s)
    s = re.sub(r":\d+$", "", s).rstrip(".")
    bare = s[2:] if s.startswith("*.") else s
    if not s or not bare or "*" in bare or not _HOST.match(bare):
        return None
    if s.startswith("*.") and "." not in bare:
        return None
    return s


def is_host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """True when ``host`` is an entry or a subdomain of a ``*.`` entry (the apex is not)."""
    for raw in allowed:
        entry = normalise_entry(raw)
        if entry is None:
            continue
        if entry.startswith("*."):
            suffix = entry[1:]
            if len(host) > len(suffix) and host.endswith(suffix):
                return True
        elif host == entry:
            return True
    return False


@dataclass(frozen=True)
class DialogAccess:
    """One row of the replyx_dialog_access view."""

    dialog_id: int
    assistant_id: int
    user_id: int
    allowed_domains: Sequence[str]


@dataclass(frozen=True)
class Grant:
    """What a credential grants (gateway/src/access/grant.ts)."""

    kind: str
    user_id: Optional[int] = None
    assistant_id: Optional[int] = None
    dialog_id: Optional[int] = None
    jti: Optional[str] = None
    origin_host: Optional[str] = None


def check_grant(grant: Grant, dialog_id: int, access: Optional[DialogAccess]) -> str:
    """``ok``, ``not-found`` (missing and foreign dialogs alike) or ``origin``."""
    if access is None or access.dialog_id != dialog_id:
        return "not-found"
    if grant.kind == "admin":
        return "ok" if access.user_id == grant.user_id else "not-found"
    if grant.kind == "site":
        if access.assistant_id != grant.assistant_id or access.user_id != grant.user_id:
            return "not-found"
        if grant.dialog_id is not None and grant.dialog_id != dialog_id:
            return "not-found"
        return "ok" if grant.origin_host is None or is_host_allowed(grant.origin_host, access.allowed_domains) else "origin"
    if access.assistant_id != grant.assistant_id or (grant.dialog_id is not None and grant.dialog_id != dialog_id):
        return "not-found"
    return "ok" if grant.origin_host and is_host_allowed(grant.origin_host, access.allowed_domains) else "origin"
