"""Threads sharing one Client: the GIL is released during network work (calls overlap), and
a token expiry under 64 concurrent threads signs exactly one new token."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from klingwatch import Client, Task

from _mockctl import ctl, seed
from test_vectors import AK, SK


def test_threads_run_in_parallel(mock_url: str) -> None:
    client = Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0)
    ids = [seed(mock_url, "succeed") for _ in range(8)]
    for tid in ids:
        ctl(mock_url, "POST", "/faults",
            {"fault": "delay", "delay_ms": 500, "match": {"task_id": tid}, "times": 1})
    start = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        tasks = list(pool.map(client.get_image_task, ids))
    elapsed = time.monotonic() - start
    assert [t.id for t in tasks] == ids
    # Serialised by the GIL this would take 8 x 0.5 s = 4 s.
    assert elapsed < 2.0, f"8 overlapping 500 ms requests took {elapsed:.2f} s"


def test_64_threads_across_a_token_expiry_sign_one_token(mock_url: str) -> None:
    # A 6 s lifetime re-signed 3 s before expiry: the token is due for renewal 3 s after
    # signing, so the test crosses an expiry without waiting half an hour. Tokens carry whole
    # seconds, so the new one stays fresh for at least 2 s, far longer than the calls take
    # (with a 1 s window, calls that straddled a second boundary signed a third token).
    client = Client(access_key=AK, secret_key=SK, base_url=mock_url, timeout=10.0, token_ttl=6,
                    token_refresh_margin=3)
    tid = seed(mock_url, "succeed")
    assert isinstance(client.get_image_task(tid), Task)
    assert client.token_signatures == 1
    time.sleep(3.1)
    barrier = threading.Barrier(64)

    def one(_: int) -> str:
        barrier.wait()
        return client.get_image_task(tid).id

    with ThreadPoolExecutor(64) as pool:
        got = list(pool.map(one, range(64)))
    assert got == [tid] * 64
    assert client.token_signatures == 2, client.token_signatures


def test_token_options_are_validated() -> None:
    from klingwatch.errors import ConfigError
    import pytest

    with pytest.raises(ConfigError):
        Client(access_key=AK, secret_key=SK, token_ttl=60, token_refresh_margin=60)
