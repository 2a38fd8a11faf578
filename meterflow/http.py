"""A minimal HTTP/1.1 server for the operator endpoints (`/metrics`, `/healthz`, `/readyz`).

Scrapers and probes send one small GET and read one response, so the server answers each
connection once and closes it. It runs in the daemon's event loop: no thread, nothing to
lock, and it keeps answering `/healthz` while the daemon is reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Self

import structlog

log = structlog.get_logger("meterflow.http")

REQUEST_TIMEOUT_S = 5.0
MAX_HEADER_LINES = 100


@dataclass(frozen=True, slots=True)
class Response:
    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


Route = Callable[[], Response]


class HttpServer:
    """Serves GET (and HEAD) requests for a fixed set of paths."""

    def __init__(self, host: str, port: int, routes: Mapping[str, Route]) -> None:
        self._host = host
        self._port = port
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the one the OS picked when configured as 0)."""
        if self._server is None:
            raise RuntimeError("HttpServer.port outside its async with block")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """Where a client on this machine reaches it."""
        host = "127.0.0.1" if self._host in {"0.0.0.0", "::", ""} else self._host  # noqa: S104
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)
        log.info("http endpoints listening", host=self._host, port=self.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                method, path = await _read_request(reader)
            response = self._respond(method, path)
            writer.write(_encode(response, head=method == "HEAD"))
            await writer.drain()
        except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _respond(self, method: str, path: str) -> Response:
        if method not in {"GET", "HEAD"}:
            return Response(HTTPStatus.METHOD_NOT_ALLOWED, b"only GET and HEAD\n")
        route = self._routes.get(path.split("?", 1)[0])
        if route is None:
            paths = ", ".join(sorted(self._routes))
            return Response(HTTPStatus.NOT_FOUND, f"not found; try {paths}\n".encode())
        return route()


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    request_line = (await reader.readuntil(b"\r\n")).decode("latin-1").split()
    if len(request_line) != 3:
        raise ValueError("malformed request line")
    for _ in range(MAX_HEADER_LINES):
        if await reader.readuntil(b"\r\n") == b"\r\n":
            return request_line[0], request_line[1]
    raise ValueError("too many header lines")


def _encode(response: Response, *, head: bool) -> bytes:
    status = response.status
    header = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return header if head else header + response.body
