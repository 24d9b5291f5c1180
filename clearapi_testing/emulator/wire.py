"""Requests, responses and error bodies as the emulator's handlers see them.

Kept free of any server detail so route handlers (ours and teammates' extensions) are plain
``async def handler(ctx, request) -> Response`` functions that are easy to read and test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson

__all__ = [
    "ApiError",
    "Part",
    "Provider",
    "Request",
    "Response",
    "anthropic_error_body",
    "error_response",
    "json_response",
    "openai_error_body",
]

Provider = Literal["openai", "anthropic"]
Action = Literal["send", "reset", "hang"]

_NO_JSON = object()


@dataclass
class Part:
    """One field of a multipart/form-data body (e.g. the ``file`` of a Files upload)."""

    name: str
    data: bytes
    filename: str | None = None
    content_type: str | None = None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8")


@dataclass
class Request:
    """A fully received HTTP request. Header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    #: values of ``{name}`` segments of the matched route pattern
    params: dict[str, str] = field(default_factory=dict)
    #: 1-based number among API requests since start or the last /reset (0 for admin routes)
    number: int = 0
    #: per-request scratch space (e.g. a parsed body shared by a route's cost function and handler)
    memo: dict[str, Any] = field(default_factory=dict)
    _json: Any = field(default=_NO_JSON, repr=False)

    @classmethod
    def from_target(cls, method: str, target: str, headers: dict[str, str], body: bytes) -> Request:
        path, _, qs = target.partition("?")
        return cls(method=method.upper(), path=path, query=dict(parse_qsl(qs)), headers=headers, body=body)

    def json(self) -> Any:
        """The body parsed as JSON (cached); raises `ApiError` 400 when it is not JSON."""
        if self._json is _NO_JSON:
            if not self.body:
                self._json = None
            else:
                try:
                    self._json = orjson.loads(self.body)
                except orjson.JSONDecodeError as exc:
                    raise ApiError(400, f"We could not parse the JSON body of your request: {exc}",
                                   type="invalid_request_error") from exc
        return self._json

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object, or `ApiError` 400."""
        data = self.json()
        if not isinstance(data, dict):
            raise ApiError(400, "The request body must be a JSON object.", type="invalid_request_error")
        return data

    def multipart(self) -> dict[str, Part]:
        """Parse a multipart/form-data body (what the SDKs send for file uploads)."""
        ctype = self.headers.get("content-type", "")
        if "multipart/form-data" not in ctype or "boundary=" not in ctype:
            raise ApiError(400, "Expected a multipart/form-data body.", type="invalid_request_error")
        boundary = ctype.split("boundary=", 1)[1].split(";", 1)[0].strip().strip('"').encode()
        parts: dict[str, Part] = {}
        for chunk in self.body.split(b"--" + boundary):
            if not chunk or chunk.startswith(b"--"):
                continue
            chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk
            head, sep, data = chunk.partition(b"\r\n\r\n")
            if not sep:
                continue
            data = data[:-2] if data.endswith(b"\r\n") else data
            name = filename = content_type = None
            for line in head.decode("utf-8", "replace").split("\r\n"):
                key, _, value = line.partition(":")
                if key.strip().lower() == "content-disposition":
                    for item in value.split(";"):
                        k, _, v = item.strip().partition("=")
                        if k == "name":
                            name = v.strip('"')
                        elif k == "filename":
                            filename = v.strip('"')
                elif key.strip().lower() == "content-type":
                    content_type = value.strip()
            if name is not None:
                parts[name] = Part(name=name, data=data, filename=filename, content_type=content_type)
        return parts


@dataclass
class Response:
    """What a handler returns. `action` lets the fault layer reset or hang instead of sending."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = "application/json"
    action: Action = "send"
    #: (prompt, completion) tokens served, for /stats
    tokens: tuple[int, int] = (0, 0)
    #: set by the "truncated" fault: sent as a 200 but not a usable answer (not counted as done work)
    truncated: bool = False

    def header(self, name: str, value: str) -> Response:
        self.headers.append((name, value))
        return self


class ApiError(Exception):
    """Raise from a handler to answer with the route's provider-shaped error body."""

    def __init__(self, status: int, message: str, *, type: str | None = None, param: str | None = None,
                 code: str | None = None, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or []


def json_response(obj: Any, status: int = 200, headers: list[tuple[str, str]] | None = None) -> Response:
    return Response(status=status, body=orjson.dumps(obj), headers=list(headers or []))


_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                 404: "invalid_request_error", 429: "requests", 500: "server_error", 503: "server_error",
                 529: "server_error"}
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                    500: "api_error", 503: "api_error", 529: "overloaded_error"}


def openai_error_body(status: int, message: str, type: str | None = None, param: str | None = None,
                      code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type or _OPENAI_TYPES.get(status, "api_error"),
                      "param": param, "code": code}}


def anthropic_error_body(status: int, message: str, type: str | None = None) -> dict[str, Any]:
    etype = type if type in _ANTHROPIC_TYPES.values() else _ANTHROPIC_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": etype, "message": message}}


def error_response(provider: Provider, err: ApiError) -> Response:
    """Render `err` in the wire shape of `provider`."""
    if provider == "anthropic":
        body = anthropic_error_body(err.status, err.message, err.type)
    else:
        body = openai_error_body(err.status, err.message, err.type, err.param, err.code)
    return json_response(body, err.status, err.headers)
