"""A tiny method + path router with ``{param}`` segments.

Why not a framework: the emulator must control every byte (faults such as resets and truncated
bodies), stay fast under benchmark load and let teammates add endpoints with one call. A route
also carries what the request pipeline needs to know about it: which provider's error shape and
headers it speaks, whether it is an API route (auth, rate limits, faults, latency, counters) or an
admin route, and how many requests/tokens it costs against the RPM/TPM limits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from clearapi_testing.emulator.wire import Request, Response

if TYPE_CHECKING:
    from clearapi_testing.emulator.state import State

__all__ = ["Cost", "CostFn", "Handler", "Route", "RouteProvider", "Router"]

Handler = Callable[["State", Request], Awaitable[Response]]
#: (requests, tokens) a request costs against the RPM/TPM buckets
Cost = tuple[int, int]
CostFn = Callable[["State", Request], Cost]
#: "auto" picks anthropic when the request carries an ``anthropic-version`` header
RouteProvider = Literal["openai", "anthropic", "auto"]


def _one_request(state: State, request: Request) -> Cost:
    return (1, 0)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str
    handler: Handler
    provider: RouteProvider = "auto"
    #: API routes get auth, rate limits, faults, latency and counters; admin routes none of them
    api: bool = True
    cost: CostFn = _one_request

    def match(self, method: str, segments: list[str]) -> dict[str, str] | None:
        if method != self.method:
            return None
        parts = self._parts
        if len(parts) != len(segments):
            return None
        params: dict[str, str] = {}
        for want, got in zip(parts, segments, strict=True):
            if want.startswith("{") and want.endswith("}"):
                if not got:
                    return None
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params

    @property
    def _parts(self) -> list[str]:
        return self.pattern.strip("/").split("/")


class Router:
    """Routes in insertion order; exact (parameter-free) paths are looked up in O(1)."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], Route] = {}
        self._patterned: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, *, provider: RouteProvider = "auto",
            api: bool = True, cost: CostFn | None = None) -> Route:
        """Register `handler` for `method` and `pattern` (e.g. ``/v1/files/{file_id}/content``).

        A later registration of the same exact path replaces the earlier one, so an extension can
        override a built-in endpoint.
        """
        route = Route(method.upper(), "/" + pattern.strip("/"), handler, provider, api,
                      cost or _one_request)
        if "{" in pattern:
            self._patterned.append(route)
        else:
            self._exact[(route.method, route.pattern)] = route
        return route

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for this request and its path parameters, or None."""
        norm = "/" + path.strip("/")
        route = self._exact.get((method, norm))
        if route is not None:
            return route, {}
        segments = norm.strip("/").split("/")
        for route in self._patterned:
            params = route.match(method, segments)
            if params is not None:
                return route, params
        return None

    def allowed_methods(self, path: str) -> list[str]:
        """Methods registered for `path` (to tell 405 from 404)."""
        norm = "/" + path.strip("/")
        segments = norm.strip("/").split("/")
        out = {m for (m, p) in self._exact if p == norm}
        out.update(r.method for r in self._patterned if r.match(r.method, segments) is not None)
        return sorted(out)

    def routes(self) -> list[Route]:
        return [*self._exact.values(), *self._patterned]
