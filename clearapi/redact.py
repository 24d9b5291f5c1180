"""URLs made safe to write down: no userinfo, no secret in the query string.

A base URL may carry credentials (``https://user:pass@gateway/v1``, ``...?api-key=...``); it is
needed as given to reach the server, but every place that writes one down (summary.json,
report.html, logs, error messages, `clearapi providers`, the cache key's inputs) writes
`redact_url(url)` instead. A URL without credentials comes back unchanged, character for
character, so cache keys of ordinary URLs do not move.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["redact_url", "redact_urls", "valid_api_key_problem"]

MASK: Final = "***"
#: query parameters whose value is kept: harmless and useful when reading a log
_PUBLIC_PARAMS: Final = frozenset({"api-version", "api_version", "version", "model", "region"})
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#@\s]*)@")
_QUERY_VALUE = re.compile(r"(?P<lead>[?&;](?P<name>[^=&#\s;]+)=)(?P<value>[^&#\s;'\"<>]*)")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>]+")


def _query_value(match: re.Match[str]) -> str:
    if match.group("name").lower() in _PUBLIC_PARAMS or not match.group("value"):
        return match.group(0)
    return match.group("lead") + MASK


def redact_url(url: str | None) -> str | None:
    """`url` without its userinfo (``user:pass@`` becomes ``***@``) and with query values masked."""
    if not url:
        return url
    out = _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", url, count=1)
    if "?" in out:
        head, _, tail = out.partition("?")
        out = head + _QUERY_VALUE.sub(_query_value, "?" + tail)
    return out


def redact_urls(text: str) -> str:
    """Every URL inside free text (an error message, a log line) passed through `redact_url`."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)) or "", text)


def valid_api_key_problem(key: str) -> str | None:
    """Why `key` cannot be sent in an HTTP header, or None. Never quotes the key itself.

    Keys are printable ASCII without spaces; anything else is a paste accident (a newline, a
    non-breaking space, smart quotes) that would either fail deep in the HTTP stack with the key
    in the traceback or be sent as a wrong key on every call.
    """
    for index, char in enumerate(key, start=1):
        code = ord(char)
        if code < 32 or code == 127:
            return f"contains a control character (at position {index} of {len(key)})"
        if code > 126:
            return f"contains a non-ASCII character (at position {index} of {len(key)})"
        if char == " ":
            return f"contains a space (at position {index} of {len(key)})"
    return None

