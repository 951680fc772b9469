"""Task ids and external ids that try path or query injection are refused before any request
(the emulator's request log stays empty), for every call that takes an id."""

from __future__ import annotations

import asyncio

import pytest

from klingwatch import AsyncClient, Client, KlingError
from klingwatch.errors import InvalidRequestError

from _mockctl import ctl
from test_vectors import AK, SK

HOSTILE = ["../etc/passwd", ".", "%2e%2e%2fx", "id?x=1", "id#frag", "a/b", "a\\b", "a\r\nX-Evil: 1",
           "a\x00b", "a\u2028b", "a\u2029b", "\uff0e\uff0e\uff0fx", "x" * 10_000, ""]


def test_hostile_ids_never_reach_the_server(mock_url: str) -> None:
    client = Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=5.0)
    aclient = AsyncClient(access_key=AK, secret_key=SK, base_url=mock_url, timeout=5.0)
    ctl(mock_url, "DELETE", "/requests")
    for bad in HOSTILE:
        with pytest.raises(InvalidRequestError):
            client.get_image_task(bad)
        with pytest.raises(InvalidRequestError):
            client.get_task_by_external_id(bad)
        with pytest.raises(InvalidRequestError):
            client.wait(bad, timeout=5.0)
        with pytest.raises(InvalidRequestError):
            asyncio.run(aclient.get_image_task(bad))
        [r] = client.get_many([bad])
        assert isinstance(r, KlingError) and r.kind == "invalid_request"
    assert ctl(mock_url, "GET", "/requests")["requests"] == []
