"""An emulator extension serving one fixed error per URL prefix, for error-mapping tests.

``{base}/status/{code}/v1/chat/completions`` (OpenAI shape) and ``{base}/status/{code}/v1/messages``
(Anthropic shape) answer every request with HTTP `code`. Suffixes add a twist:
``400-logprobs`` names logprobs in the message, ``500-noretry`` adds ``x-should-retry: false``.
The built-in faults (429, insufficient_quota, 401, 500, 503, 529, reset, truncated, hang)
come from the emulator itself; these routes cover the statuses it has no fault for.
"""

from __future__ import annotations

from clearapi_testing.emulator import ApiError, Request, Response, Router, State


def install_status_routes(router: Router, state: State) -> None:
    async def fail(ctx: State, req: Request) -> Response:
        spec = req.params["code"]
        code, _, twist = spec.partition("-")
        headers: list[tuple[str, str]] = []
        message = f"emulated {code}"
        if twist == "logprobs":
            message = "logprobs is not supported with this model"
        if twist == "noretry":
            headers.append(("x-should-retry", "false"))
        raise ApiError(int(code), message, headers=headers)

    router.add("POST", "/status/{code}/v1/chat/completions", fail, provider="openai")
    router.add("POST", "/status/{code}/v1/messages", fail, provider="anthropic")
