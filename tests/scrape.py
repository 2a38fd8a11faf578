"""Reading the daemon's HTTP endpoints the way Prometheus and a load balancer would."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def _get(port: int, path: str) -> tuple[int, bytes]:
    url = f"http://127.0.0.1:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return error.code, bytes(error.read())


async def get(port: int, path: str) -> tuple[int, bytes]:
    """Status and body of GET `path`, without blocking the event loop the daemon runs in."""
    return await asyncio.to_thread(_get, port, path)


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    status, body = await get(port, "/readyz")
    document: dict[str, Any] = json.loads(body)
    return status, document


async def samples(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics, keyed by (sample name, labels)."""
    status, body = await get(port, "/metrics")
    assert status == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def sample(
    scraped: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scraped[(name, frozenset(labels.items()))]
