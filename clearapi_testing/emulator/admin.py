"""Admin endpoints: ``GET /stats``, ``POST /reset``, ``GET|POST /admin/config``.

They bypass auth, limits, faults and counters, so reading the counters never changes them and a
benchmark in another process can re-shape a running emulator (``POST /admin/config`` with a JSON
object of `EmulatorConfig` fields, e.g. ``{"fault_rate": 0}``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import ValidationError

from clearapi.errors import redact
from clearapi_testing.emulator.router import Router
from clearapi_testing.emulator.state import State
from clearapi_testing.emulator.wire import ApiError, Request, Response, json_response

if TYPE_CHECKING:
    from clearapi_testing.emulator.app import App

__all__ = ["install"]


def install(router: Router, app: App) -> None:
    async def stats(state: State, request: Request) -> Response:
        return json_response(state.stats.snapshot().model_dump())

    async def reset(state: State, request: Request) -> Response:
        app.reset()
        return json_response({"reset": True})

    async def get_config(state: State, request: Request) -> Response:
        return json_response(state.config.public_dict())

    async def set_config(state: State, request: Request) -> Response:
        changes = request.json_object()
        try:
            new = app.configure(**changes)
        except (ValidationError, ValueError) as exc:
            raise ApiError(400, f"invalid emulator config: {redact(str(exc), state.config.api_key)}",
                           type="invalid_request_error") from exc
        return json_response(new.public_dict())

    router.add("GET", "/stats", stats, api=False)
    router.add("POST", "/reset", reset, api=False)
    router.add("GET", "/admin/config", get_config, api=False)
    router.add("POST", "/admin/config", set_config, api=False)
