"""The daemon's counters and histograms, and the small HTTP server that exposes them."""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from hypothesis import given
from hypothesis import strategies as st

from ingest.stats import Histogram
from meterflow.http import HttpServer, Response


def test_a_value_on_a_bound_counts_in_that_bounds_bucket() -> None:
    """Prometheus buckets are `le`: 1.0 belongs to the bucket whose bound is 1.0."""
    histogram = Histogram((1.0, 5.0))
    histogram.observe_many([0.5, 1.0, 1.5, 5.0, 7.0])
    assert histogram.cumulative() == [(1.0, 2), (5.0, 4), (float("inf"), 5)]
    assert (histogram.count, histogram.total) == (5, 15.0)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), max_size=200))
def test_observing_one_by_one_and_all_at_once_agree(values: list[float]) -> None:
    """observe_many is a faster observe: same buckets, count and sum."""
    one, many = Histogram((0.0, 1.0, 10.0)), Histogram((0.0, 1.0, 10.0))
    for value in values:
        one.observe(value)
    many.observe_many(values)
    assert one.counts == many.counts
    assert one.count == many.count == len(values)
    assert abs(one.total - many.total) <= 1e-6 * max([1.0, *map(abs, values)])


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    reply = await reader.read()
    writer.close()
    await writer.wait_closed()
    return reply


async def test_the_http_server_answers_get_head_and_refuses_other_methods() -> None:
    """GET gets the body, HEAD only the headers, POST a 405, garbage a closed connection."""
    routes = {"/x": lambda: Response(HTTPStatus.OK, b"hello")}
    async with HttpServer("127.0.0.1", 0, routes) as server:
        get = await _exchange(server.port, b"GET /x?a=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        head = await _exchange(server.port, b"HEAD /x HTTP/1.1\r\n\r\n")
        post = await _exchange(server.port, b"POST /x HTTP/1.1\r\n\r\n")
        garbage = await _exchange(server.port, b"\x00\x01\r\n\r\n")
    assert get.startswith(b"HTTP/1.1 200 OK\r\n")
    assert get.endswith(b"\r\n\r\nhello")
    assert b"Content-Length: 5\r\n" in head
    assert head.endswith(b"\r\n\r\n")
    assert post.startswith(b"HTTP/1.1 405 ")
    assert garbage == b""
