"""HTTP/1.1 over ``asyncio.start_server`` and ``h11``; the `Emulator` that owns it.

Why hand-rolled on h11: faults need control below HTTP (abort a socket with RST before any byte,
send a short body with a matching Content-Length, hold a request until the client gives up),
keep-alive must work because the SDKs pool connections, and the engine benchmark compares
throughput against this server, so a request costs one h11 parse and one write, nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import h11

from clearapi_testing.emulator.app import App, Extension
from clearapi_testing.emulator.config import EmulatorConfig
from clearapi_testing.emulator.limits import Clock
from clearapi_testing.emulator.responder import Responder
from clearapi_testing.emulator.router import Router
from clearapi_testing.emulator.state import State
from clearapi_testing.emulator.stats import StatsSnapshot
from clearapi_testing.emulator.wire import ApiError, Request, Response, error_response

__all__ = ["Emulator"]

_READ = 65536
_MAX_HEADERS = 1 << 20
_REASONS: dict[int, bytes] = {s.value: s.phrase.encode() for s in HTTPStatus}
_REASONS[529] = b"Overloaded"


class Emulator:
    """A loopback OpenAI/Anthropic API server; ``async with Emulator(config) as emu: emu.base_url``.

    `config` may be omitted and/or overridden by keyword (``Emulator(rpm=60)``). `responder`
    replaces the default answers; `extensions` add routes (see the package docstring); `clock`
    (monotonic seconds) drives the rate-limit buckets, so tests can fake time.
    """

    def __init__(self, config: EmulatorConfig | None = None, *, responder: Responder | None = None,
                 extensions: Iterable[Extension] = (), clock: Clock = time.monotonic,
                 **overrides: Any) -> None:
        cfg = config or EmulatorConfig()
        if overrides:
            cfg = EmulatorConfig.model_validate({**cfg.model_dump(), **overrides})
        self.app = App(cfg, responder=responder, extensions=extensions, clock=clock)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[Any]] = set()
        self.port = 0

    # -- public surface ---------------------------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        return self.app.config

    @property
    def state(self) -> State:
        return self.app.state

    @property
    def router(self) -> Router:
        return self.app.router

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self.config.host}:{self.port}"

    def stats(self) -> StatsSnapshot:
        return self.app.state.stats.snapshot()

    def reset(self) -> None:
        self.app.reset()

    async def wait_requests(self, count: int) -> None:
        """Wait until `count` API requests have arrived since start or the last reset."""
        await self.app.state.stats.wait_requests(count)

    def configure(self, **changes: Any) -> EmulatorConfig:
        """Change settings while running, e.g. ``emu.configure(fault_rate=0.0)``."""
        return self.app.configure(**changes)

    async def start(self) -> Emulator:
        self._server = await asyncio.start_server(self._serve, self.config.host, self.config.port,
                                                  limit=_READ, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Stop listening, wake hanging requests, close every connection and background task."""
        server, self._server = self._server, None
        if server is None:
            return
        self.state.stopping.set()
        server.close()
        for task in list(self._conns):
            task.cancel()
        if self._conns:
            await asyncio.gather(*self._conns, return_exceptions=True)
        await self.state.cancel_background()
        await server.wait_closed()

    aclose = stop

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- one connection ---------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        self.state.stats.connections += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADERS)
        try:
            while await self._one_exchange(conn, reader, writer):
                conn.start_next_cycle()
        except (ConnectionError, asyncio.IncompleteReadError, h11.LocalProtocolError):
            pass
        except asyncio.CancelledError:
            # stop() cancels us; ending quietly keeps asyncio from logging the cancellation
            self._abort(writer)
        finally:
            self._conns.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _one_exchange(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection must close."""
        head: h11.Request | None = None
        body = bytearray()
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    if conn.they_are_waiting_for_100_continue:
                        writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])))
                    conn.receive_data(await reader.read(_READ))
                elif isinstance(event, h11.Request):
                    head = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed or PAUSED: the client is done with us
                    return False
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._send(conn, writer, error_response("openai", ApiError(400, f"bad HTTP request: {exc}")))
            return False
        assert head is not None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in head.headers}
        request = Request.from_target(head.method.decode(), head.target.decode("latin-1"), headers, bytes(body))
        app = self.app
        response = Response(status=0, action="reset")
        sent = False
        try:
            response = await app.handle(request)
            if response.action == "reset":
                self._abort(writer)
                return False
            if response.action == "hang":
                await self._hang(reader)
                self._abort(writer)
                return False
            await self._send(conn, writer, response)
            sent = True
        finally:
            app.done(request, response, sent)
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    @staticmethod
    async def _send(conn: h11.Connection, writer: asyncio.StreamWriter, response: Response) -> None:
        headers: list[tuple[str, str]] = []
        if response.content_type:
            headers.append(("content-type", response.content_type))
        headers.append(("content-length", str(len(response.body))))
        headers += response.headers
        out = conn.send(h11.Response(status_code=response.status, headers=headers,
                                     reason=_REASONS.get(response.status, b"")))
        writer.write(out + conn.send(h11.Data(data=response.body)) + conn.send(h11.EndOfMessage()))
        await writer.drain()

    async def _hang(self, reader: asyncio.StreamReader) -> None:
        """Hold the request until the client leaves, `hang_seconds` pass, or the server stops."""
        waiters: list[asyncio.Task[Any]] = [
            asyncio.ensure_future(self.state.stopping.wait()),
            asyncio.ensure_future(reader.read(_READ)),
        ]
        if self.config.hang_seconds is not None:
            waiters.append(asyncio.ensure_future(asyncio.sleep(self.config.hang_seconds)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    @staticmethod
    def _abort(writer: asyncio.StreamWriter) -> None:
        """Close with RST (SO_LINGER 0), what a crashed server or a middlebox reset looks like."""
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
