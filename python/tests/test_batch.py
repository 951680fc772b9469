"""get_many runs its queries on a task of their own and turns each chunk of answers into
values on the calling thread: every position is answered in input order (across many
chunks), a duplicate id gets equal but separate values, and a batch given up on stops its
queries (the emulator sees the client go away)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, List

import pytest

import klingwatch._client
from klingwatch import AsyncClient, Client, Task
from klingwatch.errors import InvalidRequestError, NotFoundError

from _mockctl import ctl, requests_for, seed
from test_vectors import AK, SK


def _check(batch: List[str], results: List[Any]) -> None:
    assert len(results) == len(batch)
    for want, got in zip(batch, results):
        if want.startswith("missing-"):
            assert isinstance(got, NotFoundError) and got.task_id == want, got
        elif want == "bad/id":
            assert isinstance(got, InvalidRequestError), got
        else:
            assert isinstance(got, Task) and got.id == want, got


def test_a_batch_of_many_chunks_answers_every_position_in_order(mock_url: str) -> None:
    ids = [seed(mock_url, "succeed") for _ in range(300)]
    batch = ids + ["missing-b1"] + ids[:50] + ["missing-b1", "bad/id"]
    client = Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)
    aclient = AsyncClient(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)
    one = client.get_task(ids[0])
    ctl(mock_url, "DELETE", "/requests")
    for results in (
        client.get_many(batch, concurrency=32),
        asyncio.run(aclient.get_many(batch, concurrency=32)),
    ):
        _check(batch, results)
        # Duplicates: equal values, separate objects (an error can be raised on its own).
        assert results[0] == results[301] and results[0] is not results[301]
        assert results[300] is not results[351]
        assert str(results[300]) == str(results[351])
        # A duplicate's images and raw are equal to the first's and to a single query's,
        # but its own (mutating one raw dict leaves the other alone).
        first, dup = results[0], results[301]
        assert first.images == dup.images == one.images and len(one.images) >= 1
        assert first.videos == dup.videos == one.videos == []
        assert first.raw == dup.raw == one.raw and first.raw["task_id"] == ids[0]
        assert first.raw is not dup.raw and first.images is not dup.images
        first.raw["task_id"] = "changed"
        assert dup.raw["task_id"] == ids[0]
        assert first.images is first.images  # built once, then cached
    # Each unique id is queried once per batch; the bad id never leaves the process.
    assert len(requests_for(mock_url, ids[0])) == 2
    assert len(requests_for(mock_url, "missing-b1")) == 2
    assert requests_for(mock_url, "bad/id") == []


def _saw_499(mock_url: str, tid: str) -> bool:
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        if 499 in [r["status"] for r in requests_for(mock_url, tid)]:
            return True
        time.sleep(0.05)
    return False


def test_an_abandoned_async_batch_drops_its_queries(mock_url: str) -> None:
    fast = seed(mock_url, "succeed")
    slow = seed(mock_url, "succeed")
    ctl(mock_url, "POST", "/faults", {"fault": "delay", "delay_ms": 3000, "match": {"task_id": slow}})
    aclient = AsyncClient(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)

    async def main() -> None:
        start = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(aclient.get_many([fast, slow], concurrency=2), timeout=0.3)
        assert time.monotonic() - start < 1.0

    asyncio.run(main())
    # The emulator saw the client go away (499) well before its 3 s delay ended.
    assert _saw_499(mock_url, slow)


def test_a_failing_conversion_stops_a_sync_batch(mock_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = seed(mock_url, "succeed")
    slow = seed(mock_url, "succeed")
    ctl(mock_url, "POST", "/faults", {"fault": "delay", "delay_ms": 3000, "match": {"task_id": slow}})
    client = Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)

    def boom(out: Any, chunk: Any) -> None:
        raise RuntimeError("conversion failed")

    # Whatever goes wrong on the calling thread, the batch's queries do not live on.
    monkeypatch.setattr(klingwatch._client, "_place", boom)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="conversion failed"):
        client.get_many([fast, slow], concurrency=2)
    assert time.monotonic() - start < 1.0
    assert _saw_499(mock_url, slow)
