"""Fixtures for Kubernetes discovery tests: the fake API server and connection specs.

``api`` is the fake; ``spec`` is how an informer reaches it (URL + bearer token). Pointing these
two at a real kube-apiserver (kubernetes-api.md §A) is what a later oracle job would swap.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from collector.config import Authorization, HTTPClientConfig
from collector.kubernetes.connection import ConnectionSpec
from tests.discovery.kubernetes.fake_apiserver import FakeAPIServer

FIXTURES = Path(__file__).parents[2] / "fixtures" / "k8s"


def sample(name: str) -> dict[str, Any]:
    """One sample object from tests/fixtures/k8s."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def token_spec(url: str, token: str) -> ConnectionSpec:
    """An ``api_server`` connection with a bearer token."""
    return ConnectionSpec(
        api_server=url,
        http_client=HTTPClientConfig(authorization=Authorization(credentials=token)),
    )


async def until(cond: Callable[[], bool], *, steps: int = 2000, step: float = 0.001) -> None:
    """Yield to the loop (``step`` seconds at a time) until ``cond()`` holds, or fail."""
    for _ in range(steps):
        if cond():
            return
        await asyncio.sleep(step)
    raise AssertionError("condition not reached")


@pytest.fixture
async def api() -> AsyncIterator[FakeAPIServer]:
    """A fresh fake API server on loopback."""
    async with FakeAPIServer() as server:
        yield server


@pytest.fixture
def spec(api: FakeAPIServer) -> ConnectionSpec:
    """How to reach ``api`` as its admin user."""
    return token_spec(api.url, api.token)
